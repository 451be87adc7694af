"""Verdicts: what the gatekeeper decided about one image, and why."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Outcome(enum.StrEnum):
    APPROVED = "APPROVED"
    QUARANTINED = "QUARANTINED"


@dataclass(frozen=True)
class Breach:
    """One severity whose findings went over the policy's limit."""

    severity: str
    count: int
    limit: int
    finding_ids: tuple[str, ...]

    def describe(self, shown: int = 10) -> str:
        ids = ", ".join(self.finding_ids[:shown])
        more = len(self.finding_ids) - shown
        if more > 0:
            ids += f" and {more} more"
        noun = "finding" if self.count == 1 else "findings"
        return f"{self.severity}: {self.count} {noun} over the limit of {self.limit} ({ids})"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    policy_version: str
    counts: dict[str, int] = field(default_factory=dict)
    highest_severity: str | None = None
    breaches: tuple[Breach, ...] = ()
    scan_status: str = "COMPLETE"
    matched_rule: str = "default"

    @property
    def approved(self) -> bool:
        return self.outcome is Outcome.APPROVED
