"""The policy engine: exceptions, ignore rules, blocking rules, warnings, monitor mode, scan
failures, and why every finding did or did not count. Every evaluation uses an explicit ``now``."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import Finding, Severity, Source
from gatekeeper.domain.policy import (
    Policy,
    PolicyError,
    PolicyException,
    PolicyIssue,
    Rules,
    parse_policy,
)
from gatekeeper.domain.verdict import Breach, ExceptionRef, Outcome, Verdict

NOW = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)
REPO = "team-a/web"
CVE = "CVE-2027-0001"
OTHER_CVE = "CVE-2027-0002"
OWNER = "alice@example.com"
REASON = "fix pending upstream"
RANK = {Outcome.APPROVED: 0, Outcome.APPROVED_WITH_WARNINGS: 1, Outcome.QUARANTINED: 2}
STATES = ["FAILED", "UNSUPPORTED_IMAGE", "SCAN_ELIGIBILITY_EXPIRED", "FINDINGS_UNAVAILABLE",
          "FINDINGS_INCOMPLETE"]


def vuln(fid: str = CVE, severity: Severity = Severity.HIGH, **fields: Any) -> Finding:
    return Finding(id=fid, severity=severity, source=Source.ENHANCED, **fields)


def exception(fid: str = CVE, expires: str = "2027-01-31", **fields: Any) -> dict[str, Any]:
    return {"id": fid, "expires": expires, "reason": REASON, "owner": OWNER, **fields}


# A limit no test reaches: a default without max_findings would get the built-in limits
# (CRITICAL 0, HIGH 0) from the parser, and an empty one is refused.
UNLIMITED = {"CRITICAL": 1_000_000}


def load(default: dict[str, Any] | None = None, **top: Any) -> Policy:
    """A policy from plain data, written as YAML and read back by the real parser. Without
    max_findings the rule under test decides alone (UNLIMITED)."""
    data = {"version": 1, "default": {"max_findings": UNLIMITED, **(default or {})}, **top}
    return parse_policy(yaml.safe_dump(data, sort_keys=False), version="test")


def excepting(*exceptions: dict[str, Any], **default: Any) -> Policy:
    """A policy allowing no HIGH or CRITICAL finding, with these exceptions."""
    rules = {"max_findings": {"CRITICAL": 0, "HIGH": 0}, **default}
    return load(rules, exceptions=list(exceptions))


def exception_yaml(**keys: str | None) -> str:
    """A policy with one exception on lines 4..; values are raw YAML, None leaves a key out."""
    values: dict[str, str | None] = {"id": CVE, "expires": "2027-01-31", "reason": REASON,
                                     "owner": OWNER, **keys}
    body = "\n    ".join(f"{k}: {v}" for k, v in values.items() if v is not None)
    return f"version: 1\ndefault: {{}}\nexceptions:\n  - {body}\n"


def problems(text: str) -> list[PolicyIssue]:
    with pytest.raises(PolicyError) as raised:
        parse_policy(text)
    return list(raised.value.issues)


def only_problem(text: str) -> PolicyIssue:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def whys(verdict: Verdict) -> dict[str, str]:
    return {i.finding.id: i.why for i in verdict.ignored}


def counted_ids(verdict: Verdict) -> list[str]:
    return [f.id for f in verdict.counted]


# --- exceptions: parsing ---------------------------------------------------------------------


def test_an_exception_with_its_required_keys_parses() -> None:
    # Given an exception with only id, expires (a YAML date), reason and owner
    # When it is parsed
    parsed = parse_policy(exception_yaml())
    # Then it is valid through 2027-01-31 UTC, for every package and repository
    assert parsed.exceptions == (PolicyException(
        id=CVE, expires=datetime(2027, 2, 1, tzinfo=UTC), reason=REASON, owner=OWNER,
        package=None, repositories=(), ticket=None, index=0),)


def test_an_exception_with_its_optional_keys_parses() -> None:
    parsed = parse_policy(exception_yaml(package="openssl", ticket="SEC-42",
                                         repositories="['team-a/*', shared]"))
    (accepted,) = parsed.exceptions
    assert (accepted.package, accepted.ticket, accepted.repositories) == (
        "openssl", "SEC-42", ("team-a/*", "shared"))


def test_exceptions_keep_their_position_in_the_policy() -> None:
    parsed = excepting(exception(CVE), exception(OTHER_CVE))
    assert [(e.id, e.index) for e in parsed.exceptions] == [(CVE, 0), (OTHER_CVE, 1)]


@pytest.mark.parametrize("key", ["id", "expires", "reason", "owner"])
def test_a_missing_required_exception_key_is_reported_at_its_path(key: str) -> None:
    # Given an exception without one of its required keys
    # When it is parsed
    issue = only_problem(exception_yaml(**{key: None}))
    # Then the key is reported at its own path, on the exception's line
    assert (issue.path, issue.line, issue.message) == (
        f"exceptions[0].{key}", 4, "missing; this key is required")


def test_an_empty_exception_reports_every_required_key() -> None:
    found = problems("version: 1\ndefault: {}\nexceptions:\n  - {}\n")
    assert [(i.path, i.line) for i in found] == [
        ("exceptions[0].id", 4), ("exceptions[0].expires", 4),
        ("exceptions[0].reason", 4), ("exceptions[0].owner", 4)]


@pytest.mark.parametrize(
    ("keys", "path", "line", "message"),
    [
        ({"id": "''"}, "exceptions[0].id", 4, "expected a non-empty string"),
        ({"owner": "'  '"}, "exceptions[0].owner", 7, "expected a non-empty string"),
        ({"reason": "[a]"}, "exceptions[0].reason", 6, "expected a string, got a list"),
        ({"package": "3"}, "exceptions[0].package", 8, "expected a string, got 3"),
        ({"ticket": "~"}, "exceptions[0].ticket", 8, "expected a string, got nothing"),
        ({"repositories": "[]"}, "exceptions[0].repositories", 8,
         "expected at least 1 item(s)"),
        ({"repositories": "team-a/*"}, "exceptions[0].repositories", 8,
         "expected a list, got 'team-a/*'"),
        ({"expires": "20270131"}, "exceptions[0].expires", 5, "expected a string, got 20270131"),
        ({"severity": "HIGH"}, "exceptions[0].severity", 8,
         "unknown key; expected one of: accounts, expires, id, owner, package, reason, "
         "repositories, "
         "ticket"),
    ],
    ids=["blank-id", "blank-owner", "reason-list", "package-number", "ticket-null",
         "no-repositories", "repositories-string", "expires-number", "unknown-key"],
)
def test_a_bad_exception_value_is_reported_with_its_path_and_line(
    keys: dict[str, str], path: str, line: int, message: str
) -> None:
    issue = only_problem(exception_yaml(**keys))
    assert (issue.path, issue.line, issue.message) == (path, line, message)


@pytest.mark.parametrize(
    ("written", "expires"),
    [
        ("2027-01-31", datetime(2027, 2, 1, tzinfo=UTC)),
        ("'2027-01-31'", datetime(2027, 2, 1, tzinfo=UTC)),
        ("2027-01-31T10:30:00Z", datetime(2027, 1, 31, 10, 30, tzinfo=UTC)),
        ("'2027-01-31T10:30:00Z'", datetime(2027, 1, 31, 10, 30, tzinfo=UTC)),
        ("2027-01-31T10:30:00+02:00", datetime(2027, 1, 31, 8, 30, tzinfo=UTC)),
        ("'2027-01-31T10:30:00-0530'", datetime(2027, 1, 31, 16, 0, tzinfo=UTC)),
        ("'2027-01-31T10:30'", datetime(2027, 1, 31, 10, 30, tzinfo=UTC)),
        ("2027-01-31 10:30:00", datetime(2027, 1, 31, 10, 30, tzinfo=UTC)),
        ("'2027-01-31T10:30:00.25Z'", datetime(2027, 1, 31, 10, 30, 0, 250000, tzinfo=UTC)),
    ],
    ids=["yaml-date", "quoted-date", "yaml-utc", "quoted-utc", "yaml-offset", "offset-no-colon",
         "no-seconds-no-zone", "yaml-space-no-zone", "fraction"],
)
def test_expires_is_a_date_valid_through_that_day_or_an_instant(written: str,
                                                               expires: datetime) -> None:
    # Given expires written as a date or a date-time (a time without a zone is UTC)
    # When parsed
    (accepted,) = parse_policy(exception_yaml(expires=written)).exceptions
    # Then it is the instant the exception stops applying
    assert accepted.expires == expires
    assert accepted.expires.utcoffset() is not None


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone set to UTC-10 for the test."""
    monkeypatch.setenv("TZ", "Pacific/Honolulu")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_from_utc")
