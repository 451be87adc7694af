"""The Slack notifier in template.yaml: only with SlackWebhookSecretArn; SNS-invoked, with
exactly its grants, retries to the dead-letter queue; and deployed (in moto) with the
parameter, its handler posting with the deployed environment."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from functions.slack_notifier.app import handler
from gatekeeper import runtime
from gatekeeper.observability import metrics
from gatekeeper_tools.local.slack import WebhookReceiver
from gatekeeper_tools.local.stack import LocalDeployment, _environment
from tests.slack_support import sns_event
from tests.template.conftest import REGION, TEMPLATE
from tests.template.test_template import (
    DLQ_ARN,
    SAM_MANAGED_POLICIES,
    granted,
    of_type,
    pairs,
    role_statements,
)

FUNCTION = "SlackNotifierFunction"
SECRET = {"Ref": "SlackWebhookSecretArn"}
TOPIC = {"Ref": "VerdictTopic"}
ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gatekeeper/slack-webhook-AbC123"
# What SAM makes of the function, and the log group the template adds for it.
SLACK_RESOURCES = {FUNCTION, f"{FUNCTION}Role", f"{FUNCTION}EventInvokeConfig",
                   f"{FUNCTION}VerdictTopic", f"{FUNCTION}VerdictTopicPermission",
                   f"{FUNCTION}LogGroup"}


# --- conditions, evaluated as CloudFormation does ------------------------------------------------

def holds(cfn: dict[str, Any], condition: str, values: dict[str, str]) -> bool:
    parameters_ = {name: str(spec.get("Default", "")) for name, spec in
                   cfn["Parameters"].items()} | values

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return parameters_[node["Ref"]]
        return node

    def evaluate(node: Any) -> bool:
        ((function, argument),) = node.items()
        if function == "Fn::Not":
            return not evaluate(argument[0])
        if function == "Fn::Equals":
            return bool(value(argument[0]) == value(argument[1]))
        if function == "Fn::And":
            return all(evaluate(a) for a in argument)
        if function == "Fn::Or":
            return any(evaluate(a) for a in argument)
        if function == "Condition":
            return evaluate(cfn["Conditions"][argument])
        raise AssertionError(f"unexpected condition function {function}")

    return evaluate(cfn["Conditions"][condition])


def created(cfn: dict[str, Any], values: dict[str, str]) -> set[str]:
    """The logical ids CloudFormation creates with these parameter values."""
    return {logical_id for logical_id, resource in cfn["Resources"].items()
            if "Condition" not in resource or holds(cfn, resource["Condition"], values)}


def references(node: Any, inside_if: str | None = None) -> Iterator[tuple[str, str | None]]:
    """(logical id, the Fn::If condition it sits under) of every Ref, GetAtt and ${} in node."""
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            yield node["Ref"], inside_if
        elif set(node) == {"Fn::GetAtt"}:
            target = node["Fn::GetAtt"]
            yield (target[0] if isinstance(target, list) else target.split(".")[0]), inside_if
        elif set(node) == {"Fn::If"}:
            condition, when_true, when_false = node["Fn::If"]
            yield from references(when_true, condition)
            yield from references(when_false, inside_if)
        else:
            if "Fn::Sub" in node:
                sub = node["Fn::Sub"]
                text = sub[0] if isinstance(sub, list) else sub
                names = re.findall(r"\$\{([^!}][^}]*)\}", text)
                local = set(sub[1]) if isinstance(sub, list) else set()
                for name in names:
                    if name.split(".")[0] not in local:
                        yield name.split(".")[0], inside_if
            for value in node.values():
                yield from references(value, inside_if)
    elif isinstance(node, list):
        for value in node:
            yield from references(value, inside_if)


# --- only with the parameter ---------------------------------------------------------------------

def test_the_notifier_exists_only_with_its_secret(cfn: dict[str, Any]) -> None:
    # Given the parameter left empty (its default); Then nothing of the notifier is created
    assert cfn["Parameters"]["SlackWebhookSecretArn"]["Default"] == ""
    assert not created(cfn, {}) & SLACK_RESOURCES
    assert FUNCTION not in {k for k in created(cfn, {})
                            if cfn["Resources"][k]["Type"] == "AWS::Lambda::Function"}

    # Given a secret's ARN; Then the function, its role, subscription, permission, invoke
    # config and log group are created, and nothing else changes
    with_slack = created(cfn, {"SlackWebhookSecretArn": ARN})
    assert with_slack - created(cfn, {}) == SLACK_RESOURCES
    assert cfn["Outputs"]["SlackNotifierFunctionArn"] == {
        "Condition": "HasSlackWebhook",
        "Description": cfn["Outputs"]["SlackNotifierFunctionArn"]["Description"],
        "Value": {"Fn::GetAtt": [FUNCTION, "Arn"]}}


def test_every_resource_of_the_notifier_carries_the_condition(cfn: dict[str, Any]) -> None:
    conditional = {k for k, r in cfn["Resources"].items()
                   if r.get("Condition") == "HasSlackWebhook"}
    assert conditional == SLACK_RESOURCES
    assert cfn["Conditions"]["HasSlackWebhook"] == {
        "Fn::Not": [{"Fn::Equals": [SECRET, ""]}]}


def test_nothing_unconditional_names_the_notifier(cfn: dict[str, Any]) -> None:
    # CloudFormation rejects a template where a resource or output that always exists refers
    # to one that may not, outside an Fn::If on the same condition
    holders = {**cfn["Resources"], **{f"Outputs.{k}": v for k, v in cfn["Outputs"].items()}}
    for logical_id, holder in holders.items():
        if holder.get("Condition") == "HasSlackWebhook":
            continue
        for target, condition in references(holder):
            if target in SLACK_RESOURCES:
                assert condition == "HasSlackWebhook", (logical_id, target)


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True),
    (ARN, True),
    ("arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:team/slack_hook-x1Y2z3",
     True),
    ("arn:aws:secretsmanager:us-east-1:123456789012:secret:gatekeeper/slack-webhook", False),
    ("gatekeeper/slack-webhook", False),
    ("arn:aws:ssm:us-east-1:123456789012:parameter/slack-AbC123", False),
    ("https://hooks.slack.com/services/T0/B0/xyz", False),
])
def test_the_parameter_takes_a_full_secret_arn(cfn: dict[str, Any], value: str,
                                               accepted: bool) -> None:
    # IAM matches the secret's full ARN: a name, or an ARN without its random suffix, would
    # deploy a function that may never read its secret; and the URL itself is not an ARN
    pattern = cfn["Parameters"]["SlackWebhookSecretArn"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


# --- the function ---------------------------------------------------------------------------------

def test_the_function_runs_like_the_others_on_the_shared_layer(cfn: dict[str, Any]) -> None:
    properties = cfn["Resources"][FUNCTION]["Properties"]
    (layer_id,) = of_type(cfn, "AWS::Lambda::LayerVersion")
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Layers"] == [{"Ref": layer_id}]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert properties["Handler"] == "app.handler"
    assert properties["Timeout"] == 60
    variables = properties["Environment"]["Variables"]
    assert variables["GATEKEEPER_SLACK_SECRET_ARN"] == SECRET
    assert variables["POWERTOOLS_SERVICE_NAME"] == "ecr-scan-gatekeeper"


def test_the_role_reads_exactly_that_secret_and_dead_letters(cfn: dict[str, Any]) -> None:
    # Given the role SAM generates; Then it reads the one secret, and may send failed
    # invocations to the dead-letter queue (SAM's statement for the OnFailure destination):
    # nothing else, no kms:Decrypt (the AWS managed key of Secrets Manager needs none)
    assert granted(role_statements(cfn, FUNCTION)) == pairs(
        ("secretsmanager:GetSecretValue", SECRET),
        ("sqs:SendMessage", DLQ_ARN),
    )
    role = cfn["Resources"][f"{FUNCTION}Role"]["Properties"]
    assert set(role["ManagedPolicyArns"]) == SAM_MANAGED_POLICIES


def test_failed_invocations_are_retried_twice_then_dead_lettered(cfn: dict[str, Any]) -> None:
    config = cfn["Resources"][f"{FUNCTION}EventInvokeConfig"]["Properties"]
    assert config["FunctionName"] == {"Ref": FUNCTION}
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 3600
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == DLQ_ARN


def test_the_topic_invokes_it_directly_with_a_redrive_to_the_dead_letter_queue(
        cfn: dict[str, Any]) -> None:
    # Given SAM's SNS event: a lambda subscription (no SQS queue in between), every message
    subscription = cfn["Resources"][f"{FUNCTION}VerdictTopic"]
    assert subscription["Type"] == "AWS::SNS::Subscription"
    assert subscription["Properties"] == {
        "Protocol": "lambda",
        "Endpoint": {"Fn::GetAtt": [FUNCTION, "Arn"]},
        "TopicArn": TOPIC,
        "RedrivePolicy": {"deadLetterTargetArn": DLQ_ARN},
    }
    assert not [k for k, r in cfn["Resources"].items() if r["Type"] == "AWS::SQS::Queue"
                and k.startswith(FUNCTION)]
    # and only the verdict topic may invoke the function
    permission = cfn["Resources"][f"{FUNCTION}VerdictTopicPermission"]["Properties"]
    assert (permission["Principal"], permission["SourceArn"], permission["Action"]) == (
        "sns.amazonaws.com", TOPIC, "lambda:InvokeFunction")


def test_only_the_verdict_topic_may_dead_letter_through_sns(cfn: dict[str, Any]) -> None:
    statements = cfn["Resources"]["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"][
        "Statement"]
    (sns,) = [s for s in statements if s["Principal"] == {"Service": "sns.amazonaws.com"}]
    assert sns == {"Sid": "VerdictTopicDeadLetters", "Effect": "Allow",
                   "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
                   "Resource": DLQ_ARN, "Condition": {"ArnEquals": {"aws:SourceArn": TOPIC}}}


def test_its_log_group_has_the_retention(cfn: dict[str, Any]) -> None:
    group = cfn["Resources"][f"{FUNCTION}LogGroup"]
    assert group["DeletionPolicy"] == "Delete"
    assert group["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{FUNCTION}}}"}
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


# --- deployed (moto) -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slack_deployment() -> Iterator[tuple[LocalDeployment, str, WebhookReceiver]]:
    """Given a secret holding a local webhook's URL, and the template deployed into moto with
    SlackWebhookSecretArn set to it."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
                            "AWS_REGION": REGION, "POWERTOOLS_TRACE_DISABLED": "true"}.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        with mock_aws(), WebhookReceiver() as receiver:
            arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
                Name="gatekeeper/slack-webhook", SecretString=receiver.url)["ARN"]
            with warnings.catch_warnings():  # moto's CloudFormation skips SNS subscriptions
                warnings.filterwarnings("ignore", "Tried to parse AWS::SNS::Subscription")
                deployment = LocalDeployment.create(
                    TEMPLATE, region=REGION, stack_name="with-slack",
                    parameters={"SlackWebhookSecretArn": arn})
            yield deployment, arn, receiver


