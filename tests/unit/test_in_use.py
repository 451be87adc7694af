"""Whether an image runs: Inspector's inUseCount / lastInUseAt on enhanced findings, read
into the verdict and said in its notice (subject, attribute, text, document)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import FindingsReader, InUse, from_scan_findings, in_use_of
from gatekeeper.domain.policy import BUILTIN_POLICY
from gatekeeper.domain.scan_input import read_scan
from gatekeeper.render.notification import ImageRef, digest_entry, verdict_notification
from gatekeeper.render.record import record_document
from tests.domain_support import load_findings

NOW = datetime(2026, 12, 1, tzinfo=UTC)
IMAGE = ImageRef("team-a/web", "sha256:" + "9b" * 32, ("v1",))


def in_use_sample(count: Any = 3, last: Any = 1764000000.0) -> dict[str, Any]:
    body = load_findings("enhanced-critical-in-use")
    image = body["imageScanFindings"]["enhancedFindings"][0]["resources"][0]["details"][
        "awsEcrContainerImage"]
    image["inUseCount"], image["lastInUseAt"] = count, last
    return body


def read(body: dict[str, Any]) -> InUse | None:
    reader = FindingsReader()
    reader.add(body["imageScanFindings"])
    return reader.in_use


def test_enhanced_findings_say_how_many_places_run_the_image_and_when_last() -> None:
    # Given the enhanced scan of an image three places run
    body = in_use_sample()

    # When its findings are read
    in_use = read(body)

    # Then the reader knows it runs, and since when it was last seen
    assert in_use == InUse(3, datetime.fromtimestamp(1764000000.0, tz=UTC))
    assert in_use.running
    assert in_use.describe() == ("IN USE: running in 3 places, last seen "
                                 "2025-11-24T16:00:00+00:00")


@pytest.mark.parametrize("name", ["basic-critical", "basic-clean", "enhanced-medium"])
def test_findings_without_image_resources_leave_the_use_unknown(name: str) -> None:
    # Given a basic scan (never knows) or enhanced findings without resource details
    # When read, Then nothing is claimed about the image's use
    assert read(load_findings(name)) is None


def test_an_image_not_running_is_known_not_in_use() -> None:
    in_use = read(in_use_sample(count=0, last="2026-08-01T00:00:00Z"))
    assert in_use == InUse(0, datetime(2026, 8, 1, tzinfo=UTC))
    assert not in_use.running
    assert in_use.describe() == "not in use (last seen 2026-08-01T00:00:00+00:00)"


@pytest.mark.parametrize("count", [-1, 1.5, "many", True, None, float("nan")])
def test_a_count_that_is_not_one_is_not_believed(count: Any) -> None:
    # Given a resource whose inUseCount is not a whole number >= 0 and no lastInUseAt
    # When read, Then no use is claimed from it (and the findings still read)
    body = in_use_sample(count=count, last=None)
    assert read(body) is None
    assert len(from_scan_findings(body["imageScanFindings"])) == 1


def test_findings_of_one_image_combine_to_the_most_places_and_latest_sighting() -> None:
    # Given two findings whose resource details were captured at different times
    body = in_use_sample(count=1, last="2026-10-01T00:00:00Z")
    second = copy.deepcopy(body["imageScanFindings"]["enhancedFindings"][0])
    second["packageVulnerabilityDetails"]["vulnerabilityId"] = "CVE-2021-45046"
    details = second["resources"][0]["details"]["awsEcrContainerImage"]
    details["inUseCount"], details["lastInUseAt"] = 4, "2026-09-01T00:00:00Z"
    body["imageScanFindings"]["enhancedFindings"].append(second)
    body["imageScanFindings"]["findingSeverityCounts"]["CRITICAL"] = 2

    # When read, Then the highest count and the latest sighting win
    assert read(body) == InUse(4, datetime(2026, 10, 1, tzinfo=UTC))


def test_inspector_list_findings_carry_the_use_too() -> None:
    # Given `aws inspector2 list-findings` output whose image resource says it runs
    body = load_findings("inspector-list-findings")
    for finding in body["findings"]:
        for resource in finding.get("resources", []):
            image = resource.get("details", {}).get("awsEcrContainerImage")
            if image is not None:
                image["inUseCount"] = 2

    # When read as evaluate's input, Then the use is known
    scan = read_scan(json.dumps(body))
    assert scan.in_use is not None and scan.in_use.count == 2


def test_in_use_round_trips_as_a_dict() -> None:
    in_use = InUse(2, datetime(2026, 11, 3, 4, 5, tzinfo=UTC))
    assert InUse.from_dict(in_use.as_dict()) == in_use
    assert InUse.from_dict({"count": 0}) == InUse(0)
    assert InUse.from_dict({"last_at": "x"}) is None
    assert InUse.from_dict(None) is None


def test_in_use_of_ignores_resources_of_other_shapes() -> None:
    assert in_use_of({"resources": ["x", {"details": "y"}, {"details": {}}]}) is None
    assert in_use_of({"resources": "nope"}) is None


# --- the notice ------------------------------------------------------------------------


def quarantined(in_use: InUse | None) -> Any:
    body = load_findings("enhanced-critical-in-use")
    verdict = evaluation.evaluate(BUILTIN_POLICY, IMAGE.repository,
                                  from_scan_findings(body["imageScanFindings"]), NOW)
    return replace(verdict, in_use=in_use)


def test_a_quarantined_image_in_use_says_so_in_subject_attribute_text_and_document() -> None:
    # Given a quarantine of an image running in 3 places
    verdict = quarantined(InUse(3, datetime(2026, 11, 30, 12, tzinfo=UTC)))

    # When its notice is rendered
    note = verdict_notification(IMAGE, verdict, previous=None, marker="q", trigger="scan",
                                tags=("v1",))

    # Then the subject flags it, subscribers can filter on it, and people read where it runs
    assert note.subject == "[QUARANTINED, IN USE] team-a/web:v1"
    assert note.attributes["in_use"] == "true"
    assert ("In use:       IN USE: running in 3 places, last seen "
            "2026-11-30T12:00:00+00:00") in note.message.splitlines()
    assert note.document["in_use"] == {"count": 3, "last_at": "2026-11-30T12:00:00+00:00"}
    assert "IN USE" in note.chatbot["content"]["title"]
    entry = digest_entry(IMAGE, verdict, previous=None, trigger="scan", tags=("v1",),
                         verdict_id="x-1", time="t")
    assert entry["in_use"]["count"] == 3


def test_an_image_not_in_use_is_said_but_not_flagged() -> None:
    note = verdict_notification(IMAGE, quarantined(InUse(0)), previous=None, marker="q",
                                trigger="scan", tags=("v1",))
    assert note.subject == "[QUARANTINED] team-a/web:v1"
    assert note.attributes["in_use"] == "false"
    assert "In use:       not in use" in note.message.splitlines()


def test_an_unknown_use_adds_nothing_to_the_notice() -> None:
    # Given a verdict from a basic scan (use unknown)
    note = verdict_notification(IMAGE, quarantined(None), previous=None, marker="q",
                                trigger="scan", tags=("v1",))
    # Then no attribute (a filter on in_use never matches it), no line, a null field
    assert "in_use" not in note.attributes
    assert not any(line.startswith("In use:") for line in note.message.splitlines())
    assert note.document["in_use"] is None


def test_an_approved_image_in_use_is_not_flagged() -> None:
    verdict = replace(quarantined(InUse(5)), outcome=quarantined(None).outcome.APPROVED)
    note = verdict_notification(IMAGE, verdict, previous=None, marker="a", trigger="scan",
                                tags=("v1",))
    assert note.subject == "[APPROVED] team-a/web:v1"
    assert note.attributes["in_use"] == "true"


def test_the_record_document_says_the_use() -> None:
    # Given a record (the attributes record_document reads) of an image running once
    record = SimpleNamespace(
        state="QUARANTINED", settled=True, gone=False, reasons=(), marker=None,
        lease_owner=None, policy_order=None, policy_version=None, matched_rule=None,
        scan_status=None, scan_completed_at=None, highest_severity=None, decided_at=None,
        trigger=None, previous_state=None, review_at=None, created_at=None, counts={},
        revision=1, in_use=InUse(1), exceptions_used=("CVE-1",))

    # When documented, Then its use and the exceptions its verdict applied are there
    document = record_document(record, [])
    assert document["in_use"] == {"count": 1, "last_at": None}
    assert document["exceptions_used"] == ["CVE-1"]
