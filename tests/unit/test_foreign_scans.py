"""Trivy and Grype JSON reports read into the gatekeeper's findings (fixtures written from
each scanner's documented output, tests/fixtures/scanners)."""

from __future__ import annotations

import json

import pytest

from gatekeeper.domain.findings import FindingsError, Severity, Source
from gatekeeper.domain.foreign_scans import GRYPE_SEVERITIES, TRIVY_SEVERITIES
from gatekeeper.domain.scan_input import read_scan
from tests.domain_support import ROOT

SCANNERS = ROOT / "tests" / "fixtures" / "scanners"
DIGEST = "sha256:7368dd6c4c0f436ab6524b894ff812900ef6bfc6056a4c99f4ac32199fe8e249"


def report(name: str) -> str:
    return (SCANNERS / f"{name}.json").read_text(encoding="utf-8")


@pytest.mark.parametrize("scanner", ["trivy", "grype"])
def test_a_report_names_its_image_and_every_finding(scanner: str) -> None:
    # Given a scanner's report of team-a/web:v1
    # When it is read, by its shape and by its name
    for scan in (read_scan(report(f"{scanner}-image")),
                 read_scan(report(f"{scanner}-image"), input_format=scanner)):
        # Then the image, a finished scan and each finding with its package are read
        assert (scan.repository, scan.digest, scan.tags) == ("team-a/web", DIGEST, ["v1"])
        assert scan.status == "COMPLETE" and scan.problems == []
        found = {f.id: f for f in scan.findings}
        assert {f.source for f in scan.findings} == {Source(scanner)}
        openssl = found["CVE-2024-5535"]
        assert (openssl.severity, openssl.package, openssl.installed_version,
                openssl.fixed_version, openssl.fix_available, openssl.score) == (
            Severity.CRITICAL, "libssl3", "3.0.11-1~deb12u2", "3.0.14-1~deb12u1", True, 9.1)
        assert found["CVE-2023-45853"].fix_available is False
        assert found["CVE-2011-3374"].severity is Severity.UNDEFINED
        assert found["CVE-2024-4068"].severity is Severity.HIGH


def test_trivy_scores_come_from_the_severity_source_first() -> None:
    # Given a Trivy finding rated by NVD 9.1 and by Red Hat 3.7, with SeveritySource nvd
    found = {f.id: f for f in read_scan(report("trivy-image")).findings}
    # Then its score is NVD's; one rated only by Red Hat keeps Red Hat's
    assert found["CVE-2024-5535"].score == 9.1
    assert found["CVE-2024-2511"].score == 3.7
    assert len(found) == 5  # the result without Vulnerabilities adds none


def test_grype_reports_a_ghsa_match_by_its_cve_and_negligible_as_informational() -> None:
    found = {f.id: f for f in read_scan(report("grype-image")).findings}
    assert found["CVE-2024-4068"].title == "GHSA-grv7-fg5c-xmjg"
    assert found["CVE-2023-45853"].severity is Severity.INFORMATIONAL


def test_the_severity_mappings_cover_each_scanners_documented_levels() -> None:
    assert set(TRIVY_SEVERITIES) == {"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"}
    assert set(GRYPE_SEVERITIES) == {"Critical", "High", "Medium", "Low", "Negligible",
                                     "Unknown"}


@pytest.mark.parametrize("scanner", ["trivy", "grype"])
def test_an_empty_report_is_a_clean_finished_scan(scanner: str) -> None:
    scan = read_scan(report(f"{scanner}-clean"))
    assert (scan.findings, scan.problems, scan.status) == ([], [], "COMPLETE")
    assert scan.repository == "team-a/web" and scan.tags == ["v2"]


@pytest.mark.parametrize(("scanner", "located"), [
    ("trivy", ["Results[0].Vulnerabilities[0] CVE-2024-5535: severity 'SEVERE'",
               "Results[0].Vulnerabilities[1] CVE-2024-2511: no severity",
               "Results[0].Vulnerabilities[2] is str, not an object"]),
    ("grype", ["matches[0] CVE-2024-5535: severity 'Severe'",
               "matches[1] CVE-2024-2511: no severity"]),
])
def test_a_malformed_report_names_each_problem_where_it_is(scanner: str,
                                                           located: list[str]) -> None:
    # Given a report with severities the scanner does not define and a non-object entry
    scan = read_scan(report(f"{scanner}-malformed"))
    # Then every problem is named with its place (the caller judges nothing then)
    text = "; ".join(scan.problems)
    for where in located:
        assert where in text


@pytest.mark.parametrize(("body", "message"), [
    ({"SchemaVersion": 1, "Results": []}, "SchemaVersion 1 is not 2"),
    ({"SchemaVersion": 2, "ArtifactName": "a:b", "Results": {}}, "Results is dict"),
    ({"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"Severity": "LOW"}]}]},
     "Results[0].Vulnerabilities[0]: no vulnerability id"),
    ({"matches": [{"artifact": {}}], "descriptor": {}}, "matches[0]: no vulnerability object"),
])
def test_unreadable_reports_are_located_errors(body: object, message: str) -> None:
    with pytest.raises(FindingsError) as err:
        read_scan(json.dumps(body))
    assert message in str(err.value)


def test_a_report_without_its_findings_list_is_incomplete() -> None:
    # Given reports that say nothing about what was scanned or found
    for body in ({"SchemaVersion": 2, "ArtifactName": "team-a/web:v1"},
                 {"matches": None, "descriptor": {"name": "grype"}}):
        # Then they are incomplete, never clean
        assert read_scan(json.dumps(body)).problems


def test_a_format_named_for_another_shape_is_refused() -> None:
    with pytest.raises(FindingsError, match="neither describe-image-scan-findings"):
        read_scan(report("trivy-image"), input_format="aws")
    with pytest.raises(FindingsError, match="expected one grype JSON report"):
        read_scan(report("grype-clean") + report("grype-clean"), input_format="grype")


@pytest.mark.parametrize(("user_input", "repository", "tags"), [
    ("registry:123456789012.dkr.ecr.us-east-1.amazonaws.com/team-a/web:v1", "team-a/web",
     ["v1"]),
    ("docker:team-a/web:v2", "team-a/web", ["v2"]),
    ("docker-archive:web.tar", None, []),
    ("dir:.", None, []),
])
def test_grype_source_schemes_name_the_image_or_nothing(user_input: str,
                                                        repository: str | None,
                                                        tags: list[str]) -> None:
    body = json.loads(report("grype-clean"))
    body["source"]["target"] = {"userInput": user_input}
    scan = read_scan(json.dumps(body))
    assert (scan.repository, scan.tags) == (repository, tags)
