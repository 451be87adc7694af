"""``gatekeeper status IMAGE``: an image's recorded verdict and its history.

Exit 0: a verdict is recorded; 1: not judged yet (no record, or pending); 2: usage error or no
such image (a deleted image is still shown by digest when its verdict is recorded).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from gatekeeper.adapters.store import HistoryEntry, ImageRecord
from gatekeeper.render.record import record_document, signed_by
from gatekeeper_tools.cli.deployment import (
    EXIT_FAILED,
    EXIT_OK,
    IMAGE_HELP,
    Deployment,
    ImageNotFound,
    OperatorError,
    deployment_options,
    describe_image,
    from_arguments,
    operator_command,
    parse_reference,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "status", parents=[deployment_options()], help="show an image's verdict and its history",
        description="Show the recorded verdict of an image (state, reasons, marker, the tags "
                    "on the image now, policy version and rule, when and why it was decided) "
                    "and its verdict history, newest first. Exit 0 judged, 1 not judged yet "
                    "(no verdict recorded, or pending), 2 usage error or no such image.")
    parser.add_argument("image", help=IMAGE_HELP)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    parser.set_defaults(func=operator_command(
        "status", lambda args: status(from_arguments(args), args.image, args.format)))


def status(deployment: Deployment, reference: str, fmt: str = "text") -> int:
    """Exit 0: a verdict is recorded; 1: not judged yet (no record, or pending); 2: no such
    image (a deleted image is still shown by digest when its verdict is recorded)."""
    ref = parse_reference(reference)
    store = deployment.store()
    try:
        digest, tags = describe_image(deployment.ecr(), ref)
        exists = True
    except ImageNotFound as missing:
        if not ref.digest or store.get(ref.repository, ref.digest) is None:
            raise OperatorError(str(missing)) from None
        digest, tags, exists = ref.digest, [], False
    record = store.get(ref.repository, digest)
    history = store.history(ref.repository, digest) if record is not None else []
    code = EXIT_OK if record is not None and record.judged else EXIT_FAILED
    if fmt == "json":
        document = {
            "schema": "gatekeeper.status/v1",
            "repository": ref.repository,
            "digest": digest,
            "exists": exists,
            "tags": tags,
            "verdict": record_document(record, tags) if record is not None else None,
            "history": [_history_document(entry) for entry in history],
            "exit_code": code,
        }
        print(json.dumps(document, indent=2))
    else:
        print(_status_text(ref.repository, digest, tags, exists, record, history))
    return code


def _history_document(entry: HistoryEntry) -> dict[str, Any]:
    return {"decided_at": entry.decided_at, "state": entry.state, "previous": entry.previous,
            "trigger": entry.trigger, "policy_version": entry.policy_version,
            "reasons": list(entry.reasons), "scan_status": entry.scan_status,
            "marker": entry.marker, "revision": entry.revision,
            "envelope": entry.envelope}


def _status_text(repository: str, digest: str, tags: list[str], exists: bool,
                 record: ImageRecord | None, history: list[HistoryEntry]) -> str:
    now = (", ".join(tags) or "(none)") if exists else "(image deleted)"
    lines = [f"{repository}@{digest}", f"  tags now:    {now}"]
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