@pytest.mark.parametrize(
    ("written", "expires"),
    [("'2027-01-31T10:30'", datetime(2027, 1, 31, 10, 30, tzinfo=UTC)),
     ("2027-01-31 10:30:00", datetime(2027, 1, 31, 10, 30, tzinfo=UTC)),
     ("2027-01-31", datetime(2027, 2, 1, tzinfo=UTC))],
)
def test_an_expiry_without_a_zone_is_utc_whatever_the_local_zone(written: str,
                                                                 expires: datetime) -> None:
    (accepted,) = parse_policy(exception_yaml(expires=written)).exceptions
    assert accepted.expires == expires


@pytest.mark.parametrize(
    "written",
    ["'2027-02-30'", "'2026-02-29'", "'2027-13-01'", "'2027-01-31T24:30:00Z'",
     "'2027-01-31T10:61:00Z'", "'2027-01-31T10:30:00+25:00'"],
)
def test_an_expiry_that_is_not_a_real_date_is_reported_with_its_line(written: str) -> None:
    issue = only_problem(exception_yaml(expires=written))
    assert (issue.path, issue.line) == ("exceptions[0].expires", 5)
    assert issue.message.startswith("not a real date: ")


def test_every_unreal_expiry_is_reported() -> None:
    text = exception_yaml(expires="'2027-02-30'") + (
        f"  - {{id: {OTHER_CVE}, expires: '2027-04-31', reason: r, owner: o}}\n")
    assert [(i.path, i.line) for i in problems(text)] == [
        ("exceptions[0].expires", 5), ("exceptions[1].expires", 8)]


def test_an_unquoted_expiry_that_is_not_a_real_date_is_reported_with_its_line() -> None:
    issue = only_problem(exception_yaml(expires="2027-02-30"))
    assert (issue.path, issue.line) == ("exceptions[0].expires", 5)
    assert "not a real date" in issue.message


@pytest.mark.parametrize("written", ["9999-12-31", "'9999-12-31'"])
def test_the_last_representable_date_raises_nothing_but_policy_error(written: str) -> None:
    with contextlib.suppress(PolicyError):
        parse_policy(exception_yaml(expires=written))


def test_an_unreal_expiry_is_reported_together_with_schema_problems() -> None:
    text = exception_yaml(expires="'2027-02-30'").replace("version: 1", "version: 2")
    assert [i.path for i in problems(text)] == ["version", "exceptions[0].expires"]


@pytest.mark.parametrize(
    "written",
    ["31/01/2027", "2027-1-31", "tomorrow", "'2027-01-31T10'", "'2027-01-31Z'",
     "'2027-01-31 at noon'", "'20270131'"],
)
def test_an_expiry_in_another_format_is_reported_with_the_expected_format(written: str) -> None:
    issue = only_problem(exception_yaml(expires=written))
    value = yaml.safe_load(written)
    assert (issue.path, issue.line, issue.message) == (
        "exceptions[0].expires", 5,
        f"{value!r} is not in the expected format: a date such as 2027-01-31, or an ISO-8601 "
        "date-time")


# --- exceptions: what they cover -------------------------------------------------------------


def test_an_active_exception_exempts_its_finding() -> None:
    # Given a policy allowing no HIGH, and an exception for the one HIGH finding
    judged = excepting(exception(CVE, package="openssl", ticket="SEC-42"))
    # When evaluated before the exception expires
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE, package="openssl")], now=NOW)
    # Then the image is approved, the finding ignored and the exception reported as used
    assert verdict.outcome is Outcome.APPROVED
    assert (verdict.counted, whys(verdict)) == ((), {CVE: "exception"})
    assert verdict.exceptions_used == (ExceptionRef(
        id=CVE, owner=OWNER, expires="2027-01-31", reason=REASON,
        package="openssl", ticket="SEC-42"),)
    assert verdict.exceptions_unused == ()


@pytest.mark.parametrize(
    ("now", "active"),
    [
        (datetime(2027, 1, 31, 0, 0, tzinfo=UTC), True),
        (datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC), True),
        (datetime(2027, 1, 31, 23, 59, 59, 999999, tzinfo=UTC), True),
        (datetime(2027, 2, 1, 0, 0, tzinfo=UTC), False),
        (datetime(2027, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), True),
        (datetime(2027, 1, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))), False),
    ],
    ids=["that-morning", "last-second", "last-microsecond", "next-midnight",
         "feb-1-in-paris", "jan-31-in-the-azores"],
)
def test_a_date_expiry_is_valid_through_that_day_utc(now: datetime, active: bool) -> None:
    judged = excepting(exception(CVE, expires="2027-01-31"))
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE)], now=now)
    assert (verdict.outcome is Outcome.APPROVED) is active
    assert (whys(verdict) == {CVE: "exception"}) is active


@pytest.mark.parametrize(
    ("now", "active"),
    [(datetime(2027, 1, 31, 10, 29, 59, tzinfo=UTC), True),
     (datetime(2027, 1, 31, 10, 30, tzinfo=UTC), False)],
    ids=["a-second-before", "the-moment-it-passes"],
)
def test_a_date_time_expiry_stops_applying_the_moment_it_passes(now: datetime,
                                                                active: bool) -> None:
    judged = excepting(exception(CVE, expires="2027-01-31T11:30:00+01:00"))
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE)], now=now)
    assert (verdict.outcome is Outcome.APPROVED) is active


@pytest.mark.parametrize(
    ("written", "found"),
    [("cve-2027-0001", CVE), (CVE, CVE.lower()), ("Cve-2027-0001", "cVE-2027-0001"),
     (f"  {CVE} ", CVE)],
    ids=["lower-exception", "lower-finding", "mixed", "padded"],
)
def test_exception_ids_match_case_insensitively(written: str, found: str) -> None:
    verdict = evaluation.evaluate(excepting(exception(written)), REPO, [vuln(found)], now=NOW)
    assert whys(verdict) == {found: "exception"}
    assert verdict.outcome is Outcome.APPROVED


