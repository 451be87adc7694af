"""template.yaml after the SAM transform: what moto would not show us (runtime, architecture,
layers, tracing, invoke configs, encryption, IAM scope, outputs), asserted on the JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from samtranslator.model.exceptions import InvalidDocumentException

from gatekeeper.adapters.store import DUE_INDEX, VerdictStore
from gatekeeper.domain.markers import RESERVED_WORDS, MarkerScheme
from gatekeeper_tools.local.stack import load_sam_template, transform_template
from tests.template.conftest import REGION, TEMPLATE

DLQ_ARN = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
QUEUE_ARN = {"Fn::GetAtt": ["ReevaluationQueue", "Arn"]}
SWEEP_QUEUE_ARN = {"Fn::GetAtt": ["SweepQueue", "Arn"]}
TABLE_ARN = {"Fn::GetAtt": ["VerdictTable", "Arn"]}
DIGEST_KEY = "DIGEST"  # partition key of the verdict changes held for the digest
FUNCTIONS = ("OnPushFunction", "OnScanFunction", "OnReevaluateFunction", "SweeperFunction")
# Invoked asynchronously by EventBridge rules: a failed event ends in the DLQ through the
# function's EventInvokeConfig. OnReevaluateFunction is invoked synchronously by the SQS
# poller instead: its failures go back to the queue, which redrives them to the DLQ.
# SlackNotifierFunction (SNS, asynchronous too) exists only with SlackWebhookSecretArn.
# KevRefreshFunction (its daily schedule) exists unless KevCatalogUrl is emptied.
ASYNC_FUNCTIONS = ("OnPushFunction", "OnScanFunction", "SweeperFunction",
                   "SlackNotifierFunction", "KevRefreshFunction")
# The functions that judge images: each holds exactly the gatekeeper's grants.
JUDGING_FUNCTIONS = ("OnPushFunction", "OnScanFunction", "OnReevaluateFunction")
# The judging functions' memory is set from the memory benchmark (template.yaml, Globals).
MEMORY = {"OnPushFunction": 192, "OnScanFunction": 192, "OnReevaluateFunction": 192,
          "SweeperFunction": 256}
TIMEOUTS = {"OnPushFunction": 60, "OnScanFunction": 60, "OnReevaluateFunction": 60,
            "SweeperFunction": 300}
RULES = ("OnPushFunctionEcrImagePush", "OnScanFunctionEcrBasicScan",
         "OnScanFunctionInspectorScan", "InspectorFindingRule", "SweeperFunctionHourly",
         "SweeperFunctionPolicyPublished", "KevRefreshFunctionDaily")
# Organization mode (OrganizationId set): the hub bus's rules, each the twin of a default-bus
# rule above (same pattern, target, retries, dead letters; tests/template/test_spoke_template.py).
HUB_RULES = {"HubEcrImagePushRule": "OnPushFunctionEcrImagePush",
             "HubEcrBasicScanRule": "OnScanFunctionEcrBasicScan",
             "HubInspectorScanRule": "OnScanFunctionInspectorScan",
             "HubInspectorFindingRule": "InspectorFindingRule"}
# Every rule target retries for an hour; the hourly schedule only 3 times (its next tick
# comes an hour later anyway), then dead-letters like the others.
RETRIES = {rule: {"MaximumRetryAttempts": 24, "MaximumEventAgeInSeconds": 3600}
           for rule in RULES} | {
    "SweeperFunctionHourly": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
    "KevRefreshFunctionDaily": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}}
REQUIRED_OUTPUTS = {
    "VerdictTopicArn", "VerdictTableName", "PolicyBucketName", "DeadLetterQueueUrl",
    "DeadLetterQueueArn", "OnPushFunctionArn", "OnScanFunctionArn", "GatekeeperLayerArn",
    "ReevaluationQueueUrl", "OnReevaluateFunctionArn", "SweeperFunctionArn",
}
# What SAM attaches to every role it generates: CloudWatch Logs and, with Tracing: Active,
# X-Ray. Both grant on "*" (X-Ray's actions have no resource-level permissions).
SAM_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
# SAM also attaches AWSLambdaSQSQueueExecutionRole to the role of a function with an SQS event
# source (the Lambda poller receives, deletes and reads the queue's attributes with the
# function's role); the template cannot scope it. OnReevaluateFunction (the re-evaluation
# queue) and SweeperFunction (the sweep queue's continuations) have one.
SQS_POLLER_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
QUEUE_CONSUMERS = {"ReevaluationQueue": "OnReevaluateFunction", "SweepQueue": "SweeperFunction"}
MANAGED_POLICIES = {function_id: SAM_MANAGED_POLICIES for function_id in FUNCTIONS} | {
    function_id: SAM_MANAGED_POLICIES | {SQS_POLLER_POLICY}
    for function_id in QUEUE_CONSUMERS.values()}


def of_type(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in cfn["Resources"].items() if r["Type"] == kind}


def mapping_of(cfn: dict[str, Any], queue_id: str) -> dict[str, Any]:
    """The event source mapping that feeds ``queue_id`` to its function (exactly one)."""
    (mapping,) = [r for r in of_type(cfn, "AWS::Lambda::EventSourceMapping").values()
                  if r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}]
    return mapping


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource id, statement) for every inline and resource policy of the template."""
    for logical_id, resource in cfn["Resources"].items():
        properties = resource.get("Properties", {})
        documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
        if "PolicyDocument" in properties:
            documents.append(properties["PolicyDocument"])
        if "ResourcePolicy" in properties:  # a DynamoDB table's
            documents.append(properties["ResourcePolicy"]["PolicyDocument"])
        for document in documents:
            for statement in as_list(document["Statement"]):
                yield logical_id, statement


