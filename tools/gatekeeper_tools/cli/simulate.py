"""``gatekeeper policy simulate CANDIDATE``: what a policy would flip before it is published.

Every recorded image (the verdict table's current, judged records; optionally only some
repositories) is judged with the candidate and with the published policy (the stack's policy
object in S3; the built-in strict policy while none is published). The table keeps only each
verdict's counts and reasons, not its findings, so the findings are read again from ECR, once
per image, and both policies judge the same findings: a difference comes from the policies
alone. An image index follows its platform images, as the functions judge it. Nothing is
written.

Reading is done by a bounded pool of threads (:data:`WORKERS`, one ECR client: boto3 clients
are thread-safe). Images gone from ECR, never scanned, scanned unfinished or whose findings
cannot be read (whatever the error: one image's failure does not stop the others) are listed
apart, never counted as approved.

Exit 0 nothing would flip, 1 something would flip, 2 usage or input error (a candidate that
does not validate: the located error, as ``policy validate`` prints it).
"""

from __future__ import annotations

import fnmatch
import json
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar

from gatekeeper.adapters.ecr import EcrImages, ImageGone, ScanResult
from gatekeeper.adapters.policy_source import S3PolicySource
from gatekeeper.adapters.store import ImageRecord
from gatekeeper.domain.policy import Policy
from gatekeeper.domain.scope import Scope, scope_of
from gatekeeper.domain.simulation import (
    Change,
    Comparison,
    NotJudged,
    Simulation,
    compare,
    compare_index,
)
from gatekeeper_tools.cli.deployment import (
    EXIT_FAILED,
    EXIT_OK,
    Deployment,
    one_line,
)
from gatekeeper_tools.cli.scope import Place

WORKERS = 8  # concurrent ECR reads: 1,000 images are not 1,000 sequential round trips
PROGRESS_EVERY = 100  # images between two progress lines
REREAD = ("reads the findings again from ECR, because the table keeps only counts and "
          "reasons; nothing is written")

R = TypeVar("R")


@dataclass(frozen=True)
class Published:
    """The published policy, and where it was read."""

    policy: Policy
    source: str


def published_policy(deployment: Deployment) -> Published:
    """The policy object the functions read now (the built-in strict policy while none is
    published); PolicyError (located) when the published object does not validate."""
    deployment.require("policy_bucket")
    bucket, key = str(deployment.policy_bucket), deployment.policy_key
    source = S3PolicySource(deployment.session.client("s3"), bucket, key, max_age_seconds=0)
    return Published(source.get(), f"s3://{bucket}/{key}")


def recorded_images(deployment: Deployment, patterns: Sequence[str]) -> list[ImageRecord]:
    """The table's judged records of images not known gone, of repositories matching one of
    ``patterns`` (every repository when none is given)."""
    return [record for record in deployment.store().records(judged=True)
            if not patterns or any(fnmatch.fnmatchcase(record.repository, p)
                                   for p in patterns)]


class Progress:
    """A line on stderr every PROGRESS_EVERY images, when enabled (a terminal, or asked)."""

    def __init__(self, total: int, enabled: bool, stream: TextIO, what: str) -> None:
        self.total, self.enabled, self.stream, self.what = total, enabled, stream, what
        self.done = 0

    def tick(self) -> None:
        self.done += 1
        if self.enabled and (self.done % PROGRESS_EVERY == 0 or self.done == self.total):
            print(f"{self.what}: {self.done}/{self.total} image(s) read", file=self.stream,
                  flush=True)