@pytest.mark.parametrize("found", ["CVE-2027-00011", "CVE-2027-000", "GHSA-2027-0001"])
def test_an_exception_covers_only_its_own_id(found: str) -> None:
    verdict = evaluation.evaluate(excepting(exception(CVE)), REPO, [vuln(found)], now=NOW)
    assert counted_ids(verdict) == [found]
    assert verdict.outcome is Outcome.QUARANTINED


@pytest.mark.parametrize(
    ("package", "covered"),
    [("openssl", True), ("zlib", False), (None, False)],
    ids=["same-package", "other-package", "unknown-package"],
)
def test_an_exception_with_a_package_covers_only_that_package(package: str | None,
                                                               covered: bool) -> None:
    judged = excepting(exception(CVE, package="openssl"))
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE, package=package)], now=NOW)
    assert (whys(verdict) == {CVE: "exception"}) is covered
    assert (verdict.outcome is Outcome.APPROVED) is covered


def test_an_exception_without_a_package_covers_every_package() -> None:
    found = [vuln(CVE, package="openssl"), vuln(CVE, package="zlib"), vuln(CVE)]
    verdict = evaluation.evaluate(excepting(exception(CVE)), REPO, found, now=NOW)
    assert [i.why for i in verdict.ignored] == ["exception"] * 3
    assert verdict.outcome is Outcome.APPROVED


@pytest.mark.parametrize(
    ("repository", "covered"),
    [("team-a/web", True), ("team-a/nested/api", True), ("shared", True),
     ("team-b/web", False), ("team-a", False), ("TEAM-A/web", False)],
)
def test_an_exception_with_repositories_covers_only_matching_repositories(
    repository: str, covered: bool
) -> None:
    judged = excepting(exception(CVE, repositories=["team-a/*", "shared"]))
    verdict = evaluation.evaluate(judged, repository, [vuln(CVE)], now=NOW)
    assert (whys(verdict) == {CVE: "exception"}) is covered
    assert (verdict.outcome is Outcome.APPROVED) is covered


def test_an_exception_for_other_repositories_is_neither_used_nor_unused() -> None:
    # Given an exception, expiring soon, for team-b repositories only
    judged = excepting(exception(CVE, expires="2027-01-20", repositories=["team-b/*"]))
    # When a team-a image with that finding is evaluated
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE)], now=NOW)
    # Then the exception plays no part in the verdict at all
    assert counted_ids(verdict) == [CVE]
    assert (verdict.exceptions_used, verdict.exceptions_unused,
            verdict.exceptions_expiring) == ((), (), ())


@pytest.mark.parametrize("expires", ["2027-01-14", "2027-01-15T12:00:00Z", "2026-06-30"])
def test_an_expired_exception_behaves_exactly_as_if_absent(expires: str) -> None:
    # Given the same policy with and without an exception that has expired by NOW
    rules = {"max_findings": {"HIGH": 0}, "warn_findings": {"MEDIUM": 0}}
    found = [vuln(CVE), vuln(OTHER_CVE, Severity.MEDIUM)]
    with_expired = load(rules, exceptions=[exception(CVE, expires=expires),
                                           exception(OTHER_CVE, expires=expires)])
    without = load(rules)
    # When both judge the same findings
    # Then the verdicts are identical, down to the exception reporting
    assert evaluation.evaluate(with_expired, REPO, found,
                               now=NOW) == evaluation.evaluate(without, REPO, found, now=NOW)


def test_an_active_exception_that_matched_nothing_is_reported_unused() -> None:
    judged = excepting(exception(CVE, expires="2027-06-30"),
                       exception(OTHER_CVE, expires="2027-06-30", ticket="SEC-7"))
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE)], now=NOW)
    assert [e.id for e in verdict.exceptions_used] == [CVE]
    assert verdict.exceptions_unused == (ExceptionRef(
        id=OTHER_CVE, owner=OWNER, expires="2027-06-30", reason=REASON,
        ticket="SEC-7"),)


def test_an_exception_for_another_package_of_a_present_id_is_unused() -> None:
    # Given two exceptions for one id, in different packages
    judged = excepting(exception(CVE, package="zlib"), exception(CVE, package="openssl"))
    # When only the openssl finding is present
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE, package="openssl")], now=NOW)
    # Then the openssl exception is used and the zlib one unused
    assert [e.package for e in verdict.exceptions_used] == ["openssl"]
    assert [e.package for e in verdict.exceptions_unused] == ["zlib"]


def test_of_two_exceptions_covering_a_finding_the_first_is_used() -> None:
    judged = excepting(exception(CVE, ticket="SEC-1"), exception(CVE, ticket="SEC-2"))
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE)], now=NOW)
    assert [e.ticket for e in verdict.exceptions_used] == ["SEC-1"]
    assert [e.ticket for e in verdict.exceptions_unused] == ["SEC-2"]


@pytest.mark.parametrize(
    ("expires", "window", "expiring"),
    [
        ("2027-01-28", None, True),  # stops 2027-01-29T00:00, within 14 days of NOW
        ("2027-01-29T12:00:00Z", None, True),  # exactly 14 days after NOW
        ("2027-01-29T12:00:01Z", None, False),
        ("2027-02-10", None, False),
        ("2027-02-10", 30, True),
        ("2027-01-15", 0, False),  # valid through today: stops in 12 hours
        ("2027-01-15", 1, True),
        ("2027-01-15T11:59:59Z", None, False),  # already expired: not reported at all
    ],
)
def test_an_exception_expiring_within_the_window_is_reported(
    expires: str, window: int | None, expiring: bool
) -> None:
    top = {} if window is None else {"expiring_window_days": window}
    judged = load({}, exceptions=[exception(CVE, expires=expires)], **top)
    verdict = evaluation.evaluate(judged, REPO, [], now=NOW)
    assert ([e.id for e in verdict.exceptions_expiring] == [CVE]) is expiring


def test_the_expiring_window_defaults_to_14_days() -> None:
    assert load({}).expiring_window_days == 14


@pytest.mark.parametrize("present", [True, False], ids=["used", "unused"])
def test_an_expiring_exception_is_reported_whether_used_or_not(present: bool) -> None:
    judged = excepting(exception(CVE, expires="2027-01-20"))
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE)] if present else [], now=NOW)
    assert [e.id for e in verdict.exceptions_expiring] == [CVE]
    assert ([e.id for e in verdict.exceptions_used] == [CVE]) is present


def test_an_exception_exempts_from_the_exploit_and_epss_blocks_too() -> None:
    judged = excepting(exception(CVE), block_if_exploit_available=True,
                       block_if_epss_at_least=0.1)
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE, exploit_available=True, epss=0.9)],
                                  now=NOW)
    assert verdict.outcome is Outcome.APPROVED
    assert verdict.breaches == ()


# --- ignore rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fix_available", "ignored"), [(False, True), (True, False),
                                                        (None, False)])
