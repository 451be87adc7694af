"""Judging findings against a policy: one pass over the findings, every decision explained.

The policy (:mod:`gatekeeper.domain.policy`) is data: its rules, overrides and exceptions.
This module reads it and decides; nothing here is imported back by the policy.

For each finding, in this order:

1. an active exception that covers it (id, package, repository) exempts it from everything,
   and so does an OpenVEX not_affected/fixed statement for it and the image
   (:mod:`gatekeeper.domain.vex`);
2. with ``block_if_exploit_available`` / ``block_if_epss_at_least`` /
   ``block_if_known_exploited``, a finding with a known exploit / a high EPSS / a CVE in CISA's
   KEV catalog (``policy.known_exploited``) blocks the image, whatever its severity, fix, score
   or age; with that catalog unavailable, the KEV rule blocks the image (fail closed);
3. ``ignore_unfixed``, ``min_score`` and ``grace_days`` make it not count (it is still shown);
4. otherwise it counts toward ``max_findings`` (quarantine) and ``warn_findings`` (warning).

Exceptions and ignore rules only ever remove findings from what counts, so an exception can
never make a verdict stricter, and an extra finding can never make it more lenient.

Every severity counts under its own name: UNDEFINED and UNTRIAGED findings are limited only by
what the policy says about them (``max_findings`` / ``warn_findings``); a policy that names
neither lets them through. Findings always have a severity AWS documents: anything else made
the scan FINDINGS_INCOMPLETE before it got here (:func:`incomplete`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gatekeeper.domain.findings import FINDINGS_INCOMPLETE, Finding, Severity
from gatekeeper.domain.kev import KevCatalog
from gatekeeper.domain.policy import (
    SCAN_DONE_STATES,
    SCAN_FAILED_STATES,
    Policy,
    PolicyException,
)
from gatekeeper.domain.verdict import Breach, Ignored, Outcome, Verdict


def _grace_end(first_seen: datetime, period: timedelta) -> datetime:
    try:
        return first_seen + period
    except OverflowError:
        return datetime.max.replace(tzinfo=first_seen.tzinfo)


def _limit_breaches(rule: str, limits: Mapping[Severity, int],
                    by_severity: dict[Severity, list[Finding]]) -> list[Breach]:
    breaches = []
    for severity in sorted(limits, reverse=True):
        group, limit = by_severity[severity], limits[severity]
        if len(group) > limit:
            ids = tuple(sorted({f.id for f in group}))
            breaches.append(Breach(rule, severity.name, len(group), limit, ids))
    return breaches


def evaluate(policy: Policy, repository: str, findings: Iterable[Finding],
             now: datetime | None = None, digest: str | None = None, *,
             account: str | None = None) -> Verdict:
    """The verdict of ``policy`` on ``findings`` of an image of ``repository`` at ``now``
    (``digest``: the image's, which VEX statements may name).

    ``account``: the AWS account the image lives in, for the policy's ``accounts:`` limits;
    None (unknown) matches no override or exception limited to accounts."""
    now = now or datetime.now(UTC)
    # None unless a statement names this image: the loop then pays one test per finding
    vex = (policy.vex.for_image(repository, digest) or None) if policy.vex else None
    vex_ids = vex.by_id if vex is not None else None
    vexed: dict[str, str] = {}
    rules = policy.rules_for(repository, account)
    findings = findings if isinstance(findings, list | tuple) else list(findings)

    applicable = policy.exceptions_for(repository, account)
    active: dict[str, list[PolicyException]] = {}
    for exception in applicable:
        if exception.active(now):
            active.setdefault(exception.id, []).append(exception)
    used: dict[int, PolicyException] = {}

    # Rules switched off cost nothing per finding; grace periods become cut-off instants.
    exploit = rules.block_if_exploit_available
    epss_at_least = rules.block_if_epss_at_least
    kev, kev_added = _known_exploited(policy, rules.block_if_known_exploited)
    ignore_unfixed = rules.ignore_unfixed
    min_score = rules.min_score
    cutoffs = {s: now - timedelta(days=d) for s, d in rules.grace_days.items() if d > 0}
    # (grace_days is at most 3650 by the schema, so the cut-offs stay on the calendar)

    rules_on = bool(exploit or epss_at_least is not None or kev_added or ignore_unfixed
                    or min_score is not None or cutoffs)

    by_severity: dict[Severity, list[Finding]] = {severity: [] for severity in Severity}
    ignored: list[Ignored] = []
    ignore = ignored.append
    new = tuple.__new__  # Ignored is a NamedTuple: skip its Python-level constructor
    exploited: list[Finding] = []
    likely: list[Finding] = []
    known: list[Finding] = []
    for finding in findings:
        if active:
            candidates = active.get(finding.key)
            if candidates:
                match = next((c for c in candidates if c.covers(finding)), None)
                if match is not None:
                    used[match.index] = match
                    ignore(new(Ignored, (finding, "exception", match.ref)))
                    continue
        if vex_ids and vex is not None and finding.key in vex_ids:
            statement = vex.exempting(finding)
            if statement is not None:
                vexed.setdefault(finding.id, statement.describe())
                ignore(new(Ignored, (finding, "vex", statement)))
                continue
        if rules_on:
            if exploit and finding.exploit_available:
                exploited.append(finding)
            if epss_at_least is not None:
                epss = finding.epss
                if epss is not None and epss >= epss_at_least:
                    likely.append(finding)
            if kev_added and finding.key in kev_added:
                known.append(finding)
            if ignore_unfixed and finding.fix_available is False:
                ignore(new(Ignored, (finding, "unfixed", None)))
                continue
            if min_score is not None:
                score = finding.score
                if score is not None and score < min_score:
                    ignore(new(Ignored, (finding, "below_score", min_score)))
                    continue
            if cutoffs:
                cutoff = cutoffs.get(finding.severity)
                seen = finding.first_seen
                if cutoff is not None and seen is not None and seen > cutoff:
                    ignore(new(Ignored, (finding, "in_grace", _grace_end(seen, now - cutoff))))
                    continue
        by_severity[finding.severity].append(finding)

    breaches = _limit_breaches("max_findings", rules.max_findings, by_severity)
    if exploited:
        breaches.append(Breach("block_if_exploit_available", None, len(exploited), 1,
                               tuple(sorted({f.id for f in exploited}))))
    if likely:
        breaches.append(Breach("block_if_epss_at_least", None, len(likely),
                               epss_at_least or 0.0, tuple(sorted({f.id for f in likely}))))
    if kev is not None:
        breaches += _kev_breaches(kev, known)
    warnings = _limit_breaches("warn_findings", rules.warn_findings, by_severity)
    counted = [f for severity in reversed(Severity) for f in by_severity[severity]]

    if breaches:
        outcome = Outcome.QUARANTINED
        reasons = tuple(b.describe() for b in breaches)
    elif warnings:
        outcome = Outcome.APPROVED_WITH_WARNINGS
        reasons = tuple(w.describe() for w in warnings)
    else:
        outcome = Outcome.APPROVED
        reasons = (f"{len(counted)} counted finding(s) of {len(findings)}, all within the "
                   f"limits of {rules.matched}",)

    if vexed:
        reasons += _vex_reasons(vexed)
    totals = Counter({s: len(group) for s, group in by_severity.items() if group})
    totals.update(item.finding.severity for item in ignored)
    window = now + timedelta(days=policy.expiring_window_days)
    # The first instant at which time alone can change this verdict.
    review_at = min([e.expires for e in used.values()]
                    + [i.param for i in ignored if i.why == "in_grace"], default=None)
    highest = max(totals, default=None)
    return Verdict(
        outcome=outcome,
        reasons=reasons,
        policy_version=policy.version,
        counts={s.name: totals[s] for s in sorted(totals, reverse=True)},
        highest_severity=highest.name if highest is not None else None,
        breaches=tuple(breaches),
        warnings=tuple(warnings),
        counted=tuple(counted),
        ignored=tuple(ignored),
        exceptions_used=tuple(e.ref for _, e in sorted(used.items())),
        exceptions_unused=tuple(e.ref for e in applicable
                                if e.index not in used and e.active(now)),
        exceptions_expiring=tuple(e.ref for e in applicable
                                  if e.active(now) and e.expires <= window),
        matched_rule=rules.matched,
        mode=rules.mode,
        enforcement=rules.enforcement,
        review_at=review_at,
    )


def _vex_reasons(vexed: Mapping[str, str], shown: int = 10) -> tuple[str, ...]:
    """One reason per vulnerability a VEX statement excepted (the first ``shown``)."""
    lines = [f"{name}: {text}" for name, text in sorted(vexed.items())]
    more = len(lines) - shown
    return tuple(lines[:shown]) + ((f"and {more} more vulnerabilities excepted by VEX",)
                                   if more > 0 else ())


def _known_exploited(policy: Policy, on: bool) -> tuple[KevCatalog | None,
                                                      Mapping[str, str]]:
    """The KEV catalog when the rule is on (an unavailable one if none was loaded), and the
    CVEs it lists."""
    if not on:
        return None, {}
    kev = policy.known_exploited
    if kev is None:
        kev = KevCatalog.unavailable("no catalog was loaded")
    return kev, kev.added


def _kev_breaches(kev: KevCatalog, known: list[Finding]) -> list[Breach]:
    """block_if_known_exploited: the listed findings, or the image if there is no catalog."""
    if not kev.available:
        return [Breach("block_if_known_exploited", None, 0, 1, (),
                       (f"KEV catalog unavailable: {kev.problem}",))]
    if not known:
        return []
    ids = tuple(sorted({f.id for f in known}))
    return [Breach("block_if_known_exploited", None, len(known), 1, ids,
                   tuple(kev.reason(i) for i in ids))]


# What may end a sentence from outside (an ECR scan description, say) before "; " joins
# another clause to it: "not supported.; on_scan_failure" reads as a typo.
_CLAUSE_END = " \t\r\n.;:,"


def _clause(text: object) -> str:
    """``text`` as a clause to join with ``; ``: without trailing punctuation or space."""
    return str(text).rstrip(_CLAUSE_END) if text else ""


def scan_failed(policy: Policy, repository: str, status: str,
                description: str | None, *, account: str | None = None) -> Verdict:
    rules = policy.rules_for(repository, account)
    outcome = rules.scan_failure_outcome(status)
    description = _clause(description)
    detail = f": {description}" if description else ""
    choice = "approve" if outcome is Outcome.APPROVED else "quarantine"
    return Verdict(
        outcome=outcome,
        reasons=(f"scan {status}{detail}; on_scan_failure of {rules.matched} is {choice}",),
        policy_version=policy.version,
        scan_status=status,
        matched_rule=rules.matched,
        mode=rules.mode,
        enforcement=rules.enforcement,
    )


_STRICTNESS = (Outcome.APPROVED, Outcome.APPROVED_WITH_WARNINGS, Outcome.QUARANTINED)


def judge_scan(policy: Policy, repository: str, status: str, description: str | None,
               findings: Iterable[Finding], now: datetime | None = None,
               digest: str | None = None, *, account: str | None = None) -> Verdict | None:
    """The verdict on a scan in ``status``; None while the scan is not finished.

    FINDINGS_INCOMPLETE (``description`` says why): the stricter of on_scan_failure and
    the verdict on the findings that were read."""
    if status in SCAN_DONE_STATES:
        return replace(evaluate(policy, repository, findings, now, digest, account=account),
                       scan_status=status)
    if status == FINDINGS_INCOMPLETE:
        return incomplete(policy, repository, findings, description, now, digest,
                          account=account)
    if status in SCAN_FAILED_STATES:
        return scan_failed(policy, repository, status, description, account=account)
    return None


def incomplete(policy: Policy, repository: str, findings: Iterable[Finding],
               description: str | None, now: datetime | None = None,
               digest: str | None = None, *, account: str | None = None) -> Verdict:
    """A finished scan whose findings could not all be read (FINDINGS_INCOMPLETE): the stricter
    of the policy's on_scan_failure and the verdict on the findings that were read, so that a
    blocking finding read still blocks even where scan failures are approved."""
    failed = scan_failed(policy, repository, FINDINGS_INCOMPLETE, description, account=account)
    judged = evaluate(policy, repository, findings, now, digest, account=account)
    outcome = max(failed.outcome, judged.outcome, key=_STRICTNESS.index)
    reasons = failed.reasons
    if judged.outcome is not Outcome.APPROVED:
        reasons += tuple(f"of the findings read: {reason}" for reason in judged.reasons)
    return replace(judged, outcome=outcome, reasons=reasons, scan_status=FINDINGS_INCOMPLETE)


def index_verdict(policy: Policy, repository: str,
                  platforms: list[tuple[str, str, str, tuple[str, ...]]], *,
                  account: str | None = None) -> Verdict:
    """An image index follows its platform images: quarantined if any is, approved with
    warnings if any is, approved only when every one is. ``platforms``: (platform, digest,
    verdict, reasons) of each, all judged."""
    rules = policy.rules_for(repository, account)
    states = {state for _, _, state, _ in platforms}
    if Outcome.QUARANTINED in states:
        outcome = Outcome.QUARANTINED
    elif Outcome.APPROVED_WITH_WARNINGS in states:
        outcome = Outcome.APPROVED_WITH_WARNINGS
    else:
        outcome = Outcome.APPROVED
    reasons = tuple(
        f"{platform} ({digest[:19]}): {state}" + (f": {reasons[0]}" if reasons else "")
        for platform, digest, state, reasons in sorted(platforms))
    return Verdict(outcome=outcome, reasons=reasons or ("an image index of no platform image",),
                   policy_version=policy.version, scan_status="IMAGE_INDEX",
                   matched_rule=rules.matched, mode=rules.mode,
                   enforcement=rules.enforcement)