def read_each(images: Callable[[ImageRecord], EcrImages], records: Sequence[ImageRecord],
              judge: Callable[[ImageRecord, ScanResult], R | NotJudged], *,
              workers: int = WORKERS, progress: Progress | None = None
              ) -> list[R | NotJudged]:
    """``judge`` of every record's latest scan, read from its account's ECR (``images`` of
    the record) by ``workers`` threads; a record whose image is gone, never scanned, or whose
    findings cannot be read is NotJudged."""
    def one(record: ImageRecord) -> R | NotJudged:
        repository, digest, tags = record.repository, record.digest, record.tags
        try:
            scan = images(record).scan(repository, digest)
        except ImageGone:
            return NotJudged(repository, digest, "gone from ECR", tags)
        except Exception as err:  # one image's failure is listed; the others go on
            return NotJudged(repository, digest, f"findings unreadable: {one_line(err)}", tags)
        if scan is None:
            return NotJudged(repository, digest, "never scanned", tags)
        return judge(record, scan)

    results: list[R | NotJudged] = []
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for future in as_completed([pool.submit(one, record) for record in records]):
            results.append(future.result())
            if progress is not None:
                progress.tick()
    finally:  # on Ctrl-C, the images not started yet are not read
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def simulate(deployment: Deployment, candidate: Policy, *, patterns: Sequence[str] = (),
             workers: int = WORKERS, progress: bool = False,
             now: datetime | None = None) -> tuple[Published, Simulation]:
    """The published policy, and both policies' verdicts on every recorded image."""
    deployment.require("table", "policy_bucket")
    published = published_policy(deployment)
    now = now or datetime.now(UTC)
    records = recorded_images(deployment, patterns)
    singles = [r for r in records if not r.platforms]
    indexes = [r for r in records if r.platforms]

    account = ImageAccounts(deployment)

    def judge(record: ImageRecord, scan: ScanResult) -> Comparison | NotJudged:
        return compare(published.policy, candidate, record.repository, record.digest,
                       scan.status, scan.description, scan.findings, now,
                       recorded=record.state, tags=record.tags, account=account.of(record))

    meter = Progress(len(singles), progress, sys.stderr, "simulate")
    results = read_each(account.ecr, singles, judge, workers=workers, progress=meter)
    by_key = {(r.repository, r.digest): r for r in results}
    results += [compare_index(published.policy, candidate, r.repository, r.digest, r.platforms,
                              by_key, recorded=r.state, tags=r.tags, account=account.of(r))
                for r in indexes]
    return published, Simulation.of(results)