def test_ignore_unfixed_ignores_only_findings_known_to_have_no_fix(
    fix_available: bool | None, ignored: bool
) -> None:
    judged = load({"max_findings": {"HIGH": 0}, "ignore_unfixed": True})
    verdict = evaluation.evaluate(judged, REPO, [vuln(fix_available=fix_available)], now=NOW)
    assert (whys(verdict) == {CVE: "unfixed"}) is ignored
    assert (verdict.outcome is Outcome.APPROVED) is ignored


def test_without_ignore_unfixed_an_unfixed_finding_counts() -> None:
    verdict = evaluation.evaluate(load({"max_findings": {"HIGH": 0}}),
        REPO, [vuln(fix_available=False)], now=NOW)
    assert counted_ids(verdict) == [CVE]


@pytest.mark.parametrize(("score", "ignored"), [(6.9, True), (0.0, True), (7.0, False),
                                                (9.8, False), (None, False)])
def test_min_score_ignores_findings_scored_below_it(score: float | None, ignored: bool) -> None:
    judged = load({"max_findings": {"HIGH": 0}, "min_score": 7})
    verdict = evaluation.evaluate(judged, REPO, [vuln(score=score)], now=NOW)
    assert (whys(verdict) == {CVE: "below_score"}) is ignored
    assert (verdict.outcome is Outcome.APPROVED) is ignored


@pytest.mark.parametrize(
    ("first_seen", "ignored"),
    [(NOW - timedelta(days=3), True), (NOW - timedelta(days=7, seconds=-1), True),
     (NOW - timedelta(days=7), False), (NOW - timedelta(days=30), False), (None, False)],
    ids=["3-days", "just-under-7-days", "exactly-7-days", "30-days", "unknown"],
)
def test_grace_days_ignore_findings_first_seen_recently(first_seen: datetime | None,
                                                       ignored: bool) -> None:
    judged = load({"max_findings": {"HIGH": 0}, "grace_days": {"HIGH": 7}})
    verdict = evaluation.evaluate(judged, REPO, [vuln(first_seen=first_seen)], now=NOW)
    assert (whys(verdict) == {CVE: "in_grace"}) is ignored
    assert (verdict.outcome is Outcome.APPROVED) is ignored


@pytest.mark.parametrize("grace_days", [{"CRITICAL": 7}, {"HIGH": 0}, {}],
                         ids=["other-severity", "zero-days", "none"])
def test_grace_days_apply_per_severity(grace_days: dict[str, int]) -> None:
    judged = load({"max_findings": {"HIGH": 0}, "grace_days": grace_days})
    verdict = evaluation.evaluate(judged, REPO, [vuln(first_seen=NOW - timedelta(hours=1))],
                                  now=NOW)
    assert counted_ids(verdict) == [CVE]


def test_a_finding_in_grace_says_when_its_grace_ends() -> None:
    judged = load({"grace_days": {"HIGH": 7}})
    verdict = evaluation.evaluate(judged, REPO, [vuln(first_seen=NOW - timedelta(days=3))], now=NOW)
    (ignored,) = verdict.ignored
    assert ignored.detail.startswith("in grace until 2027-01-19 ")


@pytest.mark.parametrize(
    ("days", "first_seen"),
    [(99_999_999, NOW - timedelta(days=1)), (7, datetime(9999, 12, 30, tzinfo=UTC))],
    ids=["huge-grace", "far-future-first-seen"],
)
def test_a_grace_period_past_the_calendar_still_gives_a_verdict(days: int,
                                                                first_seen: datetime) -> None:
    try:
        judged = load({"max_findings": {"HIGH": 0}, "grace_days": {"HIGH": days}})
    except PolicyError:
        return  # refusing such a policy would be a fix as good as judging with it
    verdict = evaluation.evaluate(judged, REPO, [vuln(first_seen=first_seen)], now=NOW)
    assert len(verdict.counted) + len(verdict.ignored) == 1


# --- blocking rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "fields"),
    [
        ({}, {"severity": Severity.LOW}),
        ({"max_findings": {"HIGH": 5}}, {}),
        ({"ignore_unfixed": True}, {"fix_available": False}),
        ({"min_score": 9}, {"score": 1.0}),
        ({"grace_days": {"HIGH": 30}}, {"first_seen": NOW - timedelta(days=1)}),
        ({"mode": "monitor"}, {}),
    ],
    ids=["any-severity", "within-limits", "unfixed", "low-score", "in-grace", "monitor"],
)
def test_an_exploitable_finding_quarantines_whatever_else_applies(
    rules: dict[str, Any], fields: dict[str, Any]
) -> None:
    # Given block_if_exploit_available and a finding with a known exploit that other rules
    # would let through
    judged = load({"block_if_exploit_available": True, **rules})
    # When evaluated
    verdict = evaluation.evaluate(judged, REPO, [vuln(exploit_available=True, **fields)], now=NOW)
    # Then the image is quarantined for it
    assert verdict.outcome is Outcome.QUARANTINED
    assert verdict.breaches == (Breach("block_if_exploit_available", None, 1, 1, (CVE,)),)
    assert verdict.reasons == (f"1 finding with a known exploit ({CVE})",)


@pytest.mark.parametrize("exploit", [False, None])
def test_a_finding_without_a_known_exploit_is_not_blocked(exploit: bool | None) -> None:
    judged = load({"block_if_exploit_available": True})
    verdict = evaluation.evaluate(judged, REPO, [vuln(exploit_available=exploit)], now=NOW)
    assert verdict.outcome is Outcome.APPROVED


def test_without_the_exploit_rule_an_exploitable_finding_only_counts() -> None:
    verdict = evaluation.evaluate(load({}), REPO, [vuln(exploit_available=True)], now=NOW)
    assert verdict.outcome is Outcome.APPROVED
    assert counted_ids(verdict) == [CVE]


@pytest.mark.parametrize(("epss", "blocked"), [(0.5, True), (0.97, True), (0.4999, False),
                                               (0.0, False), (None, False)])
def test_block_if_epss_at_least_quarantines_likely_exploited_findings(
    epss: float | None, blocked: bool
) -> None:
    judged = load({"block_if_epss_at_least": 0.5, "ignore_unfixed": True})
    verdict = evaluation.evaluate(judged, REPO, [vuln(severity=Severity.LOW, epss=epss,
                                           fix_available=False)], now=NOW)
    assert (verdict.outcome is Outcome.QUARANTINED) is blocked
    if blocked:
        assert verdict.reasons == (f"1 finding with EPSS >= 0.5 ({CVE})",)


# --- warnings --------------------------------------------------------------------------------


def test_findings_over_a_warning_limit_approve_with_warnings() -> None:
    # Given a warning limit of one HIGH, and no hard limit
    judged = load({"warn_findings": {"HIGH": 1}})
    # When two HIGH findings are evaluated
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE), vuln(OTHER_CVE)], now=NOW)
    # Then the image is approved with the warning listed
    assert verdict.outcome is Outcome.APPROVED_WITH_WARNINGS
    assert verdict.approved
    assert verdict.warnings == (Breach("warn_findings", "HIGH", 2, 1, (CVE, OTHER_CVE)),)
    assert verdict.reasons == (f"HIGH: 2 findings over the warning limit of 1 ({CVE}, "
                               f"{OTHER_CVE})",)
    assert verdict.breaches == ()


