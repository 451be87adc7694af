"""CISA's KEV catalog: parsing, plausibility, and the policy's block_if_known_exploited."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gatekeeper.config import ConfigError, KevRefreshConfig
from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import Finding, Severity, Source
from gatekeeper.domain.kev import KEV_URL, KevCatalog, KevError, parse_catalog, plausible
from gatekeeper.domain.policy import parse_policy
from gatekeeper.domain.verdict import Outcome
from tests.domain_support import KEV_CVE, catalog_document, kev_entry

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OTHER_CVE = "CVE-2023-99999"


def catalog(*entries: dict[str, Any]) -> KevCatalog:
    return parse_catalog(json.dumps(catalog_document(*entries)))


def policy(text: str, kev: KevCatalog | None) -> Any:
    return dataclasses.replace(parse_policy(text, version="v1"), known_exploited=kev)


def vuln(fid: str, severity: Severity = Severity.LOW) -> Finding:
    return Finding(id=fid, severity=severity, source=Source.ENHANCED, package="openssl")


KEV_ON = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n  block_if_known_exploited: true\n"


# --- parsing --------------------------------------------------------------------------------

def test_a_catalog_reads_as_its_cves_and_the_day_each_was_added() -> None:
    # Given a catalog in CISA's format; When it is parsed
    parsed = catalog(kev_entry(KEV_CVE, "2024-04-12"), kev_entry("CVE-2021-44228", "2021-12-10"))
    # Then each CVE is known with its day, case-insensitively, and the catalog's version kept
    assert parsed.available and len(parsed) == 2
    assert parsed.date_added("cve-2021-44228") == "2021-12-10"
    assert parsed.date_added(OTHER_CVE) is None
    assert parsed.version == "2024.04.12"
    assert parsed.reason(KEV_CVE) == (
        "CVE-2024-3400 is a known exploited vulnerability (CISA KEV, added 2024-04-12)")


@pytest.mark.parametrize(("document", "expected"), [
    pytest.param(b"<html>maintenance</html>", "not JSON", id="html"),
    pytest.param(b"[]", "expected a JSON object", id="list"),
    pytest.param(json.dumps({"count": 0}).encode(), "vulnerabilities: expected a list",
                 id="no-list"),
    pytest.param(json.dumps(catalog_document(count=5)).encode(),
                 "count: says 5 but vulnerabilities lists 1", id="count-mismatch"),
    pytest.param(json.dumps(catalog_document(kev_entry("CVE-24-1"))).encode(),
                 "vulnerabilities[0]: cveID: expected CVE-YYYY-NNNN", id="bad-cve"),
    pytest.param(json.dumps(catalog_document(kev_entry(KEV_CVE, "2024-02-30"))).encode(),
                 "vulnerabilities[0]: dateAdded (CVE-2024-3400): expected YYYY-MM-DD",
                 id="bad-day"),
    pytest.param(json.dumps(catalog_document(catalogVersion="")).encode(),
                 "catalogVersion: expected a non-empty string", id="no-version"),
])
def test_a_document_that_is_not_a_catalog_is_refused_with_where(document: bytes,
                                                                 expected: str) -> None:
    # Given a broken document; When it is parsed; Then KevError says what and where
    with pytest.raises(KevError, match=r"kev\.json") as err:
        parse_catalog(document, source="kev.json")
    assert expected in str(err.value)


def test_plausibility_refuses_a_short_catalog_and_a_large_shrink() -> None:
    # Given a current copy of 100 CVEs
    current = catalog(*(kev_entry(f"CVE-2024-{n:04d}") for n in range(1000, 1100)))
    smaller = catalog(*(kev_entry(f"CVE-2024-{n:04d}") for n in range(1000, 1090)))
    # Then a new one under the floor, or 10% smaller, may not replace it; 100 or more may
    assert "fewer than the 500 expected" in plausible(current, None, min_entries=500)
    assert "more than 5% fewer" in plausible(smaller, current, min_entries=10)
    assert plausible(current, smaller, min_entries=10) is None
    assert plausible(current, KevCatalog.unavailable("missing"), min_entries=10) is None


# --- the policy rule --------------------------------------------------------------------------

def test_the_rule_is_a_setting_of_the_default_and_of_overrides() -> None:
    # Given a policy turning the rule on for the default and off for one override
    parsed = parse_policy(KEV_ON + "repositories:\n  - match: sandbox/*\n"
                          "    block_if_known_exploited: false\n")
    # Then the repositories' rules say so, and the policy says it uses the catalog
    assert parsed.rules_for("team/api").block_if_known_exploited is True
    assert parsed.rules_for("sandbox/x").block_if_known_exploited is False
    assert parsed.uses_known_exploited
    assert not parse_policy("version: 1\ndefault: {}\n").uses_known_exploited


def test_a_listed_cve_quarantines_whatever_its_severity_and_the_reason_names_the_day() -> None:
    # Given the rule on and a LOW finding whose CVE the catalog lists
    judged = policy(KEV_ON, catalog(kev_entry(KEV_CVE, "2024-04-12")))
    # When the image is evaluated
    verdict = evaluation.evaluate(judged, "team/api", [vuln(KEV_CVE), vuln(OTHER_CVE)], NOW)
    # Then it is quarantined, the reason naming the CVE and the day CISA added it
    assert verdict.outcome is Outcome.QUARANTINED
    assert verdict.reasons == (
        "CVE-2024-3400 is a known exploited vulnerability (CISA KEV, added 2024-04-12)",)
    assert verdict.breaches[0].rule == "block_if_known_exploited"
    assert verdict.breaches[0].finding_ids == (KEV_CVE,)


def test_an_exception_exempts_a_listed_cve() -> None:
    # Given the rule on and an active exception for the listed CVE
    text = KEV_ON + (f"exceptions:\n  - id: {KEV_CVE}\n    expires: 2027-01-31\n"
                     "    reason: not reachable\n    owner: sec@example.com\n")
    verdict = evaluation.evaluate(policy(text, catalog()), "team/api", [vuln(KEV_CVE)], NOW)
    # Then the image is approved: exceptions exempt from every rule
    assert verdict.outcome is Outcome.APPROVED


def test_without_a_catalog_the_rule_fails_closed_only_where_it_is_on() -> None:
    # Given the rule on for team/* only and no catalog that could be read
    text = ("version: 1\ndefault: {max_findings: {CRITICAL: 0}}\nrepositories:\n"
            "  - match: team/*\n    block_if_known_exploited: true\n")
    judged = policy(text, KevCatalog.unavailable("no object at s3://bucket/kev/x.json"))
    # When an image without any finding is evaluated in team/ and elsewhere
    on = evaluation.evaluate(judged, "team/api", [], NOW)
    off = evaluation.evaluate(judged, "other/api", [], NOW)
    # Then team/'s is quarantined, saying why; the other repository's is approved
    assert on.outcome is Outcome.QUARANTINED
    assert on.reasons == ("KEV catalog unavailable: no object at s3://bucket/kev/x.json",)
    assert off.outcome is Outcome.APPROVED
    # and a policy nobody attached a catalog to fails closed the same way
    none = evaluation.evaluate(policy(KEV_ON, None), "team/api", [], NOW)
    assert none.reasons == ("KEV catalog unavailable: no catalog was loaded",)


def test_with_the_rule_off_the_catalog_changes_nothing() -> None:
    # Given the catalog listing the CVE but the rule off (default)
    judged = policy("version: 1\ndefault: {max_findings: {CRITICAL: 0}}\n", catalog())
    verdict = evaluation.evaluate(judged, "team/api", [vuln(KEV_CVE)], NOW)
    # Then the LOW finding counts as usual
    assert verdict.outcome is Outcome.APPROVED


# --- the refresh function's settings ----------------------------------------------------------

KEV_ENV = {"GATEKEEPER_POLICY_BUCKET": "policy-bucket",
           "GATEKEEPER_OPERATOR_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:operators"}


def test_the_refresh_reads_cisas_url_by_default_and_refuses_plain_http_elsewhere() -> None:
    # Given the refresh's environment without a URL; Then CISA's feed is the source
    config = KevRefreshConfig.from_env(KEV_ENV)
    assert config.catalog_url == KEV_URL and config.min_entries == 1_000
    # and http:// is accepted only on the loopback (tests, a local mirror)
    local = KevRefreshConfig.from_env(KEV_ENV | {"GATEKEEPER_KEV_URL": "http://127.0.0.1:8000/k"})
    assert local.catalog_url == "http://127.0.0.1:8000/k"
    with pytest.raises(ConfigError) as err:
        KevRefreshConfig.from_env(KEV_ENV | {"GATEKEEPER_KEV_URL": "http://example.com/kev",
                                             "GATEKEEPER_OPERATOR_TOPIC_ARN": ""})
    assert "GATEKEEPER_KEV_URL must be an https:// URL" in str(err.value)
    assert "GATEKEEPER_OPERATOR_TOPIC_ARN is not set" in str(err.value)
