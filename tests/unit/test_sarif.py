"""The verdict as SARIF 2.1.0, checked against the OASIS schema (tests/fixtures)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from gatekeeper.domain import evaluation
from gatekeeper.domain.policy import parse_policy
from gatekeeper.domain.scan_input import read_scan
from gatekeeper.render import sarif
from tests.domain_support import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = """
version: 1
default:
  max_findings: {CRITICAL: 0}
  warn_findings: {HIGH: 0}
  ignore_unfixed: true
exceptions:
  - id: CVE-2024-2511
    reason: not reachable from the service's TLS setup
    owner: security@example.com
    expires: 2027-01-31
"""


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft4Validator:
    schema = json.loads((FIXTURES / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def sarif_of(policy_text: str = POLICY, name: str = "trivy-image") -> dict[str, Any]:
    scan = read_scan((FIXTURES / "scanners" / f"{name}.json").read_text(encoding="utf-8"))
    verdict = evaluation.evaluate(parse_policy(policy_text), "team-a/web", scan.findings, NOW)
    return sarif.log(verdict, repository="team-a/web", digest=scan.digest, tags=scan.tags,
                     policy_source="policy.yaml", exit_code=1)


def test_the_log_validates_against_the_sarif_schema(validator: Any) -> None:
    # Given a verdict with blocking, warning, counted, excepted and ignored findings
    log = sarif_of()
    # Then its SARIF log is valid SARIF 2.1.0
    errors = sorted(validator.iter_errors(log), key=str)
    assert errors == [], "\n".join(e.message for e in errors[:5])
    assert log["version"] == "2.1.0" and len(log["runs"]) == 1


def test_a_clean_verdict_validates_too(validator: Any) -> None:
    log = sarif_of(name="trivy-clean")
    assert list(validator.iter_errors(log)) == []
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["properties"]["verdict"] == "APPROVED"


def test_each_finding_has_the_level_the_verdict_gives_it() -> None:
    run = sarif_of()["runs"][0]
    levels = {r["ruleId"]: (r["level"], "suppressions" in r) for r in run["results"]}
    # CRITICAL with a fix blocks; HIGH is over the warning limit; the excepted LOW and the
    # unfixed CRITICAL are suppressed; the UNDEFINED finding with no fix is ignored too
    assert levels["CVE-2024-5535"] == ("error", False)
    assert levels["CVE-2024-4068"] == ("warning", False)
    assert levels["CVE-2024-2511"] == ("note", True)
    assert levels["CVE-2023-45853"] == ("note", True)
    excepted = next(r for r in run["results"] if r["ruleId"] == "CVE-2024-2511")
    assert excepted["suppressions"][0]["kind"] == "external"
    assert "not reachable from the service's TLS setup" in (
        excepted["suppressions"][0]["justification"])


def test_rules_carry_the_severity_and_the_verdict_is_in_the_run() -> None:
    run = sarif_of()["runs"][0]
    assert run["tool"]["driver"]["name"] == "ecr-scan-gatekeeper"
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert rules["CVE-2024-5535"]["properties"]["severity"] == "CRITICAL"
    assert rules["CVE-2024-5535"]["properties"]["security-severity"] == "9.1"
    assert rules["CVE-2011-3374"]["properties"]["security-severity"] == "0.0"
    for result in run["results"]:
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        location = result["locations"][0]
        assert location["physicalLocation"]["artifactLocation"]["uri"] == "team-a/web"
        assert location["logicalLocations"][0]["fullyQualifiedName"].startswith(
            "team-a/web:v1@sha256:7368dd6c")
    properties = run["properties"]
    assert (properties["verdict"], properties["approved"], properties["exitCode"]) == (
        "QUARANTINED", False, 1)
    assert properties["reasons"][0].startswith("CRITICAL: 1 finding over the limit")