def test_findings_within_the_warning_limits_are_simply_approved() -> None:
    verdict = evaluation.evaluate(load({"warn_findings": {"HIGH": 1}}), REPO, [vuln()], now=NOW)
    assert (verdict.outcome, verdict.warnings) == (Outcome.APPROVED, ())


def test_breaches_beat_warnings_which_are_still_listed() -> None:
    judged = load({"max_findings": {"CRITICAL": 0}, "warn_findings": {"HIGH": 0}})
    verdict = evaluation.evaluate(judged, REPO, [vuln(CVE, Severity.CRITICAL), vuln(OTHER_CVE)],
                                  now=NOW)
    assert verdict.outcome is Outcome.QUARANTINED
    assert verdict.reasons == (f"CRITICAL: 1 finding over the limit of 0 ({CVE})",)
    assert [w.severity for w in verdict.warnings] == ["HIGH"]


def test_ignored_findings_do_not_count_toward_warnings() -> None:
    judged = load({"warn_findings": {"HIGH": 0}, "ignore_unfixed": True})
    verdict = evaluation.evaluate(judged, REPO, [vuln(fix_available=False)], now=NOW)
    assert verdict.outcome is Outcome.APPROVED


# --- monitor mode ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["observe", "MONITOR", "true"])
def test_an_unknown_mode_is_reported(value: str) -> None:
    issue = only_problem(f"version: 1\ndefault:\n  mode: {value}\n")
    assert (issue.path, issue.line) == ("default.mode", 3)
    assert issue.message.startswith("expected one of: enforce, monitor; got ")


def test_enforce_is_the_default_mode() -> None:
    verdict = evaluation.evaluate(load({}), REPO, [], now=NOW)
    assert (verdict.mode, verdict.monitor) == ("enforce", False)


def test_monitor_mode_in_the_default_is_carried_by_every_verdict() -> None:
    # Given a monitor-mode policy
    judged = load({"max_findings": {"HIGH": 0}, "mode": "monitor"})
    # When an image breaking it is judged, and a scan fails
    verdict = evaluation.evaluate(judged, REPO, [vuln()], now=NOW)
    failed = evaluation.scan_failed(judged, REPO, "FAILED", None)
    # Then the verdicts are what enforce would decide, marked as monitor
    assert (verdict.outcome, verdict.mode, verdict.monitor) == (
        Outcome.QUARANTINED, "monitor", True)
    assert (failed.outcome, failed.mode) == (Outcome.QUARANTINED, "monitor")


@pytest.mark.parametrize(("repository", "mode"), [("sandbox/x", "monitor"), (REPO, "enforce")])
def test_monitor_mode_can_be_set_per_repository(repository: str, mode: str) -> None:
    judged = load({}, repositories=[{"match": "sandbox/*", "mode": "monitor"}])
    assert evaluation.evaluate(judged, repository, [], now=NOW).mode == mode
    assert evaluation.scan_failed(judged, repository, "FAILED", None).mode == mode


# --- scan failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", [*STATES, "SOMETHING_NEW"])
def test_a_failed_scan_is_quarantined_unless_the_policy_says_otherwise(state: str) -> None:
    assert evaluation.scan_failed(load({}), REPO, state, None).outcome is Outcome.QUARANTINED


@pytest.mark.parametrize(
    ("state", "outcome"),
    [("FAILED", Outcome.APPROVED), ("UNSUPPORTED_IMAGE", Outcome.APPROVED),
     ("SCAN_ELIGIBILITY_EXPIRED", Outcome.QUARANTINED),
     ("FINDINGS_UNAVAILABLE", Outcome.QUARANTINED), ("SOMETHING_NEW", Outcome.QUARANTINED)],
)
def test_on_scan_failure_can_choose_per_scan_state(state: str, outcome: Outcome) -> None:
    judged = load({"on_scan_failure": {"FAILED": "approve", "UNSUPPORTED_IMAGE": "approve",
                                       "FINDINGS_UNAVAILABLE": "quarantine"}})
    verdict = evaluation.scan_failed(judged, REPO, state, None)
    choice = "approve" if outcome is Outcome.APPROVED else "quarantine"
    assert verdict.outcome is outcome
    assert verdict.reasons == (f"scan {state}; on_scan_failure of default is {choice}",)


@pytest.mark.parametrize("state", STATES)
def test_on_scan_failure_default_applies_to_unlisted_states(state: str) -> None:
    judged = load({"on_scan_failure": {"default": "approve", "FAILED": "quarantine"}})
    expected = Outcome.QUARANTINED if state == "FAILED" else Outcome.APPROVED
    assert evaluation.scan_failed(judged, REPO, state, None).outcome is expected


@pytest.mark.parametrize("state", STATES)
def test_on_scan_failure_as_one_choice_applies_to_every_state(state: str) -> None:
    assert evaluation.scan_failed(load({"on_scan_failure": "approve"}), REPO, state, None).approved


@pytest.mark.parametrize(
    "value",
    ["{BOGUS: approve}", "{FAILED: allow}", "{FAILED: APPROVE}", "[approve]", "true"],
    ids=["unknown-state", "unknown-choice", "choice-case", "list", "boolean"],
)
def test_a_bad_on_scan_failure_is_reported_with_what_is_expected(value: str) -> None:
    issue = only_problem(f"version: 1\ndefault:\n  on_scan_failure: {value}\n")
    assert (issue.path, issue.line) == ("default.on_scan_failure", 3)
    assert issue.message.startswith("expected 'quarantine' or 'approve', or a mapping from scan "
                                    "state to one of them, got ")


def test_an_override_on_scan_failure_mapping_replaces_the_default_mapping_whole() -> None:
    # Given a default approving every failed scan, and an override naming one state only
    judged = load({"on_scan_failure": {"default": "approve"}}, repositories=[
        {"match": "prod/*", "on_scan_failure": {"UNSUPPORTED_IMAGE": "approve"}}])
    # Then in prod/* the other states fall back to quarantine, not to the default's mapping
    assert evaluation.scan_failed(judged, "prod/api", "UNSUPPORTED_IMAGE", None).approved
    assert not evaluation.scan_failed(judged, "prod/api", "FAILED", None).approved
    assert evaluation.scan_failed(judged, "dev/api", "FAILED", None).approved


# --- findings that could not all be read (FINDINGS_INCOMPLETE) ----------------------------

WHY = "scan COMPLETE, findings incomplete: the severity counts report CRITICAL 1 but no findings"


@pytest.mark.parametrize("on_scan_failure", [None, "quarantine", {"FINDINGS_INCOMPLETE":
                                                                  "quarantine"}])
def test_incomplete_findings_are_quarantined_with_the_reason(on_scan_failure: Any) -> None:
    # Given a policy that quarantines failed scans (by default, or by name)
    rules = {} if on_scan_failure is None else {"on_scan_failure": on_scan_failure}
    # When a scan whose findings could not all be read is judged, with nothing blocking read
    verdict = evaluation.judge_scan(load(rules), REPO, "FINDINGS_INCOMPLETE", WHY, [vuln(
        severity=Severity.LOW)], now=NOW)
    # Then it is quarantined, saying why, and the findings read are still reported
    assert verdict is not None
    assert verdict.outcome is Outcome.QUARANTINED
    assert verdict.scan_status == "FINDINGS_INCOMPLETE"
    assert verdict.reasons == (f"scan FINDINGS_INCOMPLETE: {WHY}; on_scan_failure of default "
                               "is quarantine",)
    assert verdict.counts == {"LOW": 1}


