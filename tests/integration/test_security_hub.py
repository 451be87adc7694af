"""Quarantines as Security Hub findings, on moto's Security Hub (BatchImportFindings and
GetFindings). What moto cannot do, refuse a finding (FailedCount), is played by a botocore
``before-call`` hook answering BatchImportFindings as Security Hub would."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gatekeeper.domain.events import Trigger, parse_event, reevaluation
from gatekeeper.runtime import build
from gatekeeper.service import Gatekeeper
from tests.support import ACCOUNT, REGION, World, scan_event

STRICT = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"
LENIENT = "version: 1\ndefault:\n  max_findings: {CRITICAL: 5, HIGH: 5}\n"


def hub_gatekeeper(world: World) -> Gatekeeper:
    """The judging functions' Gatekeeper with GATEKEEPER_SECURITY_HUB=enabled."""
    return build(replace(world.config, security_hub=True), world.session)


def judge(world: World, gatekeeper: Gatekeeper, repo: str, digest: str) -> str:
    result = gatekeeper.handle(parse_event(scan_event(repo, digest)))
    return str(result.verdict)


def findings(world: World) -> list[dict[str, Any]]:
    return world.session.client("securityhub", region_name=REGION).get_findings()["Findings"]


@pytest.fixture
def image(world: World) -> tuple[str, str]:
    """Given an image whose basic scan found a CRITICAL (CVE-2023-4863) and two HIGHs."""
    repo = world.repository("team/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    return repo, digest


def test_a_quarantine_becomes_a_finding_and_an_approval_resolves_it(
        world: World, image: tuple[str, str]) -> None:
    repo, digest = image
    # Given the strict policy; When the image is judged with Security Hub findings on
    world.publish_policy(STRICT)
    gatekeeper = hub_gatekeeper(world)
    assert judge(world, gatekeeper, repo, digest) == "QUARANTINED"

    # Then Security Hub holds one active finding for the image, in the ASFF the brief asks
    [finding] = findings(world)
    assert finding["Id"] == f"ecr-scan-gatekeeper/{ACCOUNT}/{REGION}/{repo}@{digest}"
    assert finding["ProductArn"] == (
        f"arn:aws:securityhub:{REGION}:{ACCOUNT}:product/{ACCOUNT}/default")
    assert finding["SchemaVersion"] == "2018-10-08"
    assert finding["AwsAccountId"] == ACCOUNT
    assert finding["Types"] == ["Software and Configuration Checks/Vulnerabilities/CVE"]
    assert finding["Severity"]["Label"] == "CRITICAL"
    assert (finding["RecordState"], finding["Workflow"]["Status"],
            finding["Compliance"]["Status"]) == ("ACTIVE", "NEW", "FAILED")
    assert "CVE-2023-4863" in finding["Description"]
    [resource] = finding["Resources"]
    assert resource["Type"] == "AwsEcrContainerImage"
    assert resource["Id"] == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{repo}/{digest}"
    details = resource["Details"]["AwsEcrContainerImage"]
    assert (details["RegistryId"], details["RepositoryName"], details["ImageDigest"]) == (
        ACCOUNT, repo, digest)
    assert details["ImageTags"] == ["v1"]
    created = finding["CreatedAt"]

    # When a laxer policy approves the image, on the sweeper's re-evaluation request (which
    # names no account nor region: the stack's own are used)
    world.publish_policy(LENIENT)
    result = gatekeeper.handle(reevaluation(repo, digest, Trigger.POLICY))
    assert result.verdict == "APPROVED"

    # Then the same finding (same Id, same CreatedAt) is archived, resolved and passed
    [resolved] = findings(world)
    assert resolved["Id"] == finding["Id"] and resolved["CreatedAt"] == created
    assert (resolved["RecordState"], resolved["Workflow"]["Status"],
            resolved["Compliance"]["Status"]) == ("ARCHIVED", "RESOLVED", "PASSED")
    assert resolved["Severity"]["Label"] == "INFORMATIONAL"


def test_an_image_never_quarantined_has_no_finding(world: World,
                                                   image: tuple[str, str]) -> None:
    # Given a policy that approves the image; When it is judged
    world.publish_policy(LENIENT)
    assert judge(world, hub_gatekeeper(world), *image) == "APPROVED"
    # Then there is nothing to resolve in Security Hub
    assert findings(world) == []


def test_with_security_hub_off_nothing_is_imported(world: World,
                                                   image: tuple[str, str]) -> None:
    world.publish_policy(STRICT)
    assert judge(world, world.gatekeeper(), *image) == "QUARANTINED"
    assert findings(world) == []


def test_a_refused_finding_fails_the_event_which_a_retry_completes(
        world: World, image: tuple[str, str]) -> None:
    repo, digest = image
    # Given Security Hub refusing the import (FailedCount 1, as for a product not enabled)
    def refuse(**_: Any) -> tuple[Any, dict[str, Any]]:
        http = type("Http", (), {"status_code": 200, "headers": {}})()
        return http, {"FailedCount": 1, "SuccessCount": 0, "FailedFindings": [
            {"Id": "x", "ErrorCode": "AccessDeniedException",
             "ErrorMessage": "Security Hub is not enabled"}]}

    world.session.events.register("before-call.securityhub.BatchImportFindings", refuse)
    world.publish_policy(STRICT)

    # When the image is judged; Then the event fails (Lambda would retry it) and no finding
    # exists, but the verdict is committed as it was decided and the marker is on the image
    with pytest.raises(Exception, match="not imported: AccessDeniedException"):
        judge(world, hub_gatekeeper(world), repo, digest)
    record = world.gatekeeper().store.get(repo, digest)
    assert record is not None and record.state == "QUARANTINED" and not record.settled
    assert findings(world) == []

    # When Security Hub accepts again and the event is retried
    world.session.events.unregister("before-call.securityhub.BatchImportFindings", refuse)
    assert judge(world, hub_gatekeeper(world), repo, digest) == "QUARANTINED"

    # Then the finding is there and the verdict settled
    assert [f["RecordState"] for f in findings(world)] == ["ACTIVE"]
    record = world.gatekeeper().store.get(repo, digest)
    assert record is not None and record.settled
