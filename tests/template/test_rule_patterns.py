"""The template's EventBridge patterns against the project's recorded events (events/*.json).

Matching is moto's implementation of EventBridge's (prefix, exists, anything-but...), applied
to the patterns exactly as the SAM translator writes them into the rules.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gatekeeper.local.stack import matches
from tests.template.conftest import ROOT

EVENTS = ROOT / "events"

PUSH_RULE = "OnPushFunctionEcrImagePush"
BASIC_SCAN_RULE = "OnScanFunctionEcrBasicScan"
INSPECTOR_RULE = "OnScanFunctionInspectorScan"

# Every recorded event, and the one rule it must reach (None: no rule may match it).
DELIVERED_TO: dict[str, str | None] = {
    "ecr-image-push": PUSH_RULE,
    "ecr-image-push-untagged": PUSH_RULE,
    "ecr-image-push-marker-echo": PUSH_RULE,
    "ecr-image-delete": None,
    "ecr-image-push-failed": None,
    "ecr-image-action-storage-class": None,
    "ecr-replication-action": None,
    "ecr-referrer-action": None,
    "ecr-scan-resource-change": None,
    "ecr-image-scan-complete": BASIC_SCAN_RULE,
    "ecr-image-scan-complete-no-counts": BASIC_SCAN_RULE,
    "ecr-image-scan-failed": BASIC_SCAN_RULE,
    "inspector2-scan": INSPECTOR_RULE,
}
RULES = (PUSH_RULE, BASIC_SCAN_RULE, INSPECTOR_RULE)
CASES = [
    pytest.param(rule, event, DELIVERED_TO[event] == rule,
                 id=f"{rule}-{'matches' if DELIVERED_TO[event] == rule else 'rejects'}-{event}")
    for rule in RULES for event in DELIVERED_TO
]


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


def test_every_recorded_event_has_an_expectation() -> None:
    # Given the recorded events; Then each one is in the table above (a new sample must be
    # classified before it counts as covered)
    assert {path.stem for path in EVENTS.glob("*.json")} == set(DELIVERED_TO)


def test_the_expectations_name_every_rule_of_the_template(cfn: dict[str, Any]) -> None:
    rules = {k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::Events::Rule"}
    assert rules == set(RULES)


@pytest.mark.parametrize(("rule", "event", "expected"), CASES)
def test_rule_pattern_against_recorded_event(cfn: dict[str, Any], rule: str, event: str,
                                             expected: bool) -> None:
    # Given the rule's pattern as deployed
    pattern = cfn["Resources"][rule]["Properties"]["EventPattern"]

    # When EventBridge evaluates the recorded event against it
    matched = matches(pattern, load(event))

    # Then it matches exactly the events meant for that rule
    assert matched is expected


def test_inspector_rule_rejects_a_scan_without_an_image_digest(cfn: dict[str, Any]) -> None:
    # Given an Inspector2 Scan event that is not about an image
    event = load("inspector2-scan")
    del event["detail"]["image-digest"]

    # When it reaches the enhanced-scan rule; Then it is not delivered
    pattern = cfn["Resources"][INSPECTOR_RULE]["Properties"]["EventPattern"]
    assert not matches(pattern, event)


@pytest.mark.parametrize("status", ["IN_PROGRESS", "PENDING", "ACTIVE"])
def test_basic_scan_rule_waits_for_a_finished_scan(cfn: dict[str, Any], status: str) -> None:
    # Given a basic scan event whose scan has not finished
    event = load("ecr-image-scan-complete")
    event["detail"]["scan-status"] = status

    # Then the rule does not deliver it
    pattern = cfn["Resources"][BASIC_SCAN_RULE]["Properties"]["EventPattern"]
    assert not matches(pattern, event)
