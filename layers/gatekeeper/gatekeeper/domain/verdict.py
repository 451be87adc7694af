"""Verdicts: what the gatekeeper decided about one image, and why, finding by finding."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from gatekeeper.domain.findings import Finding, InUse


class Outcome(enum.StrEnum):
    APPROVED = "APPROVED"
    APPROVED_WITH_WARNINGS = "APPROVED_WITH_WARNINGS"
    QUARANTINED = "QUARANTINED"

    @property
    def approved(self) -> bool:
        return self is not Outcome.QUARANTINED


@dataclass(frozen=True)
class Breach:
    """One rule the image broke: a severity over its limit, or a blocking finding."""

    rule: str  # "max_findings", "warn_findings", "block_if_exploit_available", ...
    severity: str | None
    count: int
    limit: float
    finding_ids: tuple[str, ...]
    # What the rule says of each finding (block_if_known_exploited: the day CISA added it),
    # or of the image (the KEV catalog unavailable: why).
    notes: tuple[str, ...] = ()

    def describe(self, shown: int = 10) -> str:
        ids = ", ".join(self.finding_ids[:shown])
        more = len(self.finding_ids) - shown
        if more > 0:
            ids += f" and {more} more"
        noun = "finding" if self.count == 1 else "findings"
        if self.rule == "block_if_exploit_available":
            return f"{self.count} {noun} with a known exploit ({ids})"
        if self.rule == "block_if_known_exploited":
            if not self.finding_ids:
                return "; ".join(self.notes)
            notes = "; ".join(self.notes[:shown])
            return notes + (f" and {more} more" if more > 0 else "")
        if self.rule == "block_if_epss_at_least":
            return f"{self.count} {noun} with EPSS >= {self.limit:g} ({ids})"
        limit = int(self.limit)
        kind = "warning limit" if self.rule == "warn_findings" else "limit"
        return f"{self.severity}: {self.count} {noun} over the {kind} of {limit} ({ids})"


@dataclass(frozen=True)
class ExceptionRef:
    """An exception as a verdict reports it (used, unused or expiring)."""

    id: str
    owner: str
    expires: str
    reason: str
    package: str | None = None
    ticket: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def describe(self) -> str:
        where = f" in {self.package}" if self.package else ""
        ticket = f", {self.ticket}" if self.ticket else ""
        return (f"exception {self.id}{where} by {self.owner}, expires "
                f"{self.expires}{ticket}: {self.reason}")


class Ignored(NamedTuple):
    """A finding that did not count, and why (a tuple: verdicts can hold thousands)."""

    finding: Finding
    why: str  # exception, vex, unfixed, below_score, in_grace
    # the ExceptionRef, the VEX statement's VexRef, min_score, or the end of the grace period
    param: Any = None

    @property
    def exception(self) -> ExceptionRef | None:
        return self.param if isinstance(self.param, ExceptionRef) else None

    @property
    def detail(self) -> str:
        if self.why in ("exception", "vex"):
            return self.param.describe()
        if self.why == "unfixed":
            return "no fix available (ignore_unfixed)"
        if self.why == "below_score":
            return f"score {self.finding.score:g} below min_score {self.param:g}"
        if self.why == "in_grace":
            return (f"in grace until {self.param.date().isoformat()} "
                    f"({self.finding.severity.name} findings count after their grace period)")
        return self.why


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...]
    policy_version: str
    counts: dict[str, int] = field(default_factory=dict)  # every finding, by severity
    highest_severity: str | None = None
    breaches: tuple[Breach, ...] = ()
    warnings: tuple[Breach, ...] = ()
    counted: tuple[Finding, ...] = ()
    ignored: tuple[Ignored, ...] = ()
    exceptions_used: tuple[ExceptionRef, ...] = ()
    exceptions_unused: tuple[ExceptionRef, ...] = ()
    exceptions_expiring: tuple[ExceptionRef, ...] = ()
    scan_status: str = "COMPLETE"
    matched_rule: str = "default"
    mode: str = "enforce"
    enforcement: str = "tag"  # "archive": a quarantined image is archived (pulls fail)
    review_at: datetime | None = None  # when an exception expires or a grace period ends
    in_use: InUse | None = None  # whether the image runs somewhere (None: unknown)

    @property
    def approved(self) -> bool:
        return self.outcome.approved

    @property
    def monitor(self) -> bool:
        return self.mode == "monitor"

    @property
    def quarantined_in_use(self) -> bool:
        """The alert that matters most: a quarantined image that is running."""
        return self.outcome is Outcome.QUARANTINED and self.in_use is not None \
            and self.in_use.running