class ImageAccounts:
    """Where each recorded image lives: its account (for the policy's ``accounts:`` rules)
    and its ECR: the deployment's own for the stack's images, a member account's through its
    spoke role for an organization's (one client per account and Region, shared by the
    threads)."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._home: Scope | None = None
        self._clients: dict[Scope | None, EcrImages] = {}
        self._lock = threading.Lock()

    def home(self) -> Scope | None:
        if self._home is None:
            session = self.deployment.session
            account = session.client("sts").get_caller_identity()["Account"]
            self._home = scope_of(account, session.region_name)
        return self._home

    def of(self, record: ImageRecord) -> str | None:
        if record.account:
            return record.account
        home = self.home()
        return home.account if home else None

    def ecr(self, record: ImageRecord) -> EcrImages:
        with self._lock:
            found = self._clients.get(record.scope)
            if found is None:
                place = Place(self.deployment, record.scope,
                              self.home() if record.scope else None)
                found = self._clients[record.scope] = EcrImages(place.ecr())
            return found


# --- what is printed --------------------------------------------------------------------------

_TITLES = {
    Change.TO_QUARANTINED: "would be QUARANTINED (approved now)",
    Change.TO_APPROVED: "would be APPROVED (quarantined now)",
    Change.WARNINGS: "approved either way, warnings change",
}


def _image(comparison: Comparison | NotJudged) -> str:
    tags = comparison.tags
    shown = f" ({', '.join(tags[:3])}{', ...' if len(tags) > 3 else ''})" if tags else ""
    return f"{comparison.repository}@{comparison.digest[:19]}{shown}"


def _outcome(judged: Any) -> str:
    return str(judged.outcome) + (" (monitor)" if judged.monitor else "")


def counts_line(simulation: Simulation) -> str:
    rows = simulation.by_repository().values()
    return (f"{sum(r.to_quarantined for r in rows)} would be quarantined, "
            f"{sum(r.to_approved for r in rows)} would be approved, "
            f"{sum(r.warnings for r in rows)} with warnings changed, "
            f"{sum(r.unchanged for r in rows)} unchanged, "
            f"{len(simulation.not_judged)} not judged")


def render_text(candidate: str, published: Published, simulation: Simulation) -> str:
    judged = len(simulation.compared) + len(simulation.not_judged)
    lines = [f"{candidate} against the published policy ({published.source}, version "
             f"{published.policy.version}) on {judged} recorded image(s); findings read again "
             "from ECR"]
    for change in (Change.TO_QUARANTINED, Change.TO_APPROVED, Change.WARNINGS):
        changed = simulation.changed(change)
        if not changed:
            continue
        lines += ["", f"{_TITLES[change]}: {len(changed)}"]
        for comparison in changed:
            after = comparison.candidate
            lines.append(f"  {_image(comparison)}: {_outcome(comparison.published)} -> "
                         f"{_outcome(after)} [{after.matched_rule}]")
            lines += [f"      {reason}" for reason in after.reasons]
    if simulation.not_judged:
        lines += ["", f"not judged (never counted as approved): {len(simulation.not_judged)}"]
        lines += [f"  {_image(n)}: {n.reason}" for n in simulation.not_judged]
    rows = simulation.by_repository()
    if rows:
        header = ("REPOSITORY", "TO QUARANTINED", "TO APPROVED", "WARNINGS", "UNCHANGED",
                  "NOT JUDGED")
        table = [header] + [(name, str(r.to_quarantined), str(r.to_approved), str(r.warnings),
                             str(r.unchanged), str(r.not_judged)) for name, r in rows.items()]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines.append("")
        lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
                  for row in table]
    if simulation.drifted:
        lines += ["", f"note: {simulation.drifted} image(s) have a recorded verdict other than "
                      "the published policy's on the findings read now (re-scanned since; "
                      "re-evaluation catches up)"]
    lines += ["", counts_line(simulation)]
    return "\n".join(lines)


def _judged_document(judged: Any) -> dict[str, Any]:
    return {"outcome": str(judged.outcome), "monitor": judged.monitor,
            "rule": judged.matched_rule, "reasons": list(judged.reasons)}


def render_json(candidate: str, published: Published, simulation: Simulation) -> str:
    def image(comparison: Comparison) -> dict[str, Any]:
        return {"repository": comparison.repository, "digest": comparison.digest,
                "tags": list(comparison.tags), "change": comparison.change.value,
                "recorded": comparison.recorded,
                "published": _judged_document(comparison.published),
                "candidate": _judged_document(comparison.candidate)}

    document = {
        "candidate": candidate,
        "published": {"source": published.source, "version": published.policy.version},
        "findings": "read again from ECR",
        "flips": simulation.flips,
        "changes": [image(c) for c in simulation.compared if c.change is not Change.UNCHANGED],
        "not_judged": [{"repository": n.repository, "digest": n.digest, "reason": n.reason}
                       for n in simulation.not_judged],
        "repositories": {name: {"to_quarantined": r.to_quarantined,
                                "to_approved": r.to_approved, "warnings": r.warnings,
                                "unchanged": r.unchanged, "not_judged": r.not_judged}
                         for name, r in simulation.by_repository().items()},
        "images": len(simulation.compared) + len(simulation.not_judged),
        "drifted": simulation.drifted,
    }
    return json.dumps(document, indent=2)


def render_summary(candidate: str, published: Published, simulation: Simulation) -> str:
    """A few lines for ``policy push``: the counts, and the repositories with most flips."""
    images = len(simulation.compared) + len(simulation.not_judged)
    lines = [f"tried {candidate} against the published policy (version "
             f"{published.policy.version}) on {images} recorded image(s), findings read again "
             "from ECR:", "  " + counts_line(simulation)]
    top = simulation.top_repositories()
    if top:
        lines.append("  most flips: " + "; ".join(
            f"{name} ({row.to_quarantined} to quarantined, {row.to_approved} to approved)"
            for name, row in top))
    if simulation.flips:
        lines.append(f"  (gatekeeper policy simulate {candidate} shows each image and why)")
    return "\n".join(lines)


def exit_code(simulation: Simulation) -> int:
    return EXIT_FAILED if simulation.flips else EXIT_OK


def report(candidate: str, published: Published, simulation: Simulation, fmt: str,
           out: TextIO) -> None:
    render = render_json if fmt == "json" else render_text
    print(render(candidate, published, simulation), file=out)
