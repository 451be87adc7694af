"""Findings: every scanner's payload read into one Finding model, leniently, never as harmless."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import (
    BASIC_SEVERITIES,
    ENHANCED_SEVERITIES,
    Finding,
    FindingsError,
    FindingsReader,
    Severity,
    Source,
    UndefinedSeverity,
    from_basic,
    from_enhanced,
    from_scan_findings,
    highest_severity,
    parse_timestamp,
    severity_counts,
)
from gatekeeper.domain.policy import parse_policy
from tests.domain_support import load_findings


def scan_findings(name: str) -> dict[str, Any]:
    return load_findings(name)["imageScanFindings"]


def basic(severity: Any = "HIGH", **attributes: Any) -> dict[str, Any]:
    return {
        "name": "CVE-2024-0001",
        "severity": severity,
        "attributes": [{"key": key, "value": value} for key, value in attributes.items()],
    }


def rated(**raw: Any) -> dict[str, Any]:
    """An enhanced finding with these fields and a severity (the fields tested are others)."""
    return {"severity": "HIGH", **raw}


def finding(severity: Severity, fid: str = "CVE-1") -> Finding:
    return Finding(id=fid, severity=severity, source=Source.BASIC)


# --- Severity --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CRITICAL", Severity.CRITICAL),
        ("high", Severity.HIGH),
        (" Medium ", Severity.MEDIUM),
        ("informational", Severity.INFORMATIONAL),
        ("UNDEFINED", Severity.UNDEFINED),
        ("UNTRIAGED", Severity.UNTRIAGED),
        ("SEVERE", None),
        ("BOGUS", None),
        ("TOTAL", None),
        ("", None),
        (None, None),
        (5, None),
        (["HIGH"], None),
    ],
    ids=repr,
)
def test_severity_read_is_case_insensitive_and_refuses_what_aws_does_not_define(
        raw: Any, expected: Severity | None) -> None:
    assert Severity.read(raw) is expected


def test_untriaged_is_documented_for_enhanced_findings_only() -> None:
    # ECR's FindingSeverity (basic) has no UNTRIAGED; Inspector's severities (enhanced) do
    assert Severity.read("UNTRIAGED", BASIC_SEVERITIES) is None
    assert Severity.read("UNTRIAGED", ENHANCED_SEVERITIES) is Severity.UNTRIAGED
    assert {"UNTRIAGED"} == ENHANCED_SEVERITIES - BASIC_SEVERITIES
    assert set(Severity.__members__) == ENHANCED_SEVERITIES


def test_unrated_severities_rank_above_informational_only() -> None:
    """UNDEFINED and UNTRIAGED are unrated, not harmless: only INFORMATIONAL ranks below them."""
    assert Severity.INFORMATIONAL < Severity.UNDEFINED < Severity.UNTRIAGED < Severity.LOW
    assert Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL


# --- from_basic ------------------------------------------------------------------------------


def test_basic_finding_from_the_sample_reads_every_field() -> None:
    # Given the first finding of a recorded basic scan
    raw = scan_findings("basic-critical")["findings"][0]
    # When it is read
    parsed = from_basic(raw)
    # Then every field the scanner gave is kept
    assert parsed == Finding(
        id="CVE-2023-4863",
        severity=Severity.CRITICAL,
        source=Source.BASIC,
        package="libwebp",
        installed_version="0.6.1-2.1",
        score=8.8,
        uri="https://security-tracker.debian.org/tracker/CVE-2023-4863",
    )


@given(st.permutations(basic(package_name="openssl", package_version="3.0.2",
                             CVSS3_SCORE="7.5", CVSS2_SCORE="5.0")["attributes"]))
def test_basic_attributes_are_read_in_any_order(attributes: list[dict[str, str]]) -> None:
    parsed = from_basic({"name": "CVE-1", "severity": "HIGH", "attributes": attributes})
    assert (parsed.package, parsed.installed_version, parsed.score) == ("openssl", "3.0.2", 7.5)


def test_basic_finding_with_only_a_severity_is_unknown_but_keeps_it() -> None:
    assert from_basic({"severity": "UNDEFINED"}) == Finding(
        id="UNKNOWN", severity=Severity.UNDEFINED, source=Source.BASIC)


def test_a_finding_without_a_severity_is_an_error_not_undefined() -> None:
    with pytest.raises(UndefinedSeverity, match="a finding: no severity"):
        from_basic({})
    with pytest.raises(UndefinedSeverity, match="CVE-1: no severity"):
        from_enhanced({"packageVulnerabilityDetails": {"vulnerabilityId": "CVE-1"}})


def test_basic_finding_without_attributes_keeps_its_name_and_severity() -> None:
    parsed = from_basic({"name": "CVE-1", "severity": "LOW", "attributes": None})
    assert (parsed.id, parsed.severity, parsed.package, parsed.score) == (
        "CVE-1", Severity.LOW, None, None)


def test_basic_cvss3_score_is_preferred_over_cvss2() -> None:
    assert from_basic(basic(CVSS2_SCORE="4.6", CVSS3_SCORE="9.8")).score == 9.8


@pytest.mark.parametrize("cvss3", [None, "n/a", "NotAvailable", "", "high", "NaN"])
def test_basic_unreadable_cvss3_falls_back_to_cvss2(cvss3: Any) -> None:
    assert from_basic(basic(CVSS3_SCORE=cvss3, CVSS2_SCORE="4.6")).score == 4.6


@pytest.mark.parametrize(("raw", "score"), [("7.5", 7.5), (" 10 ", 10.0), (5, 5.0), ("0", 0.0)])
def test_basic_scores_may_be_strings_or_numbers(raw: Any, score: float) -> None:
    assert from_basic(basic(CVSS3_SCORE=raw)).score == score


@pytest.mark.parametrize("severity", ["UNKNOWN", "", None, 3, "HIGHEST", "BOGUS", "UNTRIAGED"],
                         ids=repr)
def test_basic_severity_ecr_does_not_define_is_an_error(severity: Any) -> None:
    with pytest.raises(UndefinedSeverity, match=r"CVE-2024-0001: severity .* is not one AWS "
                                                r"defines for basic findings"):
        from_basic(basic(severity))


@pytest.mark.parametrize("severity", ["UNKNOWN", "", None, 3, "HIGHEST", "BOGUS"], ids=repr)
def test_enhanced_severity_aws_does_not_define_is_an_error(severity: Any) -> None:
    with pytest.raises(UndefinedSeverity, match="not one AWS defines for enhanced findings"):
        from_enhanced({"severity": severity})


def test_basic_malformed_attribute_entries_are_skipped() -> None:
    raw = {
        "name": "CVE-1",
        "severity": "HIGH",
        "attributes": ["package_name", {"key": 7, "value": "x"}, {"value": "y"},
                       {"key": "package_name", "value": "curl"}],
    }
    assert from_basic(raw).package == "curl"


@pytest.mark.parametrize(
    "body",
    [
        {"findings": [{"name": "CVE-1", "severity": "HIGH", "attributes": 5}]},
        {"enhancedFindings": [{"severity": "HIGH", "packageVulnerabilityDetails": {
            "vulnerabilityId": "CVE-1", "vulnerablePackages": 5}}]},
    ],
    ids=["basic-attributes", "enhanced-vulnerablePackages"],
)
def test_a_wrongly_typed_nested_list_is_read_leniently(body: dict[str, Any]) -> None:
    """Given a finding whose nested list is a number, then the finding is still read with its
    id and severity (or the payload is rejected as a FindingsError), never a TypeError."""
    try:
        found = from_scan_findings(body)
    except FindingsError:
        return
    assert [(f.id, f.severity) for f in found] == [("CVE-1", Severity.HIGH)]


# --- from_enhanced ---------------------------------------------------------------------------


def test_enhanced_finding_from_the_sample_reads_every_field() -> None:
    raw = scan_findings("enhanced-critical-exploit")["enhancedFindings"][0]
    assert from_enhanced(raw) == Finding(
        id="CVE-2021-44228",
        severity=Severity.CRITICAL,
        source=Source.ENHANCED,
        package="log4j-core",
        installed_version="2.14.1",
        fixed_version="2.15.0",
        fix_available=True,
        exploit_available=True,
        score=10.0,
        epss=0.97,
        first_seen=datetime(2024, 11, 19, 7, 6, 40, tzinfo=UTC),
        uri="https://nvd.nist.gov/vuln/detail/CVE-2021-44228",
        title="CVE-2021-44228 - log4j-core",
    )


def test_enhanced_fix_not_available_means_no_fixed_version_and_no_fix() -> None:
    # Given Inspector's "NotAvailable" fixed version and fixAvailable "NO"
    raw = scan_findings("enhanced-medium")["enhancedFindings"][0]
    # When read
    parsed = from_enhanced(raw)
    # Then there is no fixed version, and no fix
    assert parsed.fixed_version is None
    assert parsed.fix_available is False
    assert parsed.exploit_available is False


def test_enhanced_zero_score_is_kept_as_zero_not_missing() -> None:
    raw = scan_findings("enhanced-medium")["enhancedFindings"][1]
    assert from_enhanced(raw).score == 0.0
    assert from_enhanced(raw).severity is Severity.UNTRIAGED


@pytest.mark.parametrize(
    ("flag", "expected"),
    [("YES", True), ("PARTIAL", True), ("true", True), ("NO", False), ("False", False),
     ("MAYBE", None)],
)
def test_enhanced_fix_available_flag(flag: str, expected: bool | None) -> None:
    assert from_enhanced(rated(fixAvailable=flag)).fix_available is expected


@pytest.mark.parametrize(
    ("fixed_in", "expected"), [("2.15.0", True), ("NotAvailable", False), (None, False)]
)
def test_enhanced_fix_available_is_inferred_from_the_fixed_version_when_absent(
    fixed_in: str | None, expected: bool
) -> None:
    raw = rated(packageVulnerabilityDetails={"vulnerablePackages": [
        {"name": "curl", "fixedInVersion": fixed_in}]})
    assert from_enhanced(raw).fix_available is expected


def test_enhanced_fix_available_is_unknown_without_packages_or_flag() -> None:
    assert from_enhanced(rated(packageVulnerabilityDetails={})).fix_available is None


def test_enhanced_inspector_score_is_preferred_over_score() -> None:
    assert from_enhanced(rated(inspectorScore=9.1, score=5.0)).score == 9.1


def test_enhanced_score_is_used_without_an_inspector_score() -> None:
    assert from_enhanced(rated(inspectorScore="n/a", score="5.3")).score == 5.3


@pytest.mark.parametrize(("epss", "expected"),
                         [({"score": 0.5}, 0.5), ({"score": "0.02"}, 0.02), ({}, None),
                          (0.5, None), (None, None), ({"score": True}, None)], ids=repr)
def test_enhanced_epss_is_read_from_its_object(epss: Any, expected: float | None) -> None:
    assert from_enhanced(rated(epss=epss)).epss == expected


def test_enhanced_without_package_details_uses_the_title_as_id() -> None:
    # Given a finding with no packageVulnerabilityDetails (e.g. a network reachability finding)
    raw = {"title": "Port 22 is reachable", "severity": "MEDIUM", "fixAvailable": "NO"}
    # When read
    parsed = from_enhanced(raw)
    # Then it keeps its severity and uses its title as id; package fields are empty
    assert parsed.id == "Port 22 is reachable"
    assert parsed.severity is Severity.MEDIUM
    assert (parsed.package, parsed.installed_version, parsed.fixed_version) == (None, None, None)


@pytest.mark.parametrize("details", [None, "x", [], {"vulnerablePackages": ["curl", 3]}],
                         ids=repr)
def test_enhanced_unreadable_package_details_are_skipped(details: Any) -> None:
    parsed = from_enhanced({"packageVulnerabilityDetails": details, "severity": "HIGH"})
    assert (parsed.id, parsed.severity, parsed.package) == ("UNKNOWN", Severity.HIGH, None)


def test_enhanced_first_package_is_the_one_reported() -> None:
    raw = rated(packageVulnerabilityDetails={"vulnerablePackages": [
        {"name": "a", "version": "1"}, {"name": "b", "version": "2"}]})
    assert (from_enhanced(raw).package, from_enhanced(raw).installed_version) == ("a", "1")


# --- from_scan_findings ----------------------------------------------------------------------


def test_scan_findings_combine_basic_and_enhanced() -> None:
    # Given one imageScanFindings object with both basic and enhanced findings
    body = {
        "findings": scan_findings("basic-high-only")["findings"],
        "enhancedFindings": scan_findings("enhanced-medium")["enhancedFindings"],
    }
    # When read
    found = from_scan_findings(body)
    # Then all are returned, each tagged with its source
    assert [(f.id, f.source) for f in found] == [
        ("CVE-2023-38545", Source.BASIC),
        ("CVE-2024-9681", Source.ENHANCED),
        ("CVE-2024-50264", Source.ENHANCED),
    ]


def test_scan_findings_from_the_basic_sample_keep_every_finding() -> None:
    found = from_scan_findings(scan_findings("basic-critical"))
    assert [f.severity.name for f in found] == ["CRITICAL", "HIGH", "HIGH", "MEDIUM"]
    assert [f.score for f in found] == [8.8, 9.8, None, 4.6]


@pytest.mark.parametrize("body", [{}, {"findings": None, "enhancedFindings": None},
                                  {"findings": [], "enhancedFindings": []}], ids=repr)
def test_scan_findings_with_no_findings_is_empty(body: dict[str, Any]) -> None:
    assert from_scan_findings(body) == []


def test_failed_scan_sample_has_no_findings() -> None:
    assert from_scan_findings(scan_findings("scan-failed")) == []


@pytest.mark.parametrize("key", ["findings", "enhancedFindings"])
@pytest.mark.parametrize("value", [{}, "CVE-1", 3, True], ids=repr)
def test_findings_that_are_not_a_list_are_a_findings_error(key: str, value: Any) -> None:
    with pytest.raises(FindingsError, match=f"page 1: {key} is .*, not a list"):
        from_scan_findings({key: value})


@pytest.mark.parametrize("key", ["findings", "enhancedFindings"])
@pytest.mark.parametrize("item", ["CVE-1", None, [], 1], ids=repr)
def test_a_finding_that_is_not_an_object_is_a_findings_error(key: str, item: Any) -> None:
    with pytest.raises(FindingsError, match=rf"page 1: {key}\[1\] is .*, not an object"):
        from_scan_findings({key: [{"severity": "LOW"}, item]})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=3),
    max_leaves=12,
)
# Nested lists are drawn as lists, null or anything at all (read leniently either way).
LISTISH = st.none() | JSON | st.lists(JSON | st.fixed_dictionaries({"key": JSON, "value": JSON}),
                                      max_size=3)
BASIC_RAW = st.fixed_dictionaries({}, optional={
    "name": JSON, "severity": JSON | st.sampled_from([s.name for s in Severity]),
    "uri": JSON, "attributes": LISTISH,
})
ENHANCED_RAW = st.fixed_dictionaries({}, optional={
    "severity": JSON | st.sampled_from([s.name for s in Severity]), "title": JSON,
    "fixAvailable": JSON, "exploitAvailable": JSON, "inspectorScore": JSON, "score": JSON,
    "epss": JSON, "firstObservedAt": JSON,
    "packageVulnerabilityDetails": JSON | st.fixed_dictionaries({}, optional={
        "vulnerabilityId": JSON, "sourceUrl": JSON, "vulnerablePackages": LISTISH}),
})


@given(st.lists(BASIC_RAW, max_size=4), st.lists(ENHANCED_RAW, max_size=4))
def test_every_finding_object_yields_one_finding_or_a_reason(
        basics: list[dict[str, Any]], enhanced: list[dict[str, Any]]) -> None:
    """Given any finding objects, then each one with a documented severity yields one Finding
    with that severity and an id (an oddly typed field is read as missing, never a crash), and
    any other makes the page unreadable: never dropped, never a default severity."""
    documented = [Severity.read(raw.get("severity"), BASIC_SEVERITIES) for raw in basics] + [
        Severity.read(raw.get("severity"), ENHANCED_SEVERITIES) for raw in enhanced]
    try:
        found = from_scan_findings({"findings": basics, "enhancedFindings": enhanced})
    except FindingsError as err:
        assert None in documented
        assert "severities AWS does not define" in str(err)
        return
    assert None not in documented
    assert [f.severity for f in found] == documented
    assert all(f.id for f in found)


# --- parse_timestamp -------------------------------------------------------------------------

T = datetime(2024, 9, 4, 16, 55, 38, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1725468938, T),
        (1725468938.411, T.replace(microsecond=411000)),
        (datetime(2024, 9, 4, 16, 55, 38), T),
        ("2024-09-04T16:55:38Z", T),
        ("2024-09-04T16:55:38.411Z", T.replace(microsecond=411000)),
        ("2024-09-04T18:55:38+02:00", T),
        ("2024-09-04T11:55:38-05:00", T),
        (" 2024-09-04 16:55:38+00:00 ", T),
        ("2024-09-04", datetime(2024, 9, 4, tzinfo=UTC)),
        ("Sep 4, 2024, 4:55:38 PM", T),
        ("Dec 3, 2021, 6:02:30 PM", datetime(2021, 12, 3, 18, 2, 30, tzinfo=UTC)),
        ("Wed Sep 04 16:55:38.411 UTC 2024", T.replace(microsecond=411000)),
        ("Wed Sep 04 16:55:38 UTC 2024", T),
    ],
    ids=repr,
)
def test_parse_timestamp_reads_every_known_format(raw: Any, expected: datetime) -> None:
    parsed = parse_timestamp(raw)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is not None


def test_parse_timestamp_keeps_an_aware_datetime_as_it_is() -> None:
    aware = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=5)))
    assert parse_timestamp(aware) is aware


def test_parse_timestamp_keeps_the_offset_of_iso_text() -> None:
    parsed = parse_timestamp("2024-09-04T18:55:38+02:00")
    assert parsed is not None and parsed.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", "yesterday", "2024-13-01", "Dec 33, 2021, 6:02:30 PM", True, False,
     10**400, 1e300, -1e300, float("inf"), float("-inf"), float("nan"), [2024], {"t": 1}],
    ids=repr,
)
def test_parse_timestamp_returns_none_for_anything_unreadable(raw: Any) -> None:
    assert parse_timestamp(raw) is None


@given(st.one_of(st.text(), st.floats(), st.integers(), st.none(), st.datetimes(),
                 st.datetimes(timezones=st.timezones()),
                 st.datetimes().map(lambda d: d.isoformat())))
def test_parse_timestamp_never_raises_and_is_always_aware(raw: Any) -> None:
    parsed = parse_timestamp(raw)
    assert parsed is None or (isinstance(parsed, datetime) and parsed.tzinfo is not None)


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1),
                    timezones=st.just(UTC)))
def test_parse_timestamp_round_trips_iso_text(moment: datetime) -> None:
    assert parse_timestamp(moment.isoformat().replace("+00:00", "Z")) == moment


# --- severity_counts / highest_severity ------------------------------------------------------


def test_severity_counts_list_most_severe_first() -> None:
    found = [finding(s) for s in (Severity.LOW, Severity.UNDEFINED, Severity.CRITICAL,
                                  Severity.LOW, Severity.UNTRIAGED, Severity.HIGH,
                                  Severity.INFORMATIONAL)]
    counts = severity_counts(found)
    assert list(counts.items()) == [("CRITICAL", 1), ("HIGH", 1), ("LOW", 2), ("UNTRIAGED", 1),
                                    ("UNDEFINED", 1), ("INFORMATIONAL", 1)]


def test_severity_counts_of_nothing_is_empty() -> None:
    assert severity_counts([]) == {}


@given(st.lists(st.sampled_from(Severity)))
def test_severity_counts_total_every_finding_most_severe_first(severities: list[Severity]) -> None:
    counts = severity_counts(finding(s) for s in severities)
    assert sum(counts.values()) == len(severities)
    assert list(counts) == sorted(counts, key=lambda name: Severity[name], reverse=True)
    assert all(n > 0 for n in counts.values())


def test_highest_severity_of_nothing_is_none() -> None:
    assert highest_severity([]) is None


@given(st.lists(st.sampled_from(Severity), min_size=1))
def test_highest_severity_is_the_most_severe(severities: list[Severity]) -> None:
    assert highest_severity(finding(s) for s in severities) is max(severities)


def test_an_undefined_finding_outranks_an_informational_one() -> None:
    found = [finding(Severity.INFORMATIONAL), finding(Severity.UNDEFINED)]
    assert highest_severity(found) is Severity.UNDEFINED


class _OwnZone(tzinfo):
    """A time zone object of its own per timestamp, as botocore gives (dateutil's tzutc)."""

    def __init__(self, hours: int) -> None:
        self._offset = timedelta(hours=hours)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return self._offset

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


_RAW_ENHANCED = st.fixed_dictionaries({
    "severity": st.sampled_from(sorted(ENHANCED_SEVERITIES)),
    "id": st.integers(0, 40),
    "package": st.sampled_from(["openssl", "zlib", "org.example:component-1", "libc6"]),
    "fixed": st.sampled_from(["1.2.4", "NotAvailable", None]),
    "exploit": st.sampled_from(["YES", "NO", None]),
    "days": st.integers(0, 60),
    "hours": st.integers(-12, 12),
})


def _enhanced_raw(spec: dict[str, Any]) -> dict[str, Any]:
    seen = datetime(2027, 1, 15, tzinfo=UTC) - timedelta(days=spec["days"])
    raw: dict[str, Any] = {
        "severity": spec["severity"],
        "title": f"CVE-2027-{spec['id']:04d} - {spec['package']}",
        "firstObservedAt": seen.astimezone(_OwnZone(spec["hours"])),
        "packageVulnerabilityDetails": {
            "vulnerabilityId": f"cve-2027-{spec['id']:04d}",
            "sourceUrl": f"https://nvd.nist.gov/vuln/detail/CVE-2027-{spec['id']:04d}",
            "vulnerablePackages": [{"name": spec["package"], "version": "1.2.3",
                                    "fixedInVersion": spec["fixed"]}]},
    }
    if spec["exploit"] is not None:
        raw["exploitAvailable"] = spec["exploit"]
    return raw


@given(specs=st.lists(_RAW_ENHANCED, max_size=40), page_size=st.integers(1, 7))
def test_compact_findings_read_page_by_page_judge_as_the_raw_values_do(
        specs: list[dict[str, Any]], page_size: int) -> None:
    # Given enhanced findings as botocore parses them (each timestamp with a zone object of
    # its own), the policy's grace periods, exploit rule and limits all in play
    policy = parse_policy(
        "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 2, MEDIUM: 5}\n"
        "  warn_findings: {LOW: 3}\n  grace_days: {HIGH: 30, MEDIUM: 10}\n"
        "  block_if_exploit_available: true\n", version="test")
    now = datetime(2027, 1, 15, tzinfo=UTC)
    raws = [_enhanced_raw(spec) for spec in specs]

    # When they are read page by page into compact findings, and one by one as they stand
    reader = FindingsReader()
    for start in range(0, max(len(raws), 1), page_size):
        reader.add({"enhancedFindings": raws[start:start + page_size]})
    compact = reader.findings
    as_raw = [dataclasses.replace(from_enhanced(raw), first_seen=raw["firstObservedAt"])
              for raw in raws]

    # Then they are equal findings, shown the same, and judged alike: outcome, reasons (in
    # their order), counts, breaches and what was ignored
    assert reader.problems() == []
    assert compact == as_raw
    assert [f.first_seen.isoformat() for f in compact if f.first_seen] == \
        [f.first_seen.isoformat() for f in as_raw if f.first_seen]
    assert all(f.key == f.id.upper() for f in compact)
    judged, expected = (evaluation.evaluate(policy, "team-a/web", found, now)
                        for found in (compact, as_raw))
    assert judged.outcome == expected.outcome
    assert judged.reasons == expected.reasons
    assert judged.counts == expected.counts
    assert judged.breaches == expected.breaches
    assert [(i.finding.id, i.why) for i in judged.ignored] == \
        [(i.finding.id, i.why) for i in expected.ignored]


def test_findings_share_the_strings_and_time_zone_many_of_them_repeat() -> None:
    # Given two findings of one package, each timestamp with a zone object of its own
    first, second = (_enhanced_raw({"severity": "HIGH", "id": i, "package": "openssl",
                                    "fixed": "3.0.8", "exploit": None, "days": 3,
                                    "hours": 0}) for i in (1, 2))
    for raw in (first, second):  # strings as a JSON parser makes them: one object each
        pkg = raw["packageVulnerabilityDetails"]["vulnerablePackages"][0]
        pkg["name"] = "".join(["open", "ssl"])

    # When they are read
    a, b = from_enhanced(first), from_enhanced(second)

    # Then the package and versions are one object each, and the zone is the shared UTC
    assert a.package is b.package and a.installed_version is b.installed_version
    assert a.fixed_version is b.fixed_version
    assert a.first_seen is not None and a.first_seen.tzinfo is UTC
    assert a.first_seen == first["firstObservedAt"]
