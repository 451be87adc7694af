"""OpenVEX statements as exceptions (documents written to the OpenVEX v0.2.0 specification,
tests/fixtures/vex)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gatekeeper.domain import evaluation, vex
from gatekeeper.domain.findings import Finding, Severity, Source
from gatekeeper.domain.policy import Policy, PolicyError, parse_policy
from gatekeeper.domain.verdict import Outcome
from tests.domain_support import ROOT

VEX = ROOT / "tests" / "fixtures" / "vex"
DIGEST = "sha256:7368dd6c4c0f436ab6524b894ff812900ef6bfc6056a4c99f4ac32199fe8e249"
OTHER = "sha256:" + "cd" * 32
NOW = datetime(2026, 12, 5, tzinfo=UTC)
STRICT = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"

OPENSSL = Finding("CVE-2024-5535", Severity.CRITICAL, Source.TRIVY, package="libssl3",
                  installed_version="3.0.11-1~deb12u2")
BRACES = Finding("CVE-2024-4068", Severity.HIGH, Source.TRIVY, package="braces",
                 installed_version="3.0.2")
ZLIB = Finding("CVE-2023-45853", Severity.CRITICAL, Source.TRIVY, package="zlib1g")
LIBSSL_LOW = Finding("CVE-2024-2511", Severity.HIGH, Source.TRIVY, package="libssl3")
APT = Finding("CVE-2011-3374", Severity.HIGH, Source.TRIVY, package="apt",
              installed_version="2.6.1")


def with_vex(*names: str, policy_text: str = STRICT) -> Policy:
    policy = parse_policy(policy_text)
    return dataclasses.replace(policy, vex=vex.load_documents(
        (name, (VEX / name).read_bytes()) for name in names))


def judged(policy: Policy, findings: list[Finding], repository: str = "team-a/web",
           digest: str | None = DIGEST) -> dict[str, str]:
    verdict = evaluation.evaluate(policy, repository, findings, NOW, digest=digest)
    return {i.finding.id: i.detail for i in verdict.ignored if i.why == "vex"}


def test_not_affected_and_fixed_statements_act_as_exceptions_with_their_justification() -> None:
    # Given the VEX document of team-a/web and the image's findings
    policy = with_vex("web.openvex.json")
    verdict = evaluation.evaluate(policy, "team-a/web", [OPENSSL, BRACES, APT], NOW,
                                  digest=DIGEST)
    # Then not_affected (image by digest; package purl) and fixed (repository) exempt them,
    # and the reasons say by which document and why
    assert verdict.outcome is Outcome.APPROVED
    doc = "https://vex.example.com/team-a/web/2026-11-30.1"
    assert (f"CVE-2024-5535: excepted by VEX {doc}: not_affected "
            "(vulnerable_code_not_in_execute_path)") in verdict.reasons
    assert f"CVE-2024-4068: excepted by VEX {doc}: fixed" in verdict.reasons
    assert judged(policy, [APT])["CVE-2011-3374"] == (
        f"excepted by VEX {doc}: not_affected (impact: apt is not run in the container at "
        "runtime)")


def test_affected_and_under_investigation_never_exempt() -> None:
    policy = with_vex("web.openvex.json")
    verdict = evaluation.evaluate(policy, "team-a/web", [ZLIB, LIBSSL_LOW], NOW, digest=DIGEST)
    assert verdict.outcome is Outcome.QUARANTINED
    assert judged(policy, [ZLIB, LIBSSL_LOW]) == {}


@pytest.mark.parametrize(("finding", "repository", "digest"), [
    (OPENSSL, "team-a/web", OTHER),  # another image of the repository
    (OPENSSL, "team-a/web", None),  # an image whose digest is unknown
    (OPENSSL, "team-b/web", DIGEST),  # the digest, but in another repository
    (dataclasses.replace(OPENSSL, package="openssl"), "team-a/web", DIGEST),  # not libssl3
    (dataclasses.replace(OPENSSL, installed_version="3.0.14"), "team-a/web", DIGEST),
    (dataclasses.replace(BRACES, package="micromatch"), "team-a/web", DIGEST),
    (BRACES, "team-a/api", DIGEST),  # a repository statement for another repository
])
def test_a_statement_exempts_only_the_product_it_names(finding: Finding, repository: str,
                                                       digest: str | None) -> None:
    assert judged(with_vex("web.openvex.json"), [finding], repository, digest) == {}


def test_a_later_affected_statement_overrides_an_earlier_not_affected() -> None:
    # Given a document that says not_affected, and a later one that says affected
    policy = with_vex("web.openvex.json", "web-affected-later.openvex.json")
    # Then the latest statement decides: the finding counts again
    assert judged(policy, [OPENSSL]) == {}
    assert evaluation.evaluate(policy, "team-a/web", [OPENSSL], NOW,
                               digest=DIGEST).outcome is Outcome.QUARANTINED


def test_a_policy_exception_comes_first() -> None:
    policy = with_vex("web.openvex.json", policy_text=STRICT + (
        "exceptions:\n  - {id: CVE-2024-5535, reason: r, owner: o, expires: 2027-01-01}\n"))
    verdict = evaluation.evaluate(policy, "team-a/web", [OPENSSL], NOW, digest=DIGEST)
    assert [i.why for i in verdict.ignored] == ["exception"]


def test_a_broken_document_is_a_located_error_naming_each_problem() -> None:
    # Given a document with five statements that break the specification
    with pytest.raises(PolicyError) as err:
        with_vex("web.openvex.json", "broken.openvex.json")
    text = str(err.value)
    # Then each is named with its document and statement, and the policy is not used
    assert text.startswith("invalid VEX (5 problem(s)); the policy naming it is not used")
    for where in ("broken.openvex.json: statements[0].justification: a not_affected",
                  "broken.openvex.json: statements[1].status: expected one of",
                  "broken.openvex.json: statements[2].action_statement",
                  "broken.openvex.json: statements[3].products: missing",
                  "broken.openvex.json: statements[4].products[0]: "):
        assert where in text
    assert "names an image by tag" in text


def document(**changes: Any) -> bytes:
    body = json.loads((VEX / "web.openvex.json").read_text(encoding="utf-8"))
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


@pytest.mark.parametrize(("text", "message"), [
    (b"{", "not JSON"),
    (b"[]", "is a JSON object"),
    (document(**{"@context": "https://example.com/ns"}), "@context: expected the OpenVEX"),
    (document(**{"@id": None}), "@id: missing"),
    (document(author=""), "author: missing"),
    (document(timestamp="yesterday"), "timestamp: missing or not an ISO 8601"),
    (document(version=0), "version: expected a whole number >= 1"),
    (document(statements=None), "statements: missing"),
    (document(statements=[{"vulnerability": {}, "products": [{"@id": "pkg:npm/a"}],
                           "status": "fixed"}]), "statements[0].vulnerability: missing"),
    (document(statements=[{"vulnerability": {"name": "CVE-1"}, "status": "not_affected",
                           "justification": "trust_me", "products": [{"@id": "pkg:npm/a"}]}]),
     "statements[0].justification: expected one of"),
    (document(statements=[{"vulnerability": {"name": "CVE-1"}, "status": "fixed",
                           "products": [{"@id": "pkg:oci/web@v1"}]}]),
     "an OCI purl's version is the image digest"),
    (document(statements=[{"vulnerability": {"name": "CVE-1"}, "status": "fixed",
                           "products": [{"subcomponents": []}]}]),
     "statements[0].products[0]: missing; an '@id' or 'identifiers'"),
])
def test_documents_that_break_the_specification_are_refused(text: bytes, message: str) -> None:
    with pytest.raises(PolicyError, match=r"VEX") as err:
        vex.load_documents([("doc.json", text)])
    assert message in str(err.value)


def test_the_policy_names_its_vex_documents() -> None:
    policy = parse_policy(STRICT + "vex: [vex/web.openvex.json]\nvex_prefix: vex/\n")
    assert (policy.vex_files, policy.vex_prefix, policy.vex) == (
        ("vex/web.openvex.json",), "vex/", None)
    with pytest.raises(PolicyError, match=r"vex\[0\]: expected a string"):
        parse_policy(STRICT + "vex: [{file: a.json}]\n")


def readme_example(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"<!-- example: {name} -->")
    block = text[text.index("\n", text.index("```", start)) + 1:]
    return block[:block.index("```")]


def test_the_readme_vex_examples_are_valid() -> None:
    # Given the README's policy naming VEX documents, and its VEX document
    policy = parse_policy(readme_example("vex-policy"))
    index = vex.load_documents([("vex/web.openvex.json", readme_example("vex-document"))])
    # Then both validate, and the statement exempts the finding it names in that image
    assert policy.vex_files == ("vex/web.openvex.json",)
    policy = dataclasses.replace(policy, vex=index)
    assert judged(policy, [OPENSSL])["CVE-2024-5535"].endswith(
        "not_affected (vulnerable_code_not_in_execute_path)")


@pytest.mark.parametrize(("purl", "matches", "others"), [
    ("pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64", ["libssl3"], ["debian/libssl3"]),
    ("pkg:npm/%40angular/core@17.0.0", ["@angular/core"], ["core"]),
    ("pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
     ["org.apache.logging.log4j:log4j-core", "log4j-core"], ["log4j-api"]),
    ("pkg:golang/golang.org/x/net@v0.17.0", ["golang.org/x/net"], ["net"]),
    ("pkg:pypi/requests@2.31.0", ["requests"], ["requests-oauthlib"]),
])
def test_a_package_purl_names_the_package_as_scanners_name_it(purl: str, matches: list[str],
                                                              others: list[str]) -> None:
    # Given a statement that a package is not affected, in every image
    policy = dataclasses.replace(parse_policy(STRICT), vex=vex.load_documents([(
        "doc.json", document(statements=[{
            "vulnerability": {"name": "CVE-1"}, "products": [{"@id": purl}],
            "status": "not_affected", "justification": "vulnerable_code_not_present"}]))]))
    version = purl.rpartition("@")[2].partition("?")[0]

    def excepted(name: str) -> bool:
        finding = Finding("CVE-1", Severity.HIGH, Source.TRIVY, package=name,
                          installed_version=version)
        return bool(judged(policy, [finding], "team-z/any", None))

    # Then it covers the package by the names scanners give it, and no other package
    assert [name for name in matches if not excepted(name)] == []
    assert [name for name in others if excepted(name)] == []
