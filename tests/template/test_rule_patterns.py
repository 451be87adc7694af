"""The template's EventBridge patterns against the project's recorded events (events/*.json).

Matching is moto's implementation of EventBridge's (prefix, exists, anything-but...), applied
to the patterns exactly as the SAM translator writes them into the rules, with the references
CloudFormation resolves at deploy time (the policy bucket, the policy key) substituted, and
arrays of objects flattened as EventBridge does (see tests/template/eventbridge.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gatekeeper_tools.local.stack import matches
from tests.template.conftest import ROOT
from tests.template.eventbridge import eventbridge_matches, intrinsics, resolve

EVENTS = ROOT / "events"
# The recorded S3 event names its bucket by this placeholder; the tests put in the bucket the
# rule's pattern names once deployed (here: a name like moto's, for PolicyBucket).
BUCKET_PLACEHOLDER = "POLICY_BUCKET"
POLICY_BUCKET = "ecr-scan-gatekeeper-policybucket-1a2b3c4d5e6f"

PUSH_RULE = "OnPushFunctionEcrImagePush"
BASIC_SCAN_RULE = "OnScanFunctionEcrBasicScan"
INSPECTOR_RULE = "OnScanFunctionInspectorScan"
FINDING_RULE = "InspectorFindingRule"
POLICY_RULE = "SweeperFunctionPolicyPublished"
# Rules without a pattern: EventBridge invokes their target on a schedule, never for an event.
SCHEDULES = {"SweeperFunctionHourly": "rate(1 hour)", "KevRefreshFunctionDaily": "rate(1 day)"}

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
    "inspector2-finding": FINDING_RULE,
    "s3-policy-object-created": POLICY_RULE,
    # A new copy of the KEV catalog in the policy bucket (KevRefreshFunction, or by hand).
    "s3-kev-catalog-object-created": POLICY_RULE,
    "kev-refresh-schedule": None,
    # What a schedule sends its target; no pattern may take it for something else.
    "scheduled-event": None,
    # What SNS hands the Slack notifier (not an EventBridge event): no rule may take it.
    "sns-verdict-notification": None,
    # What a function URL hands the verdict API (an HTTP request): no rule may take it.
    "function-url-verdict-request": None,
    # What the SQS poller hands OnReevaluateFunction (not an EventBridge event) either.
    "sqs-reevaluation": None,
    # What ECS hands its deployment lifecycle hook (a direct invocation) either.
    "ecs-lifecycle-hook-pre-scale-up": None,
    "ecs-lifecycle-hook-post-test-traffic-shift": None,
}
RULES = (PUSH_RULE, BASIC_SCAN_RULE, INSPECTOR_RULE, FINDING_RULE, POLICY_RULE)
CASES = [
    pytest.param(rule, event, DELIVERED_TO[event] == rule,
                 id=f"{rule}-{'matches' if DELIVERED_TO[event] == rule else 'rejects'}-{event}")
    for rule in RULES for event in DELIVERED_TO
]


def load(name: str) -> dict[str, Any]:
    text = (EVENTS / f"{name}.json").read_text()
    return json.loads(text.replace(BUCKET_PLACEHOLDER, POLICY_BUCKET))


def deployed_pattern(cfn: dict[str, Any], rule: str) -> dict[str, Any]:
    """The rule's EventPattern as CloudFormation creates it: parameters at their defaults and
    PolicyBucket at a concrete name (any other reference fails the test)."""
    defaults = {name: spec["Default"] for name, spec in cfn["Parameters"].items()}
    return resolve(cfn["Resources"][rule]["Properties"]["EventPattern"],
                   {**defaults, "PolicyBucket": POLICY_BUCKET})


def test_every_recorded_event_has_an_expectation() -> None:
    # Given the recorded events; Then each one is in the table above (a new sample must be
    # classified before it counts as covered)
    assert {path.stem for path in EVENTS.glob("*.json")} == set(DELIVERED_TO)


def test_the_expectations_name_every_rule_of_the_template(cfn: dict[str, Any]) -> None:
    # Given the template's rules on the default bus (the hub bus's, in organization mode,
    # mirror them: tests/template/test_spoke_template.py)
    rules = {k: r["Properties"] for k, r in cfn["Resources"].items()
             if r["Type"] == "AWS::Events::Rule" and "EventBusName" not in r["Properties"]}

    # Then those with a pattern are the table's, and the others are the schedules
    assert {k for k, p in rules.items() if "EventPattern" in p} == set(RULES)
    assert {k: p.get("ScheduleExpression") for k, p in rules.items()
            if "EventPattern" not in p} == SCHEDULES


def test_only_the_policy_rule_names_stack_resources(cfn: dict[str, Any]) -> None:
    # The bucket's name is known only once deployed: its pattern is resolved by CloudFormation
    refs = {rule: intrinsics(cfn["Resources"][rule]["Properties"]["EventPattern"])
            for rule in RULES}
    assert {rule: found for rule, found in refs.items() if found} == {
        POLICY_RULE: [{"Ref": "PolicyBucket"}, {"Ref": "PolicyObjectKey"}]}


@pytest.mark.parametrize(("rule", "event", "expected"), CASES)
def test_rule_pattern_against_recorded_event(cfn: dict[str, Any], rule: str, event: str,
                                             expected: bool) -> None:
    # Given the rule's pattern as deployed
    pattern = deployed_pattern(cfn, rule)

    # When EventBridge evaluates the recorded event against it
    matched = eventbridge_matches(pattern, load(event))

    # Then it matches exactly the events meant for that rule
    assert matched is expected


@pytest.mark.parametrize(("rule", "event", "expected"), CASES)
def test_the_local_deployment_routes_recorded_events_as_eventbridge_does(
        cfn: dict[str, Any], rule: str, event: str, expected: bool) -> None:
    # Given the matcher LocalDeployment.deliver uses (moto's, as is); Then it agrees with
    # EventBridge on every recorded event
    assert matches(deployed_pattern(cfn, rule), load(event)) is expected


def test_the_finding_rule_matches_the_envelope_because_moto_misses_arrays_of_objects(
        cfn: dict[str, Any]) -> None:
    # Given the recorded finding and a pattern on its detail.resources[].type, as EventBridge
    # allows: EventBridge matches it, moto's matcher (so LocalDeployment.deliver) does not
    event = load("inspector2-finding")
    on_detail = {"source": ["aws.inspector2"], "detail-type": ["Inspector2 Finding"],
                 "detail": {"resources": {"type": ["AWS_ECR_CONTAINER_IMAGE"]}}}
    assert eventbridge_matches(on_detail, event)
    assert not matches(on_detail, event)

    # Then the template's rule filters on what both see: the envelope (its resources name the
    # image by ARN), not the detail's array of resources
    pattern = deployed_pattern(cfn, FINDING_RULE)
    assert "detail" not in pattern
    assert "resources" in pattern


def test_inspector_rule_rejects_a_scan_without_an_image_digest(cfn: dict[str, Any]) -> None:
    # Given an Inspector2 Scan event that is not about an image
    event = load("inspector2-scan")
    del event["detail"]["image-digest"]

    # When it reaches the enhanced-scan rule; Then it is not delivered
    assert not eventbridge_matches(deployed_pattern(cfn, INSPECTOR_RULE), event)


@pytest.mark.parametrize("status", ["IN_PROGRESS", "PENDING", "ACTIVE"])
def test_basic_scan_rule_waits_for_a_finished_scan(cfn: dict[str, Any], status: str) -> None:
    # Given a basic scan event whose scan has not finished
    event = load("ecr-image-scan-complete")
    event["detail"]["scan-status"] = status

    # Then the rule does not deliver it
    assert not eventbridge_matches(deployed_pattern(cfn, BASIC_SCAN_RULE), event)


# Inspector2 Finding events about other resources, as Inspector sends them: the envelope names
# the resource (an instance, a function), detail.resources[0] says what it is.
OTHER_FINDINGS = {
    "AWS_EC2_INSTANCE": "arn:aws:ec2:us-east-1:123456789012:instance/i-0c2a343f1948d5205",
    "AWS_LAMBDA_FUNCTION": "arn:aws:lambda:us-east-1:123456789012:function:thumbnailer:$LATEST",
}


@pytest.mark.parametrize(("resource_type", "arn"), sorted(OTHER_FINDINGS.items()))
def test_finding_rule_takes_only_findings_about_container_images(
        cfn: dict[str, Any], resource_type: str, arn: str) -> None:
    # Given an Inspector2 Finding about something other than an ECR image
    event = load("inspector2-finding")
    event["resources"] = [arn]
    resource = event["detail"]["resources"][0]
    resource.update(type=resource_type, id=arn, details={})

    # Then it is not queued for re-evaluation
    assert not eventbridge_matches(deployed_pattern(cfn, FINDING_RULE), event)
    assert not matches(deployed_pattern(cfn, FINDING_RULE), event)


@pytest.mark.parametrize("status", ["ACTIVE", "SUPPRESSED", "CLOSED"])
def test_finding_rule_takes_findings_created_updated_and_closed(cfn: dict[str, Any],
                                                                status: str) -> None:
    # A closed finding can turn a quarantine into an approval: every status is re-evaluated
    event = load("inspector2-finding")
    event["detail"]["status"] = status
    assert eventbridge_matches(deployed_pattern(cfn, FINDING_RULE), event)


@pytest.mark.parametrize(("field", "value"), [
    ("bucket", {"name": "someone-elses-bucket"}),
    ("object", {"key": "policy.yaml.bak"}),
    ("object", {"key": "drafts/policy.yaml"}),
    ("object", {"key": "POLICY.YAML"}),
])
def test_policy_rule_takes_only_the_policy_object_of_the_policy_bucket(
        cfn: dict[str, Any], field: str, value: dict[str, str]) -> None:
    # Given an Object Created event about another bucket or another key
    event = load("s3-policy-object-created")
    event["detail"][field] = value

    # Then the sweeper is not run for it
    assert not eventbridge_matches(deployed_pattern(cfn, POLICY_RULE), event)


def test_policy_rule_ignores_a_deleted_policy(cfn: dict[str, Any]) -> None:
    event = load("s3-policy-object-created")
    event["detail-type"] = "Object Deleted"
    assert not eventbridge_matches(deployed_pattern(cfn, POLICY_RULE), event)


def test_the_policy_pattern_needs_its_references_resolved(cfn: dict[str, Any]) -> None:
    # moto's matcher takes an unresolved {"Ref": ...} for a filter that matches anything, so a
    # pattern compared as the translator wrote it would pass any bucket: the helper refuses it
    raw = cfn["Resources"][POLICY_RULE]["Properties"]["EventPattern"]
    event = load("s3-policy-object-created")
    event["detail"]["bucket"]["name"] = "someone-elses-bucket"
    assert matches(raw, event)  # the trap
    with pytest.raises(ValueError, match="intrinsics"):
        eventbridge_matches(raw, event)


def test_recorded_finding_names_one_image_consistently() -> None:
    # Given the recorded Inspector2 Finding; Then its envelope and its detail name the same
    # image (by ARN with a 64-hex digest, and by repository name and hash)
    event = load("inspector2-finding")
    (arn,) = event["resources"]
    (resource,) = event["detail"]["resources"]
    image = resource["details"]["awsEcrContainerImage"]
    assert resource["id"] == arn
    assert arn == ("arn:aws:ecr:us-east-1:123456789012:repository/"
                   f"{image['repositoryName']}/{image['imageHash']}")
    assert image["repositoryName"] == "team-a/web"
    assert len(image["imageHash"]) == len("sha256:") + 64
