"""How a verdict reads: text lines for people (CI logs, e-mail) and a stable JSON document.

The JSON document (``gatekeeper.verdict/v1``) is documented in the README; fields are only
ever added to it, never renamed or removed, within one schema version. It holds every field of
the signed verdict (the statement's predicate, the verdict API's ``verdict``), so that one
schema name means one document; the evaluation's detail comes on top.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from gatekeeper.domain.attestation import PREDICATE_SCHEMA
from gatekeeper.domain.findings import Finding
from gatekeeper.domain.verdict import Verdict

DOCUMENT_SCHEMA = PREDICATE_SCHEMA  # the signed predicate's fields, and more


def finding_line(finding: Finding) -> str:
    package = finding.package or "(unknown package)"
    version = f" {finding.installed_version}" if finding.installed_version else ""
    if finding.fixed_version:
        fix = f", fixed in {finding.fixed_version}"
    elif finding.fix_available is False:
        fix = ", no fix available"
    else:
        fix = ""
    extras = []
    if finding.score is not None:
        extras.append(f"score {finding.score:g}")
    if finding.epss is not None:
        extras.append(f"EPSS {finding.epss:g}")
    if finding.exploit_available:
        extras.append("exploit available")
    extra = f" [{', '.join(extras)}]" if extras else ""
    return f"{finding.id:<20} {finding.severity.name:<13} {package}{version}{fix}{extra}"


def _ordered(findings: tuple[Finding, ...]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.severity, f.id, f.package or ""))


def explain(verdict: Verdict, limit: int = 50) -> list[str]:
    """The verdict's explanation, finding by finding, at most ``limit`` lines per section."""
    lines = ["Reasons:", *(f"  - {reason}" for reason in verdict.reasons)]
    if verdict.monitor:
        lines.append("  (monitor mode: recorded and notified, no tag changed)")

    def section(title: str, rows: list[str]) -> None:
        if not rows:
            return
        lines.extend(["", f"{title} ({len(rows)}):"])
        lines.extend(f"  {row}" for row in rows[:limit])
        if len(rows) > limit:
            lines.append(f"  ... and {len(rows) - limit} more")

    blocking = {i for b in verdict.breaches for i in b.finding_ids}
    counted = _ordered(verdict.counted)
    # an exploitable finding blocks even when another rule made it not count
    blockers = [f for f in counted if f.id in blocking] + _ordered(tuple(
        i.finding for i in verdict.ignored
        if i.why not in ("exception", "vex") and i.finding.id in blocking))
    section("Findings that block", [finding_line(f) for f in blockers])
    section("Other findings that count",
            [finding_line(f) for f in counted if f.id not in blocking])
    ignored = sorted(verdict.ignored,
                     key=lambda i: (i.why, -i.finding.severity, i.finding.id))
    section("Findings ignored", [f"{finding_line(i.finding)}\n      why: {i.detail}"
                                 for i in ignored])
    section("Exceptions expiring soon",
            [f"{e.id} ({e.owner}) expires {e.expires}" for e in verdict.exceptions_expiring])
    section("Exceptions unused by this image",
            [f"{e.id} ({e.owner}) expires {e.expires}" for e in verdict.exceptions_unused])
    return lines


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "id": finding.id,
        "severity": finding.severity.name,
        "package": finding.package,
        "installed_version": finding.installed_version,
        "fixed_version": finding.fixed_version,
        "fix_available": finding.fix_available,
        "exploit_available": finding.exploit_available,
        "score": finding.score,
        "epss": finding.epss,
        "first_seen": finding.first_seen.isoformat() if finding.first_seen else None,
        "source": str(finding.source),
        "uri": finding.uri,
    }


def verdict_document(verdict: Verdict, *, repository: str, digest: str | None = None,
                     tags: list[str] | tuple[str, ...] = (),
                     policy_source: str | None = None, decided_at: str | None = None,
                     verdict_revision: int | None = None) -> dict[str, Any]:
    """The verdict as a stable, documented JSON-ready document: the ``gatekeeper.verdict/v1``
    document (every field of the signed predicate, :func:`gatekeeper.domain.attestation.
    predicate`; ``decided_at`` and ``verdict_revision`` null where no verdict was committed,
    as with ``gatekeeper evaluate``) plus the evaluation's detail (tags, mode, the policy,
    breaches, findings, exceptions)."""
    return {
        "schema": DOCUMENT_SCHEMA,
        "repository": repository,
        "digest": digest,
        "tags": list(tags),
        "outcome": str(verdict.outcome),
        "policy_version": verdict.policy_version,
        "decided_at": decided_at,
        "verdict_revision": verdict_revision,
        "approved": verdict.approved,
        "mode": verdict.mode,
        "scan_status": verdict.scan_status,
        "policy": {"version": verdict.policy_version, "rule": verdict.matched_rule,
                   "source": policy_source},
        "reasons": list(verdict.reasons),
        "counts": dict(verdict.counts),
        "highest_severity": verdict.highest_severity,
        "breaches": [_breach_dict(b) for b in verdict.breaches],
        "warnings": [_breach_dict(w) for w in verdict.warnings],
        "counted": [_finding_dict(f) for f in _ordered(verdict.counted)],
        "ignored": [
            {"finding": _finding_dict(i.finding), "why": i.why, "detail": i.detail,
             "exception": i.exception.as_dict() if i.exception else None,
             **({"vex": i.param.as_dict()} if i.why == "vex" else {})}
            for i in sorted(verdict.ignored, key=lambda i: (i.why, -i.finding.severity,
                                                            i.finding.id))
        ],
        "ignored_by_reason": dict(Counter(i.why for i in verdict.ignored)),
        "exceptions": {
            "used": [e.as_dict() for e in verdict.exceptions_used],
            "unused": [e.as_dict() for e in verdict.exceptions_unused],
            "expiring": [e.as_dict() for e in verdict.exceptions_expiring],
        },
    }


def _breach_dict(breach: Any) -> dict[str, Any]:
    return {"rule": breach.rule, "severity": breach.severity, "count": breach.count,
            "limit": breach.limit, "finding_ids": list(breach.finding_ids),
            "text": breach.describe()}