def role_statements(cfn: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    role = cfn["Resources"][f"{function_id}Role"]["Properties"]
    return [s for p in role["Policies"] for s in as_list(p["PolicyDocument"]["Statement"])]


def grants(statements: list[dict[str, Any]], action: str) -> list[Any]:
    return [s["Resource"] for s in statements
            if s["Effect"] == "Allow" and action in as_list(s["Action"])]


def granted(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Every (action, resource) an inline policy allows, resources as JSON for hashing."""
    assert all(s["Effect"] == "Allow" and "Condition" not in s for s in statements)
    return {(action, json.dumps(resource, sort_keys=True)) for s in statements
            for action in as_list(s["Action"]) for resource in as_list(s["Resource"])}


def pairs(*entries: tuple[str, Any]) -> set[tuple[str, str]]:
    return {(action, json.dumps(resource, sort_keys=True)) for action, resource in entries}


# --- the transform itself ------------------------------------------------------------------

def test_the_translator_rejects_what_cfn_lint_lets_through(tmp_path: Path) -> None:
    """cfn-lint 1.x checks SAM resources against schemas and no longer runs the SAM translator,
    so `sam validate --lint` passes a DeadLetterConfig that names both Arn and Type, which
    the translator (and so CloudFormation) refuses. The `cfn` fixture runs the translator:
    every test here fails on such a template."""
    # Given the template with a DeadLetterConfig of both shapes at once
    text = TEMPLATE.read_text()
    wrong = text.replace("              Arn: !GetAtt DeadLetterQueue.Arn\n",
                         "              Arn: !GetAtt DeadLetterQueue.Arn\n"
                         "              Type: SQS\n", 1)
    assert wrong != text
    (tmp_path / "template.yaml").write_text(wrong)

    # When it is transformed; Then the translator names the mistake
    with pytest.raises(InvalidDocumentException, match="either define 'Arn' or 'Type'"):
        transform_template(tmp_path / "template.yaml", REGION)


# --- functions ------------------------------------------------------------------------------

def test_the_template_has_exactly_the_four_functions(cfn: dict[str, Any]) -> None:
    # and the Slack notifier, the ECS deployment hook and the verdict API, each only with its
    # parameter (tests/template/test_slack_template.py, test_ecs_hook_template.py,
    # test_verdict_api_template.py)
    assert set(of_type(cfn, "AWS::Lambda::Function")) == set(FUNCTIONS) | {
        "SlackNotifierFunction", "EcsDeploymentHookFunction", "VerdictApiFunction",
        "KevRefreshFunction"}


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_function_runs_python313_on_arm64_with_the_layer_and_tracing(
        cfn: dict[str, Any], function_id: str) -> None:
    # Given the function as CloudFormation will create it
    properties = cfn["Resources"][function_id]["Properties"]
    (layer_id,) = of_type(cfn, "AWS::Lambda::LayerVersion")

    # Then it has the runtime, architecture, layer and tracing of Globals
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Layers"] == [{"Ref": layer_id}]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert (properties["MemorySize"], properties["Timeout"]) == (MEMORY[function_id],
                                                                  TIMEOUTS[function_id])


def test_layer_is_built_for_python313_on_arm64(cfn: dict[str, Any]) -> None:
    (layer,) = of_type(cfn, "AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    sam_layer = load_sam_template(TEMPLATE)["Resources"]["GatekeeperLayer"]
    assert sam_layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_function_environment_points_at_the_stack(cfn: dict[str, Any], function_id: str) -> None:
    variables = cfn["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    assert variables == {
        "POWERTOOLS_SERVICE_NAME": "ecr-scan-gatekeeper",
        "POWERTOOLS_METRICS_NAMESPACE": "EcrScanGatekeeper",
        "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
        "GATEKEEPER_TABLE": {"Ref": "VerdictTable"},
        "GATEKEEPER_TOPIC_ARN": {"Ref": "VerdictTopic"},
        "GATEKEEPER_POLICY_BUCKET": {"Ref": "PolicyBucket"},
        "GATEKEEPER_POLICY_KEY": {"Ref": "PolicyObjectKey"},
        "GATEKEEPER_APPROVED_TAG": {"Ref": "ApprovedTagTemplate"},
        "GATEKEEPER_QUARANTINED_TAG": {"Ref": "QuarantinedTagTemplate"},
        "GATEKEEPER_REEVALUATION_QUEUE_URL": {"Ref": "ReevaluationQueue"},
        "GATEKEEPER_SCAN_TIMEOUT_MINUTES": {"Ref": "ScanTimeoutMinutes"},
        "GATEKEEPER_START_SCANS": {"Ref": "StartScanIfNotOnPush"},
        "GATEKEEPER_HISTORY_RETENTION_DAYS": {"Ref": "HistoryRetentionDays"},
        "GATEKEEPER_SECURITY_HUB": {"Ref": "SecurityHubFindings"},
        "GATEKEEPER_LEASE_SECONDS": "90",
        "GATEKEEPER_SIGNING_KEY_ARN": {"Fn::GetAtt": ["VerdictSigningKey", "Arn"]},
        # organization mode (empty OrganizationId: the stack's own account only)
        "GATEKEEPER_ACCOUNT_ID": {"Ref": "AWS::AccountId"},
        "GATEKEEPER_ORGANIZATION_ID": {"Ref": "OrganizationId"},
        "GATEKEEPER_SPOKE_ROLE_NAME": {"Ref": "SpokeRoleName"},
        "GATEKEEPER_OPERATOR_TOPIC_ARN": {"Ref": "OperatorTopic"},
    } | ({"GATEKEEPER_SWEEP_QUEUE_URL": {"Ref": "SweepQueue"}}
         if function_id == "SweeperFunction" else {})


def test_the_lease_outlasts_every_judging_function(cfn: dict[str, Any]) -> None:
    # A lease shorter than a function's timeout could be taken over while its holder still
    # changes the image's tags: two writers at once
    for function_id in JUDGING_FUNCTIONS:
        variables = cfn["Resources"][function_id]["Properties"]["Environment"]["Variables"]
        timeout = cfn["Resources"][function_id]["Properties"]["Timeout"]
        assert timeout == TIMEOUTS[function_id]
        assert int(variables["GATEKEEPER_LEASE_SECONDS"]) > timeout, function_id


@pytest.mark.parametrize("function_id", ASYNC_FUNCTIONS)
def test_failed_invocations_end_in_the_dead_letter_queue(cfn: dict[str, Any],
                                                         function_id: str) -> None:
    # Given the function's asynchronous invoke configuration
    (config,) = [r["Properties"] for r in of_type(cfn, "AWS::Lambda::EventInvokeConfig").values()
                 if r["Properties"]["FunctionName"] == {"Ref": function_id}]

    # Then a handler that keeps raising sends the event, after two retries, to the DLQ
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == 3600
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == DLQ_ARN
    # and the role may send it there (SAM adds this statement for an SQS destination)
    assert DLQ_ARN in grants(role_statements(cfn, function_id), "sqs:SendMessage")


def test_only_the_asynchronously_invoked_functions_have_an_invoke_config(
        cfn: dict[str, Any]) -> None:
    configs = [r["Properties"]["FunctionName"]
               for r in of_type(cfn, "AWS::Lambda::EventInvokeConfig").values()]
    assert sorted(configs, key=str) == sorted(
        ({"Ref": function_id} for function_id in ASYNC_FUNCTIONS), key=str)


def test_the_reevaluation_queue_feeds_its_function_in_debounced_batches(
        cfn: dict[str, Any]) -> None:
    # Given the re-evaluation queue's event source mapping
    mapping = mapping_of(cfn, "ReevaluationQueue")

    # Then OnReevaluateFunction gets up to 100 messages gathered for up to a minute, and
    # reports failed messages one by one (the others are deleted, not retried)
    assert mapping["Properties"] == {
        "EventSourceArn": QUEUE_ARN,
        "FunctionName": {"Ref": "OnReevaluateFunction"},
        "BatchSize": 100,
        "MaximumBatchingWindowInSeconds": 60,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }


def test_a_batch_outlives_its_function_before_it_is_seen_again(cfn: dict[str, Any]) -> None:
    # AWS: a queue's visibility timeout should be at least six times its consumer's timeout,
    # so that a batch is not handed out again while Lambda still retries a throttled one
    queue = cfn["Resources"]["ReevaluationQueue"]["Properties"]
    function = cfn["Resources"]["OnReevaluateFunction"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]


def test_a_batch_outlives_its_function_and_its_batching_window(cfn: dict[str, Any]) -> None:
    queue = cfn["Resources"]["ReevaluationQueue"]["Properties"]
    function = cfn["Resources"]["OnReevaluateFunction"]["Properties"]
    mapping = mapping_of(cfn, "ReevaluationQueue")
    window = mapping["Properties"]["MaximumBatchingWindowInSeconds"]
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"] + window


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_function_log_group_has_a_retention(cfn: dict[str, Any], function_id: str) -> None:
    name = {"Fn::Sub": f"/aws/lambda/${{{function_id}}}"}
    (group,) = [r["Properties"] for r in of_type(cfn, "AWS::Logs::LogGroup").values()
                if r["Properties"]["LogGroupName"] == name]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


# --- rules and the dead-letter queue --------------------------------------------------------

def test_the_template_has_exactly_these_rules(cfn: dict[str, Any]) -> None:
    # (and the hub bus's, with OrganizationId only)
    assert set(of_type(cfn, "AWS::Events::Rule")) == set(RULES) | set(HUB_RULES)
    assert {cfn["Resources"][rule].get("Condition") for rule in HUB_RULES} == {"IsHub"}


@pytest.mark.parametrize("rule_id", RULES)
def test_every_rule_target_retries_and_dead_letters(cfn: dict[str, Any], rule_id: str) -> None:
    # Given the rule (SAM's EventBridgeRule and Schedule events, and the plain Inspector rule)
    rule = cfn["Resources"][rule_id]["Properties"]

    # Then its one target retries, then puts the event in the DLQ
    (target,) = rule["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}
    assert target["RetryPolicy"] == RETRIES[rule_id]
    assert "EventBusName" not in rule  # the default bus
    assert rule.get("State", "ENABLED") == "ENABLED"


def test_rules_reach_their_functions_or_the_reevaluation_queue(cfn: dict[str, Any]) -> None:
    targets = {rule_id: cfn["Resources"][rule_id]["Properties"]["Targets"][0]["Arn"]
               for rule_id in RULES}
    assert targets == {
        "OnPushFunctionEcrImagePush": {"Fn::GetAtt": ["OnPushFunction", "Arn"]},
        "OnScanFunctionEcrBasicScan": {"Fn::GetAtt": ["OnScanFunction", "Arn"]},
        "OnScanFunctionInspectorScan": {"Fn::GetAtt": ["OnScanFunction", "Arn"]},
        "InspectorFindingRule": QUEUE_ARN,
        "SweeperFunctionHourly": {"Fn::GetAtt": ["SweeperFunction", "Arn"]},
        "SweeperFunctionPolicyPublished": {"Fn::GetAtt": ["SweeperFunction", "Arn"]},
        "KevRefreshFunctionDaily": {"Fn::GetAtt": ["KevRefreshFunction", "Arn"]},
    }


def test_the_sweep_runs_hourly(cfn: dict[str, Any]) -> None:
    hourly = cfn["Resources"]["SweeperFunctionHourly"]["Properties"]
    assert hourly["ScheduleExpression"] == "rate(1 hour)"
    assert "EventPattern" not in hourly


def test_only_the_rules_may_send_to_the_dead_letter_queue(cfn: dict[str, Any]) -> None:
    # Given the queue's resource policy
    policy = cfn["Resources"]["DeadLetterQueuePolicy"]
    (statement,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                    if s["Principal"] != {"Service": "sns.amazonaws.com"}]  # (Slack's redrive)

    # Then EventBridge may send to it, from exactly the template's seven rules (a rule that
    # exists on a condition, only then), and the hub bus's four in organization mode
    def source(rule_id: str, rule: dict[str, Any]) -> dict[str, Any]:
        arn = {"Fn::GetAtt": [rule_id, "Arn"]}
        return ({"Fn::If": [rule["Condition"], arn, {"Ref": "AWS::NoValue"}]}
                if "Condition" in rule else arn)

    rules = [source(k, r) for k, r in of_type(cfn, "AWS::Events::Rule").items()
             if k not in HUB_RULES]
    assert len(rules) == 7
    rules += [{"Fn::If": ["IsHub", {"Fn::GetAtt": [rule, "Arn"]}, {"Ref": "AWS::NoValue"}]}
              for rule in HUB_RULES]
    assert policy["Properties"]["Queues"] == [{"Ref": "DeadLetterQueue"}]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == DLQ_ARN
    assert sorted(statement["Condition"]["ArnEquals"]["aws:SourceArn"], key=str) == sorted(
        rules, key=str)
    assert set(statement["Condition"]) == {"ArnEquals"}


def test_besides_the_rules_only_on_failure_destinations_may_send_to_the_dlq(
        cfn: dict[str, Any]) -> None:
    # Given every policy statement allowing sqs:SendMessage on the dead-letter queue
    senders = {logical_id for logical_id, s in policy_statements(cfn)
               if s["Effect"] == "Allow" and "sqs:SendMessage" in as_list(s["Action"])
               and DLQ_ARN in as_list(s["Resource"])}

    # Then they are its queue policy (the rules) and the roles of the functions whose failed
    # invocations go there (SAM's statement for an OnFailure destination), nothing else.
    # (The re-evaluation queue's redrive needs no permission: SQS moves the messages itself.)
    assert senders == {"DeadLetterQueuePolicy"} | {f"{f}Role" for f in ASYNC_FUNCTIONS}


def test_only_the_finding_rule_and_the_sweeper_may_send_to_the_reevaluation_queue(
        cfn: dict[str, Any]) -> None:
    # Given the queue's resource policy
    policy = cfn["Resources"]["ReevaluationQueuePolicy"]["Properties"]
    (statement,) = policy["PolicyDocument"]["Statement"]

    # Then EventBridge may send to it from the Inspector finding rule only (and, in
    # organization mode, the hub bus's finding rule)
    assert policy["Queues"] == [{"Ref": "ReevaluationQueue"}]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == QUEUE_ARN
    finding_rule = {"Fn::GetAtt": ["InspectorFindingRule", "Arn"]}
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::If": [
        "IsHub", [finding_rule, {"Fn::GetAtt": ["HubInspectorFindingRule", "Arn"]}],
        finding_rule]}}}

    # and of the roles only the sweeper's sends to it, and the judging functions' (which
    # defer the event of a throttled or unreachable account there)
    senders = {logical_id for logical_id, s in policy_statements(cfn)
               if s["Effect"] == "Allow" and "sqs:SendMessage" in as_list(s["Action"])
               and QUEUE_ARN in as_list(s["Resource"])}
    assert senders == {"ReevaluationQueuePolicy", "SweeperFunctionRole"} | {
        f"{f}Role" for f in JUDGING_FUNCTIONS}


def test_the_template_has_exactly_three_queues(cfn: dict[str, Any]) -> None:
    assert set(of_type(cfn, "AWS::SQS::Queue")) == {"DeadLetterQueue", "ReevaluationQueue",
                                                    "SweepQueue"}


def test_there_is_one_dead_letter_queue_encrypted_and_kept_14_days(cfn: dict[str, Any]) -> None:
    queue = cfn["Resources"]["DeadLetterQueue"]
    assert queue["Properties"] == {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 1209600}


def test_reevaluation_queue_is_encrypted_and_redrives_to_the_dead_letter_queue(
        cfn: dict[str, Any]) -> None:
    queue = cfn["Resources"]["ReevaluationQueue"]["Properties"]
    assert queue == {
        "SqsManagedSseEnabled": True,
        "VisibilityTimeout": 420,
        "MessageRetentionPeriod": 345600,
        "RedrivePolicy": {"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 5},
    }
    # A redriven message keeps its original enqueue time: the DLQ must keep messages longer
    dlq = cfn["Resources"]["DeadLetterQueue"]["Properties"]
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]


# --- state, notifications, policy -----------------------------------------------------------

def test_verdict_table(cfn: dict[str, Any]) -> None:
    table = cfn["Resources"]["VerdictTable"]
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"},
                                       {"AttributeName": "sk", "KeyType": "RANGE"}]
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_verdict_history_expires_through_the_tables_time_to_live(cfn: dict[str, Any]) -> None:
    # The store writes expires_at on history items, HistoryRetentionDays after the change
    properties = cfn["Resources"]["VerdictTable"]["Properties"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at",
                                                      "Enabled": True}
    spec = cfn["Parameters"]["HistoryRetentionDays"]
    assert (spec["Type"], spec["Default"], spec["MinValue"]) == ("Number", 400, 30)


def test_verdict_topic_is_encrypted(cfn: dict[str, Any]) -> None:
    assert cfn["Resources"]["VerdictTopic"]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"


def test_email_subscription_only_with_an_address(cfn: dict[str, Any]) -> None:
    subscription = cfn["Resources"]["EmailSubscription"]
    assert subscription["Condition"] == "HasEmail"
    assert cfn["Conditions"]["HasEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "NotificationEmail"}, ""]}]}
    assert cfn["Parameters"]["NotificationEmail"]["Default"] == ""


def test_policy_bucket_is_versioned_private_encrypted_and_kept(cfn: dict[str, Any]) -> None:
    bucket = cfn["Resources"]["PolicyBucket"]
    properties = bucket["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership":
                                                          "BucketOwnerEnforced"}]}
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_policy_bucket_sends_its_events_to_eventbridge(cfn: dict[str, Any]) -> None:
    # Without it S3 sends no "Object Created" event and a new policy waits for the next sweep
    properties = cfn["Resources"]["PolicyBucket"]["Properties"]
    assert properties["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}}


def bucket_statements(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (policy,) = of_type(cfn, "AWS::S3::BucketPolicy").values()
    assert policy["Properties"]["Bucket"] == {"Ref": "PolicyBucket"}
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_policy_bucket_refuses_requests_without_tls(cfn: dict[str, Any]) -> None:
    statement = bucket_statements(cfn)["DenyInsecureTransport"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_only_the_named_publishers_may_write_the_policy(cfn: dict[str, Any]) -> None:
    # Given the bucket policy; Then whoever IAM lets write (s3:* on *), every principal but
    # the publishers is refused writing, overwriting or deleting a policy object, or deleting
    # a version (which would make an older, perhaps laxer, version current again)
    statements = bucket_statements(cfn)
    assert set(statements) == {"DenyInsecureTransport", "OnlyPublishersWritePolicies"}
    statement = statements["OnlyPublishersWritePolicies"]
    assert (statement["Effect"], statement["Principal"]) == ("Deny", "*")
    assert set(statement["Action"]) == {"s3:PutObject", "s3:DeleteObject",
                                        "s3:DeleteObjectVersion", "s3:ReplicateObject",
                                        "s3:ReplicateDelete"}
    assert statement["Resource"] == {"Fn::Sub": "${PolicyBucket.Arn}/*"}
    # With publishers named, they are the exception; with none, nobody is (no condition);
    # and KevRefreshFunction's role, where it exists (its IAM: the KEV catalog's key only)
    kev_role = {"Fn::GetAtt": ["KevRefreshFunctionRole", "Arn"]}
    assert statement["Condition"] == {"Fn::If": [
        "HasPolicyPublishers",
        {"ArnNotLike": {"aws:PrincipalArn": {"Fn::If": [
            "HasKevRefresh",
            {"Fn::Split": [",", {"Fn::Join": [",", [
                {"Fn::Join": [",", {"Ref": "PolicyPublisherArns"}]}, kev_role]]}]},
            {"Ref": "PolicyPublisherArns"}]}}},
        {"Fn::If": ["HasKevRefresh", {"ArnNotLike": {"aws:PrincipalArn": [kev_role]}},
                    {"Ref": "AWS::NoValue"}]}]}
    assert grants(role_statements(cfn, "KevRefreshFunction"), "s3:PutObject") == [KEV_OBJECT]
    assert cfn["Conditions"]["HasPolicyPublishers"] == {"Fn::Not": [{"Fn::Equals": [
        {"Fn::Join": ["", {"Ref": "PolicyPublisherArns"}]}, ""]}]}
    # and the bucket's own management (its policy, its settings) is left to IAM: no lock-out
    denied = {a for s in statements.values() for a in as_list(s["Action"])} - {"s3:*"}
    assert not {a for a in denied if a.startswith(("s3:PutBucket", "s3:DeleteBucket"))}


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True),
    ("arn:aws:iam::123456789012:role/security-policy-publisher", True),
    ("arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Sec_*", True),
    ("arn:aws-us-gov:iam::123456789012:user/alice", True),
    ("arn:aws:sts::123456789012:assumed-role/publisher/session", False),  # not a principal ARN
    ("arn:aws:iam::123456789012:root", False),
    ("*", False),
    ("arn:aws:iam::*:role/x", False),  # another account's roles
])
def test_publishers_are_iam_role_or_user_arns(cfn: dict[str, Any], value: str,
                                              accepted: bool) -> None:
    spec = cfn["Parameters"]["PolicyPublisherArns"]
    assert (spec["Type"], spec["Default"]) == ("CommaDelimitedList", "")
    assert bool(re.fullmatch(spec["AllowedPattern"], value)) is accepted


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True),
    ("arn:aws:iam::123456789012:role/gatekeeper-operator", True),
    ("arn:aws:iam::123456789012:user/alice", False),  # roles only: operators assume one
    ("arn:aws:iam::123456789012:root", False),
    ("*", False),
])
def test_operators_are_iam_role_arns(cfn: dict[str, Any], value: str, accepted: bool) -> None:
    spec = cfn["Parameters"]["OperatorRoleArns"]
    assert (spec["Type"], spec["Default"]) == ("CommaDelimitedList", "")
    assert bool(re.fullmatch(spec["AllowedPattern"], value)) is accepted


ROLE_PATH = {"Fn::Sub": "/ecr-scan-gatekeeper/${AWS::StackName}/"}
STACK_ROLES = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role"
                          "/ecr-scan-gatekeeper/${AWS::StackName}/*"}


def test_every_role_of_the_stack_lives_under_the_stacks_role_path(cfn: dict[str, Any]) -> None:
    roles = of_type(cfn, "AWS::IAM::Role")
    assert set(roles) >= {f"{f}Role" for f in FUNCTIONS}
    for logical_id, role in roles.items():
        assert role["Properties"]["Path"] == ROLE_PATH, logical_id


def test_only_the_stacks_roles_may_write_the_verdict_table(cfn: dict[str, Any]) -> None:
    # Given the table's resource policy
    document = cfn["Resources"]["VerdictTable"]["Properties"]["ResourcePolicy"]["PolicyDocument"]
    (statement,) = document["Statement"]
    # Then every item write by a principal outside the stack's role path is refused, whatever
    # IAM grants it (transactions are authorized per item as PutItem, UpdateItem, DeleteItem)
    assert (statement["Sid"], statement["Effect"], statement["Principal"]) == (
        "OnlyTheGatekeeperWritesVerdicts", "Deny", "*")
    assert set(statement["Action"]) == {
        "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem", "dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate",
        "dynamodb:PartiQLDelete"}
    assert statement["Resource"] == "*"  # in a table's own policy: the table
    # (and the operators' roles, only when named: the commands that judge with their
    # credentials, reevaluate and replay-dlq)
    assert statement["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": {"Fn::If": [
        "HasOperatorRoles",
        {"Fn::Split": [",", {"Fn::Sub": [STACK_ROLES["Fn::Sub"] + ",${Operators}", {
            "Operators": {"Fn::Join": [",", {"Ref": "OperatorRoleArns"}]}}]}]},
        [STACK_ROLES]]}}}
    assert cfn["Parameters"]["OperatorRoleArns"]["Default"] == ""
    # and the roles are named by their path, not by reference: no circular dependency
    assert "Ref" not in json.dumps(document).replace('"Ref": "AWS::', "").replace(
        '"Ref": "OperatorRoleArns"', "")
    assert "Fn::GetAtt" not in json.dumps(document)


def test_the_table_policy_names_the_path_the_roles_are_given(cfn: dict[str, Any]) -> None:
    path = ROLE_PATH["Fn::Sub"]
    assert STACK_ROLES["Fn::Sub"].endswith(f":role{path}*")


# --- IAM ------------------------------------------------------------------------------------

def test_no_allow_statement_grants_a_wildcard_action_or_every_resource(
        cfn: dict[str, Any]) -> None:
    # Given every statement of every role, queue, bucket and topic policy
    allows = [(k, s) for k, s in policy_statements(cfn) if s["Effect"] == "Allow"]
    assert allows

    # Then none allows a wildcard action (nor uses NotAction/NotResource), and Resource "*"
    # appears only for inspector2:ListFindings and ecs:DescribeTaskDefinition, which have no
    # resource-level permissions
    for logical_id, statement in allows:
        assert not [a for a in as_list(statement["Action"]) if "*" in a], (logical_id, statement)
        assert not {"NotAction", "NotResource"} & set(statement), (logical_id, statement)
        if "*" in as_list(statement.get("Resource")):
            assert as_list(statement["Action"]) in (
                ["inspector2:ListFindings"], ["ecs:DescribeTaskDefinition"]), statement


def test_the_denies_are_the_tls_guard_and_the_two_writer_guards(cfn: dict[str, Any]) -> None:
    # A broad Deny only narrows access: s3:* for any principal without TLS, and writes by
    # anyone but the policy publishers (bucket) or the stack's roles (table), are the intent.
    denies = sorted((k, s.get("Sid")) for k, s in policy_statements(cfn) if s["Effect"] == "Deny")
    assert denies == [("PolicyBucketPolicy", "DenyInsecureTransport"),
                      ("PolicyBucketPolicy", "OnlyPublishersWritePolicies"),
                      ("VerdictTable", "OnlyTheGatekeeperWritesVerdicts")]


# What a judging function does with ECR: read findings, details, manifests and the
# repository's images; write a marker (PutImage), remove one (BatchDeleteImage by tag),
# archive and restore (UpdateImageStorageClass). The README's threat model says why each.
SIGNING_KEY_ARN = {"Fn::GetAtt": ["VerdictSigningKey", "Arn"]}
OPERATOR_TOPIC_KEY_ARN = {"Fn::GetAtt": ["OperatorTopicKey", "Arn"]}
KEV_OBJECT = {"Fn::Sub": "${PolicyBucket.Arn}/kev/known_exploited_vulnerabilities.json"}
KEV_URL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"
ECR_ACTIONS = ("ecr:DescribeImageScanFindings", "ecr:DescribeImages", "ecr:BatchGetImage",
               "ecr:ListImages", "ecr:PutImage", "ecr:BatchDeleteImage",
               "ecr:UpdateImageStorageClass")


# The OpenVEX documents a policy names: the only objects besides the policy a function reads.
VEX_DOCUMENTS = {"Fn::Sub": "${PolicyBucket.Arn}/vex/*"}


@pytest.mark.parametrize("function_id", JUDGING_FUNCTIONS)
def test_function_role_grants_what_the_gatekeeper_calls(cfn: dict[str, Any],
                                                        function_id: str) -> None:
    # Given the role SAM generates for the function
    statements = role_statements(cfn, function_id)
    repositories = {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}"
                               ":repository/${RepositoryPattern}"}

    # Then each API the adapters call is granted on its own resource only
    for action in ECR_ACTIONS:
        assert grants(statements, action) == [repositories], action
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"):
        assert grants(statements, action) == [TABLE_ARN], action
    assert grants(statements, "sns:Publish") == [{"Ref": "VerdictTopic"},
                                                  {"Ref": "OperatorTopic"}]
    assert grants(statements, "s3:GetObject") == [
        {"Fn::Sub": "${PolicyBucket.Arn}/${PolicyObjectKey}"}, VEX_DOCUMENTS, KEV_OBJECT]
    assert grants(statements, "s3:ListBucket") == [{"Fn::GetAtt": ["PolicyBucket", "Arn"]}]
    assert grants(statements, "inspector2:ListFindings") == ["*"]
    assert grants(statements, "kms:Sign") == [SIGNING_KEY_ARN]  # every verdict change
    # and nothing the service never calls
    assert grants(statements, "dynamodb:UpdateItem") == []
    assert grants(statements, "dynamodb:DeleteItem") == []
    assert grants(statements, "dynamodb:Scan") == []
    assert grants(statements, "s3:GetObjectVersion") == []  # GetObject reads the current one

    # and nothing else at all: the pairs above, plus the DLQ for an OnFailure destination
    expected = pairs(
        *((a, repositories) for a in ECR_ACTIONS),
        ("dynamodb:GetItem", TABLE_ARN), ("dynamodb:PutItem", TABLE_ARN),
        ("dynamodb:Query", TABLE_ARN),
        ("sns:Publish", {"Ref": "VerdictTopic"}),
        ("s3:GetObject", {"Fn::Sub": "${PolicyBucket.Arn}/${PolicyObjectKey}"}),
        ("s3:GetObject", VEX_DOCUMENTS),
        ("s3:GetObject", KEV_OBJECT),
        ("s3:ListBucket", {"Fn::GetAtt": ["PolicyBucket", "Arn"]}),
        ("inspector2:ListFindings", "*"),
        ("kms:Sign", SIGNING_KEY_ARN),
        # deferring an event (a throttled or unreachable account), alerting the operators
        ("sqs:SendMessage", QUEUE_ARN),
        ("sns:Publish", {"Ref": "OperatorTopic"}),
        ("kms:GenerateDataKey", OPERATOR_TOPIC_KEY_ARN),
        ("kms:Decrypt", OPERATOR_TOPIC_KEY_ARN),
    )
    if function_id in ASYNC_FUNCTIONS:
        expected |= pairs(("sqs:SendMessage", DLQ_ARN))
    if function_id == "OnPushFunction":  # it starts the scans repositories do not run on push
        expected |= pairs(("ecr:BatchGetRepositoryScanningConfiguration", repositories),
                          ("ecr:StartImageScan", repositories))
    assert granted(statements) == expected


def test_sweeper_role_only_scans_the_table_queues_reevaluations_and_sends_the_digest(
        cfn: dict[str, Any]) -> None:
    # Given the sweeper's role; Then it reads the table by Scan (it never judges nor tags),
    # reads and deletes the verdict changes held for the digest and publishes the digest,
    # and sends only to the re-evaluation queue, and to the DLQ for its OnFailure destination
    # (SAM's statement)
    statements = role_statements(cfn, "SweeperFunction")
    scoped = [s for s in statements if "Condition" in s]
    assert granted([s for s in statements if "Condition" not in s]) == pairs(
        ("dynamodb:Scan", TABLE_ARN),
        ("dynamodb:Query", TABLE_ARN),
        ("dynamodb:Query", {"Fn::Sub": "${VerdictTable.Arn}/index/DueIndex"}),
        ("sns:Publish", {"Ref": "VerdictTopic"}),
        ("sqs:SendMessage", QUEUE_ARN),
        ("sqs:SendMessage", SWEEP_QUEUE_ARN),
        ("sqs:SendMessage", DLQ_ARN),
        # whether the policy uses the KEV catalog, when a new copy of it is written
        ("s3:GetObject", {"Fn::Sub": "${PolicyBucket.Arn}/${PolicyObjectKey}"}),
        ("s3:ListBucket", {"Fn::GetAtt": ["PolicyBucket", "Arn"]}),
    )
    # and it updates only DueIndex's attributes (the one-time backfill), returning nothing
    backfill, newest, *scoped = scoped
    assert backfill == {
        "Sid": "BackfillTheDueIndex", "Effect": "Allow",
        "Action": "dynamodb:UpdateItem", "Resource": TABLE_ARN,
        "Condition": {
            "ForAllValues:StringEquals": {"dynamodb:Attributes": [
                "pk", "sk", "revision", "due_shard", "due_at", "due_backfilled"]},
            "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"}}}
    # and the newest policy sweep's marker: its own attributes of the SWEEP partition only
    assert newest == {
        "Sid": "RecordTheNewestPolicySweep", "Effect": "Allow",
        "Action": "dynamodb:UpdateItem", "Resource": TABLE_ARN,
        "Condition": {
            "ForAllValues:StringEquals": {
                "dynamodb:LeadingKeys": ["SWEEP"],
                "dynamodb:Attributes": ["pk", "sk", "sweep_order", "sweep_version",
                                        "sweep_started_at"]},
            "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"}}}
    # and it deletes only the items held for the digest: those whose partition key is the
    # store's DIGEST, never a verdict, a lease or a history item
    assert scoped == [{
        "Sid": "ReleaseAnnouncedDigestItems", "Effect": "Allow",
        "Action": "dynamodb:DeleteItem", "Resource": TABLE_ARN,
        "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [DIGEST_KEY]}}}]


def test_the_verdict_table_has_the_sparse_due_index_the_store_queries(
        cfn: dict[str, Any]) -> None:
    # Given the verdict table; Then it has DueIndex keyed as the store writes and queries it,
    # projecting what the sweep reads, its key attributes declared, billed per request
    table = cfn["Resources"]["VerdictTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    [index] = table["GlobalSecondaryIndexes"]
    assert index == {
        "IndexName": DUE_INDEX,
        "KeySchema": [{"AttributeName": "due_shard", "KeyType": "HASH"},
                      {"AttributeName": "due_at", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "INCLUDE",
                       "NonKeyAttributes": ["repository", "digest", "state"]}}
    assert {"AttributeName": "due_shard", "AttributeType": "N"} in table["AttributeDefinitions"]
    assert {"AttributeName": "due_at", "AttributeType": "S"} in table["AttributeDefinitions"]


def test_the_sweepers_delete_scope_is_the_partition_key_the_store_deletes(
        cfn: dict[str, Any]) -> None:
    # Given the store releasing an announced change, When it deletes, Then the key is DIGEST
    calls: list[dict[str, Any]] = []

    class Recorder:
        def delete_item(self, **kwargs: Any) -> None:
            calls.append(kwargs)

    VerdictStore(Recorder(), "table").release("change-1")
    assert [c["Key"]["pk"] for c in calls] == [{"S": DIGEST_KEY}]


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_function_role_has_only_the_managed_policies_sam_attaches(cfn: dict[str, Any],
                                                                  function_id: str) -> None:
    role = cfn["Resources"][f"{function_id}Role"]["Properties"]
    assert set(role["ManagedPolicyArns"]) == MANAGED_POLICIES[function_id]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [{
        "Action": ["sts:AssumeRole"], "Effect": "Allow",
        "Principal": {"Service": ["lambda.amazonaws.com"]}}]


def test_only_the_queue_consumer_gets_the_sqs_poller_policy(cfn: dict[str, Any]) -> None:
    # SAM attaches it for an SQS event source; a function without one must not have it
    consumers = {r["Properties"]["FunctionName"]["Ref"]
                 for r in of_type(cfn, "AWS::Lambda::EventSourceMapping").values()}
    holders = {logical_id.removesuffix("Role")
               for logical_id, r in of_type(cfn, "AWS::IAM::Role").items()
               if SQS_POLLER_POLICY in r["Properties"].get("ManagedPolicyArns", [])}
    assert holders == consumers == set(QUEUE_CONSUMERS.values())


def test_the_sweep_queue_feeds_the_sweeper_one_continuation_at_a_time(
        cfn: dict[str, Any]) -> None:
    # Given the sweep queue's event source mapping; Then the sweeper gets one continuation
    # per invocation (each has the whole timeout) and reports a failed one on its own
    assert mapping_of(cfn, "SweepQueue")["Properties"] == {
        "EventSourceArn": SWEEP_QUEUE_ARN,
        "FunctionName": {"Ref": "SweeperFunction"},
        "BatchSize": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    }


def test_the_sweep_queue_is_encrypted_and_redrives_to_the_dead_letter_queue(
        cfn: dict[str, Any]) -> None:
    # Given the sweep queue; Then it is encrypted, a continuation outlives the sweeper's
    # retries before it is seen again, and one that keeps failing (unreadable, say) moves to
    # the dead-letter queue after three receives: it never loops
    queue = cfn["Resources"]["SweepQueue"]["Properties"]
    sweeper = cfn["Resources"]["SweeperFunction"]["Properties"]
    assert queue == {
        "SqsManagedSseEnabled": True,
        "VisibilityTimeout": 1800,
        "MessageRetentionPeriod": 345600,
        "RedrivePolicy": {"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 3},
    }
    assert queue["VisibilityTimeout"] >= 6 * sweeper["Timeout"]
    dlq = cfn["Resources"]["DeadLetterQueue"]["Properties"]
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    # and only the sweeper's role sends to it
    senders = {logical_id for logical_id, s in policy_statements(cfn)
               if s["Effect"] == "Allow" and "sqs:SendMessage" in as_list(s["Action"])
               and SWEEP_QUEUE_ARN in as_list(s["Resource"])}
    assert senders == {"SweeperFunctionRole"}


def test_repository_pattern_is_used_in_ecr_repository_arns_only() -> None:
    # Given the template as written
    template = load_sam_template(TEMPLATE)
    arn = re.compile(r"arn:\$\{AWS::Partition\}:ecr:\$\{AWS::Region\}:\$\{AWS::AccountId\}"
                     r":repository/\$\{RepositoryPattern\}")

    def uses(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            if node.get("Ref") == "RepositoryPattern":
                yield node
            for value in node.values():
                yield from uses(value)
        elif isinstance(node, list):
            for value in node:
                yield from uses(value)
        elif isinstance(node, str) and "RepositoryPattern" in node:
            yield node

    # Then every use of the parameter is the ECR repository ARN of an IAM statement
    found = list(uses({k: v for k, v in template.items() if k != "Parameters"}))
    assert found
    assert all(isinstance(u, str) and arn.fullmatch(u) for u in found), found


# --- parameters and outputs -----------------------------------------------------------------

def test_parameter_defaults(cfn: dict[str, Any]) -> None:
    defaults = {name: spec.get("Default") for name, spec in cfn["Parameters"].items()}
    assert defaults == {
        "RepositoryPattern": "*",
        "NotificationEmail": "",
        "ApprovedTagTemplate": "approved-{digest12}",
        "QuarantinedTagTemplate": "quarantined-{digest12}",
        "PolicyObjectKey": "policy.yaml",
        "ScanTimeoutMinutes": 60,
        "StartScanIfNotOnPush": "true",
        "HistoryRetentionDays": 400,
        "PolicyPublisherArns": "",
        "OperatorRoleArns": "",
        "LogLevel": "INFO",
        "LogRetentionInDays": 90,
        "LogsKmsKeyArn": "",
        "OperatorEmail": "",
        "SlackWebhookSecretArn": "",
        "EcsDeploymentHook": "disabled",
        "OtherRegistries": "deny",
        "VerdictApi": "disabled",
        "VerdictApiReservedConcurrency": 5,
        "OrganizationId": "",
        "SpokeRoleName": "ecr-scan-gatekeeper-spoke",
        "KevCatalogUrl": KEV_URL,
        "SecurityHubFindings": "disabled",
    }
    assert cfn["Parameters"]["LogLevel"]["AllowedValues"] == ["DEBUG", "INFO", "WARNING", "ERROR"]
    assert 90 in cfn["Parameters"]["LogRetentionInDays"]["AllowedValues"]


def test_outputs_name_every_arn_an_operator_needs(cfn: dict[str, Any]) -> None:
    assert set(cfn["Outputs"]) >= REQUIRED_OUTPUTS
    assert all(output.get("Description") for output in cfn["Outputs"].values())


def test_every_default_satisfies_its_own_constraints(cfn: dict[str, Any]) -> None:
    # A default that its AllowedPattern rejects would fail every deploy that keeps it.
    for name, spec in cfn["Parameters"].items():
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], str(spec["Default"])), name
        if "AllowedValues" in spec:
            assert spec["Default"] in spec["AllowedValues"], name
        if "MinValue" in spec:
            assert float(spec["Default"]) >= float(spec["MinValue"]), name
        if "MaxValue" in spec:
            assert float(spec["Default"]) <= float(spec["MaxValue"]), name


def test_scan_timeout_is_a_number_of_minutes_of_at_least_five(cfn: dict[str, Any]) -> None:
    spec = cfn["Parameters"]["ScanTimeoutMinutes"]
    assert (spec["Type"], spec["MinValue"]) == ("Number", 5)


TAG_TEMPLATES = ("ApprovedTagTemplate", "QuarantinedTagTemplate")


@pytest.mark.parametrize("parameter", TAG_TEMPLATES)
@pytest.mark.parametrize(("value", "accepted"), [
    ("approved-{digest12}", True),
    ("quarantined-{digest}", True),
    ("Gatekeeper_OK.{digest12}-v1", True),
    ("approved", False),  # a fixed tag would move between images
    ("approved-{digest12}/x", False),
    ("{digest}-ok", False),  # no word of its own: every 64-hex sha plus -ok would match
    ("{digest12}", False),
    ("v{digest12}", False),
    ("ok-{digest12}", False),  # fewer than 3 letters
    ("approved{digest12}", False),  # no separator
    ("cafe-{digest12}", False),  # hex letters only: reads as a sha
    ("sha-{digest12}", False),  # docker/metadata-action writes sha-<hex>
    ("Git.{digest}", False),
    ("release-{digest12}", False),
    ("approved-{digest12}-{digest}", False),
])
def test_tag_template_pattern(cfn: dict[str, Any], parameter: str, value: str,
                              accepted: bool) -> None:
    pattern = cfn["Parameters"][parameter]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


def test_tag_template_pattern_reserves_the_words_start_up_reserves(cfn: dict[str, Any]) -> None:
    # One list of reserved words: the deploy-time pattern and MarkerScheme refuse the same
    (pattern,) = {cfn["Parameters"][p]["AllowedPattern"] for p in TAG_TEMPLATES}
    reserved = re.match(r"\^\(\?!\(\?i:([a-z|]+)\)", pattern)
    assert reserved is not None
    assert set(reserved.group(1).split("|")) == RESERVED_WORDS


WORDS = st.from_regex(r"[A-Za-z]{0,8}", fullmatch=True)
TEMPLATE_TEXT = st.from_regex(r"[A-Za-z0-9_./:{}-]{0,8}", fullmatch=True)


@settings(max_examples=300)
@given(word=st.one_of(WORDS, st.sampled_from(sorted(RESERVED_WORDS))),
       separator=st.sampled_from(["-", "_", ".", "", "/"]), middle=TEMPLATE_TEXT,
       placeholder=st.sampled_from(["{digest12}", "{digest}", "{DIGEST}", ""]),
       suffix=TEMPLATE_TEXT)
def test_the_deploy_pattern_accepts_exactly_what_start_up_accepts(
        cfn: dict[str, Any], word: str, separator: str, middle: str, placeholder: str,
        suffix: str) -> None:
    # Given any template text (within the 128-character tag limit the pattern leaves to
    # start-up, with MaxLength as a first bound)
    template = f"{word}{separator}{middle}{placeholder}{suffix}"
    pattern = cfn["Parameters"]["ApprovedTagTemplate"]["AllowedPattern"]
    try:
        MarkerScheme(approved=template)
        started = True
    except ValueError:
        started = False
    # Then CloudFormation refuses at deploy time what the functions would refuse at start-up
    assert bool(re.fullmatch(pattern, template)) is started, template