def test_without_the_parameter_the_deployed_stack_has_no_notifier(
        deployment: LocalDeployment) -> None:
    assert FUNCTION not in deployment.physical_ids
    assert "SlackNotifierFunctionArn" not in deployment.outputs


def test_with_the_parameter_the_deployed_function_reads_the_secret_and_posts(
        slack_deployment: tuple[LocalDeployment, str, WebhookReceiver]) -> None:
    deployment, arn, receiver = slack_deployment
    # Given the stack deployed with the secret's ARN: the function and its output (moto's
    # CloudFormation creates no SNS subscription: the one SAM generates is checked above)
    assert deployment.outputs["SlackNotifierFunctionArn"].endswith(
        deployment.physical_ids[FUNCTION])
    environment = deployment.environment(FUNCTION)
    assert environment["GATEKEEPER_SLACK_SECRET_ARN"] == arn
    assert environment["GATEKEEPER_TOPIC_ARN"] == deployment.topic_arn

    # When SNS invokes the handler with the deployed environment
    document = {"schema": "gatekeeper.notification/v1", "kind": "forged_marker", "time": "t",
                "image": {"repository": "team-a/web", "digest": "sha256:" + "a" * 64},
                "alert": {"tag": "approved-aaaaaaaaaaaa", "removed": True}}
    parameters.clear_caches()
    runtime.slack_notifier.cache_clear()
    try:
        with _environment({**environment, "AWS_REGION": REGION}):
            result = handler(sns_event(document), deployment.context(FUNCTION))
    finally:
        runtime.slack_notifier.cache_clear()
        parameters.clear_caches()
        metrics.clear_metrics()

    # Then the message reached the webhook whose URL the secret holds
    assert result == {"posted": 1}
    (message,) = receiver.messages()
    assert message["blocks"][0]["text"]["text"] == (
        ":rotating_light: Forged marker tag on team-a/web")
