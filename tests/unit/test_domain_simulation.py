"""Trying a policy (simulation) and exception hygiene: pure, without AWS."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

from gatekeeper.domain.exception_hygiene import Problem, classify
from gatekeeper.domain.findings import Finding, Severity, Source
from gatekeeper.domain.policy import Policy, parse_policy
from gatekeeper.domain.simulation import (
    Change,
    Comparison,
    NotJudged,
    Simulation,
    compare,
    compare_index,
    judge,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def policy(body: str) -> Policy:
    return parse_policy("version: 1\n" + textwrap.dedent(body).lstrip("\n"), version="v")


STRICT = policy("""
    default:
      max_findings: {CRITICAL: 0, HIGH: 0}
      warn_findings: {UNTRIAGED: 0}
    """)
LOOSE = policy("""
    default:
      max_findings: {CRITICAL: 0, HIGH: 5}
    """)


def finding(fid: str, severity: Severity, package: str = "curl") -> Finding:
    return Finding(id=fid, severity=severity, source=Source.BASIC, package=package)


HIGH = [finding("CVE-2023-38545", Severity.HIGH)]


# --- simulation -----------------------------------------------------------------------------

def test_a_looser_candidate_approves_what_the_published_policy_quarantines() -> None:
    # Given an image with one HIGH finding, quarantined by the published policy
    # When the looser candidate is compared on the same findings
    result = compare(STRICT, LOOSE, "team-a/web", "sha256:1", "COMPLETE", None, HIGH, NOW)

    # Then it flips to approved, and the published side names the blocking CVE
    assert isinstance(result, Comparison)
    assert result.change is Change.TO_APPROVED and result.flips
    assert "CVE-2023-38545" in result.published.reasons[0]
    assert result.candidate.matched_rule == "default"


def test_warnings_count_as_approved_for_flipping_but_are_shown() -> None:
    # Given an image with an UNTRIAGED finding (approved with warnings by STRICT only)
    findings = [finding("CVE-2024-1", Severity.UNTRIAGED)]

    # When compared
    result = compare(STRICT, LOOSE, "r", "sha256:1", "COMPLETE", None, findings, NOW)

    # Then it is a change of warnings, not a flip
    assert isinstance(result, Comparison)
    assert result.change is Change.WARNINGS and not result.flips
    # And a stricter candidate flipping it to quarantined is a flip
    stricter = policy("""
        default:
          max_findings: {UNTRIAGED: 0}
        """)
    flipped = compare(STRICT, stricter, "r", "sha256:1", "COMPLETE", None, findings, NOW)
    assert isinstance(flipped, Comparison) and flipped.change is Change.TO_QUARANTINED


def test_an_unfinished_scan_is_not_judged_never_approved() -> None:
    result = compare(STRICT, LOOSE, "r", "sha256:1", "IN_PROGRESS", None, [], NOW)
    assert result == NotJudged("r", "sha256:1", "no finished scan (ECR reports IN_PROGRESS)")


def test_an_image_index_follows_its_platform_images() -> None:
    # Given an index of two platform images, one with a HIGH finding
    amd = compare(STRICT, LOOSE, "r", "sha256:amd", "COMPLETE", None, HIGH, NOW)
    arm = compare(STRICT, LOOSE, "r", "sha256:arm", "COMPLETE", None, [], NOW)
    judged = {("r", "sha256:amd"): amd, ("r", "sha256:arm"): arm}
    platforms = [("sha256:amd", "linux/amd64"), ("sha256:arm", "linux/arm64")]

    # When the index is compared
    index = compare_index(STRICT, LOOSE, "r", "sha256:idx", platforms, judged)

    # Then it flips with its platform image
    assert isinstance(index, Comparison) and index.change is Change.TO_APPROVED

    # And an index whose platform image was not judged is not judged either
    judged[("r", "sha256:arm")] = NotJudged("r", "sha256:arm", "gone from ECR")
    missing = compare_index(STRICT, LOOSE, "r", "sha256:idx", platforms, judged)
    assert isinstance(missing, NotJudged) and "gone from ECR" in missing.reason


def test_the_simulation_counts_per_repository_and_ranks_the_flips() -> None:
    results = [
        compare(STRICT, LOOSE, "b", "sha256:1", "COMPLETE", None, HIGH, NOW),
        compare(STRICT, LOOSE, "a", "sha256:2", "COMPLETE", None, [], NOW),
        compare(STRICT, LOOSE, "b", "sha256:3", "COMPLETE", None, HIGH, NOW,
                recorded="APPROVED"),
        NotJudged("a", "sha256:4", "gone from ECR"),
    ]
    simulation = Simulation.of(results)
    rows = simulation.by_repository()
    assert (rows["a"].unchanged, rows["a"].not_judged, rows["b"].to_approved) == (1, 1, 2)
    assert simulation.flips == 2 and simulation.drifted == 1
    assert [name for name, _ in simulation.top_repositories()] == ["b"]


def test_judge_keeps_no_findings() -> None:
    judged = judge(STRICT, "r", "COMPLETE", None, HIGH, NOW)
    assert judged is not None and not hasattr(judged, "counted")


# --- exception hygiene ----------------------------------------------------------------------

HYGIENE = policy("""
    default:
      max_findings: {CRITICAL: 0}
    exceptions:
      - {id: CVE-1, expires: 2026-12-01, reason: r, owner: a@example.com}
      - {id: CVE-2, expires: 2026-12-10, reason: r, owner: a@example.com}
      - {id: CVE-3, expires: 2027-06-01, reason: r, owner: a@example.com}
      - {id: CVE-4, expires: 2027-06-01, reason: r, owner: a@example.com, package: curl}
    """)


def test_exceptions_are_classified_expired_expiring_and_unused() -> None:
    # Given that the verdicts used CVE-2 and CVE-4
    used = {HYGIENE.exceptions[1].ref, HYGIENE.exceptions[3].ref}

    # When classified with a 14-day window
    reports = classify(HYGIENE, NOW, timedelta(days=14), used)

    # Then CVE-1 expired (5 days ago: its last day was the 1st), CVE-2 expires within the
    # window (3 days left), CVE-3 matches nothing, CVE-4 is fine
    assert [(r.exception.id, r.problems, r.days_left) for r in reports] == [
        ("CVE-1", (Problem.EXPIRED,), -5),
        ("CVE-2", (Problem.EXPIRING,), 3),
        ("CVE-3", (Problem.UNUSED,), 176),
        ("CVE-4", (), 176),
    ]


def test_without_usage_nothing_is_called_unused_and_the_window_decides_expiring() -> None:
    reports = classify(HYGIENE, NOW, timedelta(days=2), None)
    assert [r.problems for r in reports] == [(Problem.EXPIRED,), (), (), ()]


def test_an_exception_can_be_expiring_and_unused() -> None:
    reports = classify(HYGIENE, NOW, timedelta(days=365), set())
    assert reports[2].problems == (Problem.EXPIRING, Problem.UNUSED)
