"""gatekeeper.local.stack: the template deployed into moto, and its routes to the handlers."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
import yaml

from gatekeeper.local.stack import (
    NOT_IN_MOTO,
    LocalDeployment,
    Route,
    load_sam_template,
    routes,
)
from tests.template.conftest import REGION, TEMPLATE


def client(name: str) -> Any:
    return boto3.client(name, region_name=REGION)


# --- the stack in moto ----------------------------------------------------------------------

def test_stack_is_created_with_every_supported_resource(deployment: LocalDeployment,
                                                        cfn: dict[str, Any]) -> None:
    # Given the transformed template deployed into moto
    stack = client("cloudformation").describe_stacks(StackName=deployment.stack_name)["Stacks"][0]

    # Then creation completed and every resource moto supports has a physical id (moto gives
    # none to permissions and layer versions)
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    no_id = {"AWS::Lambda::Permission", "AWS::Lambda::LayerVersion"}
    expected = {k for k, r in cfn["Resources"].items()
                if r["Type"] not in NOT_IN_MOTO | no_id and "Condition" not in r}
    assert expected <= set(deployment.physical_ids)


def test_verdict_table_has_pk_and_sk(deployment: LocalDeployment) -> None:
    table = client("dynamodb").describe_table(TableName=deployment.table_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                  {"AttributeName": "sk", "KeyType": "RANGE"}]


def test_topic_and_dead_letter_queue_exist(deployment: LocalDeployment) -> None:
    attributes = client("sns").get_topic_attributes(TopicArn=deployment.topic_arn)["Attributes"]
    assert attributes["TopicArn"] == deployment.topic_arn
    queue = client("sqs").get_queue_attributes(QueueUrl=deployment.dlq_url,
                                               AttributeNames=["All"])["Attributes"]
    assert queue["QueueArn"] == deployment.outputs["DeadLetterQueueArn"]
    assert queue["MessageRetentionPeriod"] == "1209600"


def test_policy_bucket_is_versioned(deployment: LocalDeployment) -> None:
    # Given the policy bucket (moto's CloudFormation ignores VersioningConfiguration; the local
    # deployment applies it, since the gatekeeper names the policy version in each verdict)
    s3 = client("s3")
    assert s3.get_bucket_versioning(Bucket=deployment.policy_bucket)["Status"] == "Enabled"

    # When the policy is published; Then it gets a version id
    put = s3.put_object(Bucket=deployment.policy_bucket, Key="policy.yaml", Body=b"version: 1\n")
    assert put["VersionId"] not in (None, "", "null")


def test_rules_target_their_functions_with_retries_and_the_dead_letter_queue(
        deployment: LocalDeployment) -> None:
    events = client("events")
    dlq_arn = deployment.outputs["DeadLetterQueueArn"]
    wiring = {}
    for rule_id in ("OnPushFunctionEcrImagePush", "OnScanFunctionEcrBasicScan",
                    "OnScanFunctionInspectorScan"):
        (target,) = events.list_targets_by_rule(Rule=deployment.physical_ids[rule_id])["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": dlq_arn}
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 24,
                                         "MaximumEventAgeInSeconds": 3600}
        wiring[rule_id] = target["Arn"]
    assert wiring == {
        "OnPushFunctionEcrImagePush": deployment.outputs["OnPushFunctionArn"],
        "OnScanFunctionEcrBasicScan": deployment.outputs["OnScanFunctionArn"],
        "OnScanFunctionInspectorScan": deployment.outputs["OnScanFunctionArn"],
    }


@pytest.mark.parametrize("function_id", ["OnPushFunction", "OnScanFunction"])
def test_environment_names_the_stack_physical_resources(deployment: LocalDeployment,
                                                        function_id: str) -> None:
    env = deployment.environment(function_id)
    assert env["GATEKEEPER_TABLE"] == deployment.table_name
    assert env["GATEKEEPER_TOPIC_ARN"] == deployment.topic_arn
    assert env["GATEKEEPER_POLICY_BUCKET"] == deployment.policy_bucket
    assert env["GATEKEEPER_POLICY_KEY"] == "policy.yaml"
    assert env["GATEKEEPER_APPROVED_TAG"] == "approved-{digest12}"
    assert env["GATEKEEPER_QUARANTINED_TAG"] == "quarantined-{digest12}"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"


def test_subscribed_queue_receives_notifications_in_the_sns_envelope(
        deployment: LocalDeployment) -> None:
    # Given a queue subscribed to quarantine notifications only
    queue_url = deployment.subscribe_queue({"verdict": ["QUARANTINED"]})
    sns, sqs = client("sns"), client("sqs")

    # When an approval and a quarantine are published
    for verdict in ("APPROVED", "QUARANTINED"):
        sns.publish(TopicArn=deployment.topic_arn, Message=verdict, Subject=verdict,
                    MessageAttributes={"verdict": {"DataType": "String", "StringValue": verdict}})

    # Then only the quarantine arrives, wrapped with its attributes
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in got]
    assert [b["Message"] for b in bodies] == ["QUARANTINED"]
    assert bodies[0]["MessageAttributes"]["verdict"]["Value"] == "QUARANTINED"


def test_a_second_stack_can_live_in_the_same_account(deployment: LocalDeployment) -> None:
    other = LocalDeployment.create(TEMPLATE, region=REGION, stack_name="another")
    assert other.table_name != deployment.table_name


# --- routes: which handler each rule runs ---------------------------------------------------

def test_routes_follow_codeuri_and_handler(cfn: dict[str, Any]) -> None:
    # Given the transformed template; When its rules are resolved to handlers
    found = {route.rule_id: route for route in routes(cfn, TEMPLATE)}

    # Then each rule runs the handler its function's CodeUri + Handler name
    assert {rule: (r.function_id, r.module, r.attribute) for rule, r in found.items()} == {
        "OnPushFunctionEcrImagePush": ("OnPushFunction", "functions.on_push.app", "handler"),
        "OnScanFunctionEcrBasicScan": ("OnScanFunction", "functions.on_scan.app", "handler"),
        "OnScanFunctionInspectorScan": ("OnScanFunction", "functions.on_scan.app", "handler"),
    }
    assert all(isinstance(r, Route) and r.pattern == cfn["Resources"][r.rule_id]["Properties"][
        "EventPattern"] for r in found.values())


def test_the_sam_template_loads_with_cloudformation_tags_in_long_form() -> None:
    template = load_sam_template(TEMPLATE)
    layers = template["Globals"]["Function"]["Layers"]
    assert layers == [{"Ref": "GatekeeperLayer"}]
    assert template["Conditions"]["HasEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "NotificationEmail"}, ""]}]}


def test_loading_the_template_leaves_yaml_safe_load_strict() -> None:
    # Given the template was read with the tag-tolerant loader
    load_sam_template(TEMPLATE)

    # Then plain safe_load still rejects CloudFormation tags (nothing global was changed)
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("value: !Ref Thing")
