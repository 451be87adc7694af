"""Trying a policy before publishing it: two policies judged on the same findings.

``gatekeeper policy simulate`` reads each recorded image's findings once and judges them with
the published policy and with a candidate (:func:`compare`); an image index follows its
platform images' two verdicts (:func:`compare_index`). What would change is a *flip*: an image
the published policy approves that the candidate would quarantine, or the reverse.
APPROVED_WITH_WARNINGS counts as approved for flipping; a change between APPROVED and
APPROVED_WITH_WARNINGS is shown apart (``warnings``), never counted as a flip.

Pure: reading the findings (ECR) and the records (the verdict table) is the caller's.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import Finding
from gatekeeper.domain.policy import Policy
from gatekeeper.domain.verdict import ExceptionRef, Outcome, Verdict


class Change(enum.StrEnum):
    TO_QUARANTINED = "to_quarantined"  # approved now, quarantined by the candidate
    TO_APPROVED = "to_approved"  # quarantined now, approved by the candidate
    WARNINGS = "warnings"  # approved either way; with warnings under one of them only
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Judged:
    """What simulating keeps of a verdict: never its findings (thousands of images)."""

    outcome: Outcome
    reasons: tuple[str, ...]
    matched_rule: str
    monitor: bool = False
    exceptions_used: tuple[ExceptionRef, ...] = ()

    @classmethod
    def of(cls, verdict: Verdict) -> Judged:
        return cls(verdict.outcome, verdict.reasons, verdict.matched_rule, verdict.monitor,
                   verdict.exceptions_used)


@dataclass(frozen=True)
class Comparison:
    """One recorded image judged by both policies."""

    repository: str
    digest: str
    published: Judged
    candidate: Judged
    recorded: str | None = None  # the verdict in the table now (may predate a re-scan)
    tags: tuple[str, ...] = ()

    @property
    def change(self) -> Change:
        before, after = self.published.outcome, self.candidate.outcome
        if before.approved and not after.approved:
            return Change.TO_QUARANTINED
        if after.approved and not before.approved:
            return Change.TO_APPROVED
        if before is not after:
            return Change.WARNINGS
        return Change.UNCHANGED

    @property
    def flips(self) -> bool:
        return self.change in (Change.TO_QUARANTINED, Change.TO_APPROVED)


@dataclass(frozen=True)
class NotJudged:
    """A recorded image neither policy could judge: gone from ECR, its findings unreadable or
    its scan unfinished. Never counted as approved (nor as anything else)."""

    repository: str
    digest: str
    reason: str
    tags: tuple[str, ...] = ()


def judge(policy: Policy, repository: str, status: str, description: str | None,
          findings: Sequence[Finding], now: datetime, *, digest: str | None = None,
          account: str | None = None) -> Judged | None:
    """The policy's verdict on a scan in ``status`` (as the functions judge it: with the
    image's digest for VEX statements, its account for ``accounts:`` rules); None while the
    scan is not finished."""
    verdict = evaluation.judge_scan(policy, repository, status, description, findings, now,
                                    digest, account=account)
    return Judged.of(verdict) if verdict is not None else None


def compare(published: Policy, candidate: Policy, repository: str, digest: str, status: str,
            description: str | None, findings: Sequence[Finding], now: datetime, *,
            recorded: str | None = None, tags: tuple[str, ...] = (),
            account: str | None = None) -> Comparison | NotJudged:
    """Both policies' verdicts on the same findings: any difference is the policies' alone."""
    before = judge(published, repository, status, description, findings, now, digest=digest,
                   account=account)
    after = judge(candidate, repository, status, description, findings, now, digest=digest,
                  account=account)
    if before is None or after is None:
        return NotJudged(repository, digest, f"no finished scan (ECR reports {status})", tags)
    return Comparison(repository, digest, before, after, recorded, tags)


def compare_index(published: Policy, candidate: Policy, repository: str, digest: str,
                  platforms: Sequence[tuple[str, str]],
                  judged: dict[tuple[str, str], Comparison | NotJudged], *,
                  recorded: str | None = None, tags: tuple[str, ...] = (),
                  account: str | None = None) -> Comparison | NotJudged:
    """An image index, from its platform images' comparisons (``platforms``: (digest, platform)
    pairs; ``judged``: comparisons by (repository, digest)), as the judge derives an index's
    verdict. Not judged while a platform image is not."""
    children = []
    for child_digest, platform in platforms:
        child = judged.get((repository, child_digest))
        if not isinstance(child, Comparison):
            why = child.reason if child is not None else "not recorded"
            return NotJudged(repository, digest, f"platform image {platform} "
                                                 f"({child_digest[:19]}): {why}", tags)
        children.append((platform, child_digest, child))

    def verdict(policy: Policy, side: str) -> Judged:
        return Judged.of(evaluation.index_verdict(policy, repository, [
            (platform, child_digest, str(getattr(child, side).outcome),
             getattr(child, side).reasons)
            for platform, child_digest, child in children], account=account))

    return Comparison(repository, digest, verdict(published, "published"),
                      verdict(candidate, "candidate"), recorded, tags)


@dataclass
class RepositoryCounts:
    to_quarantined: int = 0
    to_approved: int = 0
    warnings: int = 0
    unchanged: int = 0
    not_judged: int = 0

    @property
    def flips(self) -> int:
        return self.to_quarantined + self.to_approved


@dataclass
class Simulation:
    """Every recorded image's comparison, or why it was not judged."""

    compared: list[Comparison] = field(default_factory=list)
    not_judged: list[NotJudged] = field(default_factory=list)

    @classmethod
    def of(cls, results: Iterable[Comparison | NotJudged]) -> Simulation:
        simulation = cls()
        for result in results:
            if isinstance(result, Comparison):
                simulation.compared.append(result)
            else:
                simulation.not_judged.append(result)
        simulation.compared.sort(key=lambda c: (c.repository, c.digest))
        simulation.not_judged.sort(key=lambda n: (n.repository, n.digest))
        return simulation

    def changed(self, change: Change) -> list[Comparison]:
        return [c for c in self.compared if c.change is change]

    @property
    def flips(self) -> int:
        return sum(c.flips for c in self.compared)

    @property
    def drifted(self) -> int:
        """Images whose recorded verdict differs from the published policy's on the findings
        read now (a re-scan since; re-evaluation catches up): a reason to read a flip twice."""
        return sum(1 for c in self.compared
                   if c.recorded is not None and c.recorded != c.published.outcome)

    def by_repository(self) -> dict[str, RepositoryCounts]:
        counts: dict[str, RepositoryCounts] = {}
        for comparison in self.compared:
            row = counts.setdefault(comparison.repository, RepositoryCounts())
            name = comparison.change.value
            setattr(row, name, getattr(row, name) + 1)
        for missing in self.not_judged:
            counts.setdefault(missing.repository, RepositoryCounts()).not_judged += 1
        return dict(sorted(counts.items()))

    def top_repositories(self, limit: int = 5) -> list[tuple[str, RepositoryCounts]]:
        """The repositories with the most flips, most first."""
        flipped = [(name, row) for name, row in self.by_repository().items() if row.flips]
        return sorted(flipped, key=lambda item: (-item[1].flips, item[0]))[:limit]