def test_incomplete_findings_follow_an_approving_on_scan_failure_when_nothing_read_blocks() -> None:
    judged = load({"max_findings": {"CRITICAL": 0},
                   "on_scan_failure": {"default": "quarantine", "FINDINGS_INCOMPLETE": "approve"}})
    verdict = evaluation.judge_scan(judged, REPO, "FINDINGS_INCOMPLETE", WHY,
                                    [vuln(severity=Severity.HIGH)],
                                now=NOW)
    assert verdict is not None and verdict.outcome is Outcome.APPROVED


@pytest.mark.parametrize("choice", ["approve", "quarantine"])
def test_a_blocking_finding_read_blocks_whatever_on_scan_failure_says(choice: str) -> None:
    # Given a policy that approves (or quarantines) failed scans and blocks CRITICAL findings
    judged = load({"max_findings": {"CRITICAL": 0}, "on_scan_failure": choice})
    # When an incomplete scan of which a CRITICAL finding was read is judged
    verdict = evaluation.judge_scan(judged, REPO, "FINDINGS_INCOMPLETE", WHY,
                                [vuln(severity=Severity.CRITICAL)], now=NOW)
    # Then it is quarantined for both reasons
    assert verdict is not None
    assert verdict.outcome is Outcome.QUARANTINED
    assert verdict.reasons == (
        f"scan FINDINGS_INCOMPLETE: {WHY}; on_scan_failure of default is {choice}",
        f"of the findings read: CRITICAL: 1 finding over the limit of 0 ({CVE})")


def test_incomplete_findings_with_warnings_read_are_never_plainly_approved() -> None:
    judged = load({"warn_findings": {"MEDIUM": 0}, "on_scan_failure": "approve"})
    verdict = evaluation.judge_scan(judged, REPO, "FINDINGS_INCOMPLETE", WHY,
                                    [vuln(severity=Severity.MEDIUM)],
                                now=NOW)
    assert verdict is not None and verdict.outcome is Outcome.APPROVED_WITH_WARNINGS


@given(st.lists(st.sampled_from(Severity), max_size=6), st.sampled_from(["approve", "quarantine"]))
def test_incomplete_is_never_more_lenient_than_the_findings_read_or_on_scan_failure(
        severities: list[Severity], choice: str) -> None:
    """Given any findings read and either choice, then the verdict on an incomplete scan is at
    least as strict as the verdict on those findings and as on_scan_failure alone."""
    judged = load({"max_findings": {"CRITICAL": 0, "HIGH": 1}, "warn_findings": {"MEDIUM": 0},
                   "on_scan_failure": choice})
    found = [vuln(f"CVE-{i}", s) for i, s in enumerate(severities)]
    verdict = evaluation.judge_scan(judged, REPO, "FINDINGS_INCOMPLETE", WHY, found, now=NOW)
    assert verdict is not None
    assert RANK[verdict.outcome] >= RANK[evaluation.evaluate(judged, REPO, found, now=NOW).outcome]
    assert RANK[verdict.outcome] >= RANK[evaluation.scan_failed(judged, REPO, "FINDINGS_INCOMPLETE",
                                                            None).outcome]


@pytest.mark.parametrize("status", ["IN_PROGRESS", "PENDING", "", "SOMETHING_NEW"])
def test_a_scan_not_finished_has_no_verdict(status: str) -> None:
    assert evaluation.judge_scan(load({}), REPO, status, None, [vuln()], now=NOW) is None


# --- UNDEFINED and UNTRIAGED -------------------------------------------------------------------


@pytest.mark.parametrize("severity", [Severity.UNDEFINED, Severity.UNTRIAGED])
def test_the_builtin_policy_warns_of_unrated_findings_and_never_silently_approves(
        severity: Severity) -> None:
    from gatekeeper.domain.policy import BUILTIN_POLICY

    verdict = evaluation.evaluate(BUILTIN_POLICY, REPO, [vuln(severity=severity)], now=NOW)
    assert verdict.outcome is Outcome.APPROVED_WITH_WARNINGS
    assert verdict.reasons == (f"{severity.name}: 1 finding over the warning limit of 0 ({CVE})",)


@pytest.mark.parametrize("severity", [Severity.UNDEFINED, Severity.UNTRIAGED])
def test_a_policy_blocks_unrated_findings_by_naming_them(severity: Severity) -> None:
    judged = load({"max_findings": {severity.name: 0}})
    assert evaluation.evaluate(judged, REPO, [vuln(severity=severity)], now=NOW).outcome is (
        Outcome.QUARANTINED)
    assert evaluation.evaluate(load({}), REPO, [vuln(severity=severity)], now=NOW).outcome is (
        Outcome.APPROVED)  # a policy naming neither lets them through, as documented


# --- overrides -------------------------------------------------------------------------------

