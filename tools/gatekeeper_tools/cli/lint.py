"""``gatekeeper policy lint [FILE]``: the policy's exceptions that expired, expire soon, or
match nothing.

Which exceptions a verdict used is not kept in the verdict table (only counts and reasons), so
"matches nothing" is decided the most faithful way there is: every recorded image's findings
are read again from ECR (as ``policy simulate`` reads them) and judged with FILE, and an
exception no verdict used is unused: no recorded image of a repository it covers has a
finding it exempts now. ``--offline`` checks the dates only (no AWS). The classification is
:mod:`gatekeeper.domain.exception_hygiene`'s.

Exit 0 (whatever is listed), with ``--strict`` 1 when anything is listed; 2 usage or input
error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from gatekeeper.adapters.ecr import ScanResult
from gatekeeper.adapters.store import ImageRecord
from gatekeeper.domain.exception_hygiene import ExceptionReport, Problem, classify
from gatekeeper.domain.policy import Policy
from gatekeeper.domain.simulation import Judged, NotJudged, judge
from gatekeeper.domain.verdict import ExceptionRef
from gatekeeper_tools.cli.deployment import (
    EXIT_FAILED,
    EXIT_OK,
    Deployment,
)
from gatekeeper_tools.cli.simulate import (
    WORKERS,
    ImageAccounts,
    Progress,
    read_each,
    recorded_images,
)

_WITHIN = re.compile(r"(\d{1,4})\s*([dw]?)")


def within(text: str) -> timedelta:
    """``14d``, ``2w`` or ``14`` (days)."""
    found = _WITHIN.fullmatch(text.strip().lower())
    if not found:
        raise argparse.ArgumentTypeError(f"not a number of days (14d) or weeks (2w): {text!r}")
    count, unit = int(found.group(1)), found.group(2)
    return timedelta(weeks=count) if unit == "w" else timedelta(days=count)


@dataclass(frozen=True)
class Usage:
    """Which exceptions the recorded images' verdicts used, and what could not be judged."""

    used: frozenset[ExceptionRef]
    images: int
    not_judged: list[NotJudged]


def usage(deployment: Deployment, policy: Policy, *, workers: int = WORKERS,
          progress: bool = False, now: datetime | None = None) -> Usage:
    """The exceptions ``policy`` uses on the recorded images' findings read now from ECR. An
    image index has no findings of its own: its platform images are recorded and read."""
    deployment.require("table")
    now = now or datetime.now(UTC)
    records = [r for r in recorded_images(deployment, ()) if not r.platforms]
    accounts = ImageAccounts(deployment)

    def verdict(record: ImageRecord, scan: ScanResult) -> Judged | NotJudged:
        judged = judge(policy, record.repository, scan.status, scan.description,
                       scan.findings, now, digest=record.digest, account=accounts.of(record))
        return judged if judged is not None else NotJudged(
            record.repository, record.digest, f"no finished scan (ECR reports {scan.status})",
            record.tags)

    meter = Progress(len(records), progress, sys.stderr, "lint")
    results = read_each(accounts.ecr, records, verdict, workers=workers, progress=meter)
    used = frozenset(ref for r in results if isinstance(r, Judged) for ref in r.exceptions_used)
    missing = sorted((r for r in results if isinstance(r, NotJudged)),
                     key=lambda n: (n.repository, n.digest))
    return Usage(used, len(records), missing)


def lint(policy: Policy, *, window: timedelta, found: Usage | None,
         now: datetime | None = None) -> list[ExceptionReport]:
    return classify(policy, now or datetime.now(UTC), window,
                    found.used if found is not None else None)


def _describe(report: ExceptionReport) -> str:
    exception = report.exception
    where = f" in {exception.package}" if exception.package else ""
    repositories = (f" for {', '.join(exception.repositories)}" if exception.repositories
                    else "")
    ticket = f", {exception.ticket}" if exception.ticket else ""
    verb = "expired" if Problem.EXPIRED in report.problems else "expires"
    return (f"{exception.id}{where}{repositories} (exceptions[{exception.index}], "
            f"{exception.owner}{ticket}), {verb} {exception.expires_text}")


def _when(report: ExceptionReport) -> str:
    days = report.days_left
    if days is None:
        return ""
    if days < 0:
        return f" ({-days} day(s) ago)"
    return f" ({days} day(s) left)"


def render_text(source: str, reports: list[ExceptionReport], window: timedelta,
                found: Usage | None) -> str:
    listed = [r for r in reports if r.problems]
    count = {p: sum(p in r.problems for r in reports) for p in Problem}
    days = window // timedelta(days=1)
    usage_note = (f"{count[Problem.UNUSED]} matching no finding of the {found.images} "
                  "recorded image(s)" if found is not None else "usage not checked (--offline)")
    lines = [f"{source}: {len(reports)} exception(s); {count[Problem.EXPIRED]} expired, "
             f"{count[Problem.EXPIRING]} expiring within {days} day(s), {usage_note}"]
    for report in listed:
        lines.append(f"  {'+'.join(report.problems):<16} {_describe(report)}{_when(report)}")
    if found is not None and found.not_judged:
        lines.append(f"  ({len(found.not_judged)} recorded image(s) could not be judged, "
                     "so an exception called unused may still match them:)")
        lines += [f"    {n.repository}@{n.digest[:19]}: {n.reason}" for n in found.not_judged]
    return "\n".join(lines)


def render_json(source: str, reports: list[ExceptionReport], window: timedelta,
                found: Usage | None) -> str:
    def entry(report: ExceptionReport) -> dict[str, Any]:
        return {"index": report.index, **report.exception.ref.as_dict(),
                "repositories": list(report.exception.repositories),
                "problems": [str(p) for p in report.problems], "days_left": report.days_left}

    document = {
        "policy": source,
        "window_days": window // timedelta(days=1),
        "usage": ("judged on the recorded images' findings read again from ECR"
                  if found is not None else "not checked (--offline)"),
        "images": found.images if found is not None else None,
        "not_judged": [{"repository": n.repository, "digest": n.digest, "reason": n.reason}
                       for n in (found.not_judged if found is not None else [])],
        "exceptions": [entry(r) for r in reports],
    }
    return json.dumps(document, indent=2)


def exit_code(reports: list[ExceptionReport], strict: bool) -> int:
    return EXIT_FAILED if strict and any(r.problems for r in reports) else EXIT_OK
