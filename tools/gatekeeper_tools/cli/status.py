"""``gatekeeper status IMAGE``: an image's recorded verdict and its history;
``gatekeeper status --account ID``: the verdicts recorded for one account.

Exit 0: a verdict is recorded (listing: at least one); 1: not judged yet (no record, or
pending; listing: none); 2: usage error or no such image (a deleted image is still shown by
digest when its verdict is recorded).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from gatekeeper.adapters.store import HistoryEntry, ImageRecord
from gatekeeper.domain.scope import Scope
from gatekeeper.render.record import record_document, signed_by
from gatekeeper_tools.cli.deployment import (
    EXIT_FAILED,
    EXIT_OK,
    IMAGE_HELP,
    ImageNotFound,
    ImageReference,
    OperatorError,
    deployment_options,
    describe_image,
    operator_command,
    parse_reference,
)
from gatekeeper_tools.cli.scope import (
    Place,
    checked_account,
    checked_region,
    describe,
    locate,
    scope_options,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "status", parents=[deployment_options(), scope_options()],
        help="show an image's verdict and its history (or an account's verdicts)",
        description="Show the recorded verdict of an image (state, reasons, marker, the tags "
                    "on the image now, policy version and rule, when and why it was decided, "
                    "the account and Region of a member account's image) and its verdict "
                    "history, newest first. Exit 0 judged, 1 not judged yet (no verdict "
                    "recorded, or pending), 2 usage error or no such image. Without IMAGE, "
                    "--account ID lists the verdicts recorded for that account (of --region, "
                    "or of all its Regions), page by page: a Scan of the whole table filtered "
                    "on the account, as the table has no index by account (an operator's "
                    "occasional read); exit 0 when it lists any, 1 when none.")
    parser.add_argument("image", nargs="?", help=IMAGE_HELP + "; omit it with --account ID to "
                        "list that account's verdicts")
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=operator_command("status", _run))


def _run(args: argparse.Namespace) -> int:
    if args.image is None:
        if args.account is None:
            raise OperatorError("name an IMAGE, or --account ID to list an account's verdicts")
        return listing(args, args.format)
    ref = parse_reference(args.image)
    return status(locate(args, ref), ref, args.format)


def status(place: Place, ref: ImageReference, fmt: str = "text") -> int:
    """Exit 0: a verdict is recorded; 1: not judged yet (no record, or pending); 2: no such
    image (a deleted image is still shown by digest when its verdict is recorded)."""
    store = place.store()
    try:
        digest, tags = describe_image(place.ecr(), ref)
        exists = True
    except ImageNotFound as missing:
        if not ref.digest or store.get(ref.repository, ref.digest) is None:
            raise OperatorError(f"{missing}{place.where()}") from None
        digest, tags, exists = ref.digest, [], False
    record = store.get(ref.repository, digest)
    history = store.history(ref.repository, digest) if record is not None else []
    code = EXIT_OK if record is not None and record.judged else EXIT_FAILED
    if fmt == "json":
        document = {
            "schema": "gatekeeper.status/v1",
            "repository": ref.repository,
            "digest": digest,
            # a member account's image; null: the stack's own account and Region
            "account": place.scope.account if place.scope else None,
            "region": place.scope.region if place.scope else None,
            "exists": exists,
            "tags": tags,
            "verdict": record_document(record, tags) if record is not None else None,
            "history": [_history_document(entry) for entry in history],
            "exit_code": code,
        }
        print(json.dumps(document, indent=2))
    else:
        print(_status_text(ref.repository, digest, tags, exists, record, history, place.scope))
    return code


def listing(args: argparse.Namespace, fmt: str = "text") -> int:
    """The verdicts recorded for ``--account`` (and ``--region``), printed page by page."""
    account = str(checked_account(args.account))
    region = checked_region(args.region)
    place = locate(args)
    home = place.home
    records = place.deployment.store().records_in(account, region, home=home)
    count = 0
    documents = []
    for record in records:
        count += 1
        scope = record.scope or home
        if fmt == "json":
            documents.append({"account": scope.account if scope else None,
                              "region": scope.region if scope else None,
                              "repository": record.repository, "digest": record.digest,
                              "verdict": record_document(record, list(record.tags))})
        else:
            print(_listing_line(record, scope), flush=True)
    which = f"account {account} ({region or 'every Region'})"
    if fmt == "json":
        print(json.dumps({"schema": "gatekeeper.status-list/v1", "account": account,
                          "region": region, "records": documents}, indent=2))
    else:
        print(f"{count} verdict(s) recorded in {which}")
    return EXIT_OK if count else EXIT_FAILED


def _listing_line(record: ImageRecord, scope: Scope | None) -> str:
    where = f"{scope.account}  {scope.region:<14}" if scope else "-"
    state = record.state if record.judged else "PENDING"
    if record.judged and not record.settled:
        state += " (not settled)"
    if record.gone:
        state += " (image gone)"
    return (f"{where}  {record.repository}@{record.digest}  {state}  "
            f"{record.decided_at or record.created_at or '-'}")


def _history_document(entry: HistoryEntry) -> dict[str, Any]:
    return {"decided_at": entry.decided_at, "state": entry.state, "previous": entry.previous,
            "trigger": entry.trigger, "policy_version": entry.policy_version,
            "reasons": list(entry.reasons), "scan_status": entry.scan_status,
            "marker": entry.marker, "revision": entry.revision,
            "envelope": entry.envelope}


def _status_text(repository: str, digest: str, tags: list[str], exists: bool,
                 record: ImageRecord | None, history: list[HistoryEntry],
                 scope: Scope | None = None) -> str:
    now = (", ".join(tags) or "(none)") if exists else "(image deleted)"
    lines = [f"{repository}@{digest}{describe(scope)}"]
    if scope is not None:
        lines.append(f"  account:     {scope.account}, Region {scope.region}")
    lines.append(f"  tags now:    {now}")
    if record is None:
        lines.append("  verdict:     none recorded (the gatekeeper has not seen this image; "
                     "'gatekeeper reevaluate' judges it)")
        return "\n".join(lines)
    if not record.judged:
        lines += [f"  verdict:     PENDING since {record.created_at or record.decided_at} "
                  "(waiting for its scan)",
                  f"  trigger:     {record.trigger or '-'}"]
        return "\n".join(lines)
    state = [record.state, "settled" if record.settled else "NOT SETTLED (side effects pending)"]
    if record.gone:
        state.append("image gone")
    if getattr(record, "archived", False):
        state.append("archived by the gatekeeper (pulls fail)")
    marker = "-"
    if record.marker:
        marker = record.marker + (" (on the image)" if record.marker in tags
                                  else " (MISSING from the image)")
    lines += [
        f"  verdict:     {', '.join(state)}",
        f"  marker:      {marker}",
        f"  policy:      version {record.policy_version or '-'}, rule {record.matched_rule or '-'}",
        f"  scan:        {record.scan_status or '-'}"
        + (f", completed {record.scan_completed_at}" if record.scan_completed_at else ""),
        f"  decided at:  {record.decided_at or '-'} (trigger {record.trigger or '-'})",
        f"  review at:   {record.review_at or '-'}",
        "  in use:      " + (record.in_use.describe() if record.in_use else
                             "unknown (only enhanced scanning reports it)"),
        "  signature:   " + (f"signed by {signed_by(record)} (verdict revision "
                             f"{record.verdict_id_revision}; 'gatekeeper verify' checks it)"
                             if signed_by(record) else "unsigned"),
    ]
    if record.lease_owner:
        lines.append(f"  lease:       held by {record.lease_owner} until "
                     f"{datetime.fromtimestamp(record.lease_until, UTC).isoformat()}")
    lines.append("  reasons:" if record.reasons else "  reasons:     -")
    lines += [f"    - {reason}" for reason in record.reasons]
    lines.append(f"history ({len(history)}, newest first):")
    for entry in history:
        previous = entry.previous or "none"
        lines.append(f"  {entry.decided_at}  {entry.state} (was {previous})  trigger "
                     f"{entry.trigger}  policy {entry.policy_version or '-'}")
        lines += [f"      {reason}" for reason in entry.reasons[:3]]
        if len(entry.reasons) > 3:
            lines.append(f"      ... and {len(entry.reasons) - 3} more")
    return "\n".join(lines)