EVERY_KEY = {
    "max_findings": {"CRITICAL": 0, "HIGH": 0},
    "warn_findings": {"MEDIUM": 10},
    "on_scan_failure": {"FAILED": "approve"},
    "ignore_unfixed": True,
    "min_score": 4,
    "block_if_exploit_available": True,
    "block_if_epss_at_least": 0.3,
    "grace_days": {"HIGH": 7},
    "mode": "monitor",
}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("max_findings", {"HIGH": 5}, {Severity.HIGH: 5}),
        ("max_findings", {}, {}),
        ("warn_findings", {"LOW": 3}, {Severity.LOW: 3}),
        ("grace_days", {"CRITICAL": 2}, {Severity.CRITICAL: 2}),
        ("on_scan_failure", "quarantine", {"default": Outcome.QUARANTINED}),
        ("ignore_unfixed", False, False),
        ("min_score", 9, 9.0),
        ("block_if_exploit_available", False, False),
        ("block_if_epss_at_least", 0.9, 0.9),
        ("mode", "enforce", "enforce"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_override_replaces_only_the_keys_it_sets(key: str, value: Any,
                                                    expected: Any) -> None:
    # Given a default setting every key, and an override setting one
    judged = load(EVERY_KEY, repositories=[{"match": "team-b/*", key: value}])
    # When the rules for a matching repository are looked up
    rules = judged.rules_for("team-b/api")
    # Then that key is the override's and every other key the default's
    assert rules == dataclasses.replace(judged.default, **{key: expected},
                                        matched="repositories[match=team-b/*]")


def test_an_override_with_only_a_match_keeps_every_default_rule() -> None:
    judged = load(EVERY_KEY, repositories=[{"match": "team-b/*"}])
    assert judged.rules_for("team-b/api") == dataclasses.replace(
        judged.default, matched="repositories[match=team-b/*]")


def test_a_parsed_default_sets_every_rule_it_names() -> None:
    assert load(EVERY_KEY).default == Rules(
        max_findings={Severity.CRITICAL: 0, Severity.HIGH: 0},
        warn_findings={Severity.MEDIUM: 10},
        on_scan_failure={"FAILED": Outcome.APPROVED},
        ignore_unfixed=True, min_score=4.0, block_if_exploit_available=True,
        block_if_epss_at_least=0.3, grace_days={Severity.HIGH: 7}, mode="monitor")


# --- explainability --------------------------------------------------------------------------

EVERYTHING = load(
    {"max_findings": {"CRITICAL": 0, "HIGH": 1}, "ignore_unfixed": True, "min_score": 4,
     "grace_days": {"MEDIUM": 10}},
    exceptions=[exception("CVE-2027-1000", expires="2027-01-31T23:00:00Z", package="openssl",
                          ticket="SEC-42")],
)
MIXED = [
    vuln("CVE-2027-1000", Severity.CRITICAL, package="openssl"),  # excepted
    vuln("CVE-2027-1001", Severity.CRITICAL, fix_available=False),  # unfixed
    vuln("CVE-2027-1002", Severity.HIGH, score=3.5),  # below min_score
    vuln("CVE-2027-1003", Severity.MEDIUM, first_seen=NOW - timedelta(days=2)),  # in grace
    vuln("CVE-2027-1004", Severity.HIGH, score=8.1, fix_available=True),  # counts
    vuln("CVE-2027-1005", Severity.LOW),  # counts (no limit)
]


def test_every_finding_is_either_counted_or_ignored() -> None:
    verdict = evaluation.evaluate(EVERYTHING, REPO, MIXED, now=NOW)
    assert counted_ids(verdict) == ["CVE-2027-1004", "CVE-2027-1005"]
    assert whys(verdict) == {"CVE-2027-1000": "exception", "CVE-2027-1001": "unfixed",
                             "CVE-2027-1002": "below_score", "CVE-2027-1003": "in_grace"}


def test_the_approved_reason_says_how_many_findings_counted() -> None:
    verdict = evaluation.evaluate(EVERYTHING, REPO, MIXED, now=NOW)
    assert verdict.outcome is Outcome.APPROVED
    assert verdict.reasons == ("2 counted finding(s) of 6, all within the limits of default",)


def test_counts_and_highest_severity_cover_every_finding_ignored_or_not() -> None:
    verdict = evaluation.evaluate(EVERYTHING, REPO, MIXED, now=NOW)
    assert verdict.counts == {"CRITICAL": 2, "HIGH": 2, "MEDIUM": 1, "LOW": 1}
    assert verdict.highest_severity == "CRITICAL"


@pytest.mark.parametrize(
    ("fid", "detail"),
    [
        ("CVE-2027-1000", f"exception CVE-2027-1000 in openssl by {OWNER}, expires "
                          f"2027-01-31T23:00:00+00:00, SEC-42: {REASON}"),
        ("CVE-2027-1001", "no fix available (ignore_unfixed)"),
        ("CVE-2027-1002", "score 3.5 below min_score 4"),
        ("CVE-2027-1003", "in grace until 2027-01-23 "),
    ],
)
def test_every_ignored_finding_says_why_in_words(fid: str, detail: str) -> None:
    verdict = evaluation.evaluate(EVERYTHING, REPO, MIXED, now=NOW)
    assert {i.finding.id: i.detail for i in verdict.ignored}[fid].startswith(detail)


def test_an_excepted_finding_carries_its_exception() -> None:
    verdict = evaluation.evaluate(EVERYTHING, REPO, MIXED, now=NOW)
    refs = {i.finding.id: i.exception for i in verdict.ignored}
    assert refs == {
        "CVE-2027-1000": ExceptionRef("CVE-2027-1000", OWNER, "2027-01-31T23:00:00+00:00",
                                      REASON, "openssl", "SEC-42"),
        "CVE-2027-1001": None, "CVE-2027-1002": None, "CVE-2027-1003": None}


def test_an_exception_detail_names_the_expiry_date_as_written() -> None:
    judged = excepting(exception(CVE, expires="2027-01-31"))
    (ignored,) = evaluation.evaluate(judged, REPO, [vuln(CVE)], now=NOW).ignored
    assert f"by {OWNER}, expires 2027-01-31:" in ignored.detail


@pytest.mark.parametrize(
    ("rules", "found", "breach", "reason"),
    [
        ({"max_findings": {"HIGH": 1}}, [vuln(CVE), vuln(OTHER_CVE)],
         Breach("max_findings", "HIGH", 2, 1, (CVE, OTHER_CVE)),
         f"HIGH: 2 findings over the limit of 1 ({CVE}, {OTHER_CVE})"),
        ({"block_if_exploit_available": True}, [vuln(exploit_available=True)],
         Breach("block_if_exploit_available", None, 1, 1, (CVE,)),
         f"1 finding with a known exploit ({CVE})"),
        ({"block_if_epss_at_least": 0.7}, [vuln(epss=0.7), vuln(CVE, epss=0.8)],
         Breach("block_if_epss_at_least", None, 2, 0.7, (CVE,)),
         f"2 findings with EPSS >= 0.7 ({CVE})"),
    ],
    ids=["max-findings", "exploit", "epss"],
)
def test_a_breach_names_the_rule_and_limit_that_broke(
    rules: dict[str, Any], found: list[Finding], breach: Breach, reason: str
) -> None:
    verdict = evaluation.evaluate(load(rules), REPO, found, now=NOW)
    assert (verdict.breaches, verdict.reasons) == ((breach,), (reason,))


def test_breaches_list_limits_before_blocks() -> None:
    judged = load({"max_findings": {"HIGH": 0}, "block_if_exploit_available": True,
                   "block_if_epss_at_least": 0.5})
    verdict = evaluation.evaluate(judged, REPO, [vuln(exploit_available=True, epss=0.9)], now=NOW)
    assert [b.rule for b in verdict.breaches] == [
        "max_findings", "block_if_exploit_available", "block_if_epss_at_least"]


# --- properties ------------------------------------------------------------------------------

IDS = ["CVE-2027-0001", "cve-2027-0001", "CVE-2027-0002", "GHSA-abcd-efgh-ijkl", "ALAS-2027-1"]
PACKAGES = [None, "openssl", "zlib"]
LIMITS = st.dictionaries(st.sampled_from(Severity), st.integers(0, 3), max_size=4)
FINDINGS = st.lists(st.builds(
    Finding,
    id=st.sampled_from(IDS),
    severity=st.sampled_from(Severity),
    source=st.sampled_from(Source),
    package=st.sampled_from(PACKAGES),
    fix_available=st.none() | st.booleans(),
    exploit_available=st.none() | st.booleans(),
    score=st.none() | st.floats(0, 10),
    epss=st.none() | st.floats(0, 1),
    first_seen=st.none() | st.datetimes(datetime(2026, 10, 1), datetime(2027, 2, 1),
                                        timezones=st.just(UTC)),
), max_size=10)
RULES = st.builds(
    Rules,
    max_findings=LIMITS,
    warn_findings=LIMITS,
    on_scan_failure=st.just({"default": Outcome.QUARANTINED}),
    ignore_unfixed=st.booleans(),
    min_score=st.none() | st.floats(0, 10),
    block_if_exploit_available=st.booleans(),
    block_if_epss_at_least=st.none() | st.floats(0, 1),
    grace_days=st.dictionaries(st.sampled_from(Severity), st.integers(0, 60), max_size=3),
    mode=st.sampled_from(["enforce", "monitor"]),
)
EXPIRED = st.datetimes(datetime(2026, 1, 1), NOW.replace(tzinfo=None), timezones=st.just(UTC))
EXPIRES = st.datetimes(datetime(2026, 12, 1), datetime(2027, 3, 1), timezones=st.just(UTC))


def exceptions(expires: st.SearchStrategy[datetime] = EXPIRES
               ) -> st.SearchStrategy[PolicyException]:
    # Ids upper-cased as parse_policy stores them; findings' ids keep their case.
    return st.builds(
        PolicyException,
        id=st.sampled_from(IDS).map(str.upper),
        expires=expires,
        reason=st.just(REASON),
        owner=st.just(OWNER),
        package=st.sampled_from(PACKAGES),
        repositories=st.sampled_from([(), ("team-a/*",), ("team-b/*",), ("other", "team-?/web")]),
        ticket=st.none() | st.just("SEC-1"),
    )


def judge(rules: Rules, accepted: list[PolicyException]) -> Policy:
    """A policy with these exceptions, each at its position as parse_policy numbers them."""
    numbered = tuple(dataclasses.replace(e, index=i) for i, e in enumerate(accepted))
    return Policy(default=rules, exceptions=numbered, version="property")


@given(RULES, FINDINGS, st.lists(exceptions(), max_size=3), exceptions(), st.integers(0, 3))
def test_an_exception_never_makes_a_verdict_stricter(
    rules: Rules, found: list[Finding], accepted: list[PolicyException],
    extra: PolicyException, position: int
) -> None:
    # Given a policy, and the same policy with one more exception anywhere in its list
    more = [*accepted]
    more.insert(position, extra)
    # When both judge the same findings
    before = evaluation.evaluate(judge(rules, accepted), REPO, found, now=NOW)
    after = evaluation.evaluate(judge(rules, more), REPO, found, now=NOW)
    # Then the outcome is as lenient or more
    assert RANK[after.outcome] <= RANK[before.outcome]


@given(RULES, FINDINGS, st.lists(exceptions(), max_size=3), exceptions())
def test_an_exception_only_moves_findings_from_counted_to_ignored(
    rules: Rules, found: list[Finding], accepted: list[PolicyException],
    extra: PolicyException
) -> None:
    before = evaluation.evaluate(judge(rules, accepted), REPO, found, now=NOW)
    after = evaluation.evaluate(judge(rules, [*accepted, extra]), REPO, found, now=NOW)
    assert Counter(after.counted) <= Counter(before.counted)


@given(RULES, FINDINGS, st.lists(exceptions(), max_size=3), FINDINGS.filter(bool))
def test_adding_findings_never_makes_a_verdict_more_lenient(
    rules: Rules, found: list[Finding], accepted: list[PolicyException], extra: list[Finding]
) -> None:
    judged = judge(rules, accepted)
    before = evaluation.evaluate(judged, REPO, found, now=NOW)
    after = evaluation.evaluate(judged, REPO, [*found, *extra], now=NOW)
    assert RANK[after.outcome] >= RANK[before.outcome]


@given(RULES, FINDINGS, st.lists(exceptions(), max_size=3), exceptions(EXPIRED),
       st.integers(0, 3))
def test_an_expired_exception_behaves_as_absent(
    rules: Rules, found: list[Finding], accepted: list[PolicyException],
    expired: PolicyException, position: int
) -> None:
    more = [*accepted]
    more.insert(position, expired)
    # Given a policy, and the same policy with an expired exception anywhere in its list
    # When both judge the same findings
    # Then the verdicts are identical, exception reporting included
    before = evaluation.evaluate(judge(rules, accepted), REPO, found, now=NOW)
    after = evaluation.evaluate(judge(rules, more), REPO, found, now=NOW)
    assert after == before


@given(RULES, FINDINGS, st.lists(exceptions(), max_size=3), st.randoms(use_true_random=False))
def test_the_verdict_does_not_depend_on_finding_order(
    rules: Rules, found: list[Finding], accepted: list[PolicyException], rnd: Any
) -> None:
    judged = judge(rules, accepted)
    shuffled = list(found)
    rnd.shuffle(shuffled)
    before = evaluation.evaluate(judged, REPO, found, now=NOW)
    after = evaluation.evaluate(judged, REPO, shuffled, now=NOW)
    assert (after.outcome, after.reasons, after.breaches, after.warnings, after.counts,
            after.highest_severity, after.mode) == (
        before.outcome, before.reasons, before.breaches, before.warnings, before.counts,
        before.highest_severity, before.mode)
    assert (after.exceptions_used, after.exceptions_unused, after.exceptions_expiring) == (
        before.exceptions_used, before.exceptions_unused, before.exceptions_expiring)
    assert Counter(after.counted) == Counter(before.counted)
    assert Counter(after.ignored) == Counter(before.ignored)


@given(RULES, FINDINGS, st.lists(exceptions(), max_size=3))
def test_counted_and_ignored_partition_the_findings(
    rules: Rules, found: list[Finding], accepted: list[PolicyException]
) -> None:
    verdict = evaluation.evaluate(judge(rules, accepted), REPO, found, now=NOW)
    assert Counter(verdict.counted) + Counter(i.finding for i in verdict.ignored) == Counter(found)


@given(RULES, FINDINGS, st.lists(exceptions(), max_size=3))
def test_every_ignored_finding_has_a_known_why_and_a_detail(
    rules: Rules, found: list[Finding], accepted: list[PolicyException]
) -> None:
    verdict = evaluation.evaluate(judge(rules, accepted), REPO, found, now=NOW)
    for ignored in verdict.ignored:
        assert ignored.why in {"exception", "unfixed", "below_score", "in_grace"}
        assert ignored.detail
        assert (ignored.exception is not None) == (ignored.why == "exception")


@given(RULES, FINDINGS, st.lists(exceptions(), max_size=4))
def test_every_applicable_active_exception_is_used_or_unused(
    rules: Rules, found: list[Finding], accepted: list[PolicyException]
) -> None:
    judged = judge(rules, accepted)
    verdict = evaluation.evaluate(judged, REPO, found, now=NOW)
    applicable = [e for e in judged.exceptions if e.covers_repository(REPO) and e.active(NOW)]
    reported = [*verdict.exceptions_used, *verdict.exceptions_unused]
    assert Counter(reported) == Counter(
        ExceptionRef(e.id, e.owner, e.expires.isoformat(), e.reason, e.package, e.ticket)
        for e in applicable)


@given(RULES, FINDINGS)
def test_quarantine_happens_exactly_when_a_counted_limit_or_a_block_breaks(
    rules: Rules, found: list[Finding]
) -> None:
    verdict = evaluation.evaluate(judge(rules, []), REPO, found, now=NOW)
    over = any(sum(f.severity is s for f in verdict.counted) > limit
               for s, limit in rules.max_findings.items())
    exploited = rules.block_if_exploit_available and any(f.exploit_available for f in found)
    likely = rules.block_if_epss_at_least is not None and any(
        f.epss is not None and f.epss >= rules.block_if_epss_at_least for f in found)
    assert (verdict.outcome is Outcome.QUARANTINED) == (over or exploited or likely)
