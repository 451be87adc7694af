"""gatekeeper_tools.local.stack: the template deployed into moto, and its routes to the handlers."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import boto3
import pytest
import yaml

from gatekeeper.domain.kev import KEV_KEY
from gatekeeper_tools.local.stack import (
    NOT_IN_MOTO,
    Delivery,
    LocalDeployment,
    Route,
    load_sam_template,
    routes,
)
from tests.template.conftest import REGION, ROOT, TEMPLATE
from tests.template.eventbridge import eventbridge_matches

FUNCTIONS = ("OnPushFunction", "OnScanFunction", "OnReevaluateFunction", "SweeperFunction")


def client(name: str) -> Any:
    return boto3.client(name, region_name=REGION)


def load(name: str, bucket: str = "POLICY_BUCKET") -> dict[str, Any]:
    """A recorded event from events/, the S3 one naming ``bucket``."""
    return json.loads((ROOT / "events" / f"{name}.json").read_text().replace("POLICY_BUCKET",
                                                                            bucket))


class Recorder:
    """Stands in for LocalDeployment.invoke: records what deliver(), tick() and drain() would
    run, without running it; a batch record whose body is in ``failing`` is reported failed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []  # (function id, event, source)
        self.failing: set[str] = set()

    def __call__(self, function_id: str, event: dict[str, Any], source: str) -> Delivery:
        self.calls.append((function_id, event, source))
        failed = [{"itemIdentifier": r["messageId"]} for r in event.get("Records", [])
                  if r["body"] in self.failing]
        return Delivery(source, function_id, result={"batchItemFailures": failed})


@pytest.fixture
def recorder(deployment: LocalDeployment, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(deployment, "invoke", recorder)
    return recorder


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


def queue_arn(url: str) -> str:
    return client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_rules_target_their_functions_with_retries_and_the_dead_letter_queue(
        deployment: LocalDeployment) -> None:
    events = client("events")
    dlq_arn = deployment.outputs["DeadLetterQueueArn"]
    wiring, retries = {}, {}
    for rule_id in ("OnPushFunctionEcrImagePush", "OnScanFunctionEcrBasicScan",
                    "OnScanFunctionInspectorScan", "InspectorFindingRule",
                    "SweeperFunctionHourly", "SweeperFunctionPolicyPublished"):
        (target,) = events.list_targets_by_rule(Rule=deployment.physical_ids[rule_id])["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": dlq_arn}
        wiring[rule_id] = target["Arn"]
        retries[rule_id] = target["RetryPolicy"]
    assert wiring == {
        "OnPushFunctionEcrImagePush": deployment.outputs["OnPushFunctionArn"],
        "OnScanFunctionEcrBasicScan": deployment.outputs["OnScanFunctionArn"],
        "OnScanFunctionInspectorScan": deployment.outputs["OnScanFunctionArn"],
        "InspectorFindingRule": queue_arn(deployment.outputs["ReevaluationQueueUrl"]),
        "SweeperFunctionHourly": deployment.outputs["SweeperFunctionArn"],
        "SweeperFunctionPolicyPublished": deployment.outputs["SweeperFunctionArn"],
    }
    hourly = retries.pop("SweeperFunctionHourly")
    assert hourly == {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600}
    assert all(r == {"MaximumRetryAttempts": 24, "MaximumEventAgeInSeconds": 3600}
               for r in retries.values()), retries


def test_the_sweeper_is_scheduled_hourly(deployment: LocalDeployment) -> None:
    rule = client("events").describe_rule(Name=deployment.physical_ids["SweeperFunctionHourly"])
    assert rule["ScheduleExpression"] == "rate(1 hour)"
    assert rule["State"] == "ENABLED"
    assert "EventPattern" not in rule


def test_the_policy_rule_names_the_deployed_policy_object(deployment: LocalDeployment) -> None:
    # Given the sweeper's S3 rule as CloudFormation created it (references resolved)
    rule = client("events").describe_rule(
        Name=deployment.physical_ids["SweeperFunctionPolicyPublished"])
    pattern = json.loads(rule["EventPattern"])

    # Then it names the stack's bucket and the policy key
    assert pattern["detail"] == {"bucket": {"name": [deployment.policy_bucket]},
                                 "object": {"key": ["policy.yaml", KEV_KEY]}}
    # and takes the recorded Object Created event for that bucket, not for another
    assert eventbridge_matches(pattern, load("s3-policy-object-created",
                                             deployment.policy_bucket))
    assert not eventbridge_matches(pattern, load("s3-policy-object-created", "another-bucket"))


def test_reevaluation_queue_is_encrypted_and_redrives_to_the_dead_letter_queue(
        deployment: LocalDeployment) -> None:
    url = deployment.outputs["ReevaluationQueueUrl"]
    assert url == deployment.physical_ids["ReevaluationQueue"]
    attributes = client("sqs").get_queue_attributes(QueueUrl=url,
                                                    AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "420"
    assert attributes["SqsManagedSseEnabled"] == "true"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": deployment.outputs["DeadLetterQueueArn"], "maxReceiveCount": 5}


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_environment_names_the_stack_physical_resources(deployment: LocalDeployment,
                                                        function_id: str) -> None:
    env = deployment.environment(function_id)
    assert env["GATEKEEPER_TABLE"] == deployment.table_name
    assert env["GATEKEEPER_TOPIC_ARN"] == deployment.topic_arn
    assert env["GATEKEEPER_POLICY_BUCKET"] == deployment.policy_bucket
    assert env["GATEKEEPER_POLICY_KEY"] == "policy.yaml"
    assert env["GATEKEEPER_APPROVED_TAG"] == "approved-{digest12}"
    assert env["GATEKEEPER_QUARANTINED_TAG"] == "quarantined-{digest12}"
    assert env["GATEKEEPER_REEVALUATION_QUEUE_URL"] == deployment.outputs["ReevaluationQueueUrl"]
    assert env["GATEKEEPER_SCAN_TIMEOUT_MINUTES"] == "60"
    assert env["GATEKEEPER_HISTORY_RETENTION_DAYS"] == "400"
    assert env["GATEKEEPER_LEASE_SECONDS"] == "90"
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


def test_the_stack_deploys_outside_us_east_1(deployment: LocalDeployment) -> None:
    # Given moto (the module's deployment holds it open); When the stack goes to eu-west-1
    other = LocalDeployment.create(TEMPLATE, region="eu-west-1", stack_name="in-ireland")

    # Then it is there, with its table in that Region
    tables = boto3.client("dynamodb", region_name="eu-west-1").list_tables()["TableNames"]
    assert other.table_name in tables


# --- routes: which handler each rule runs ---------------------------------------------------

def test_routes_follow_codeuri_and_handler(cfn: dict[str, Any]) -> None:
    # Given the transformed template; When its rules are resolved to handlers
    found = {route.rule_id: route for route in routes(cfn, TEMPLATE)}

    # Then each rule runs the handler its function's CodeUri + Handler name (through the queue
    # the rule feeds, for the Inspector finding rule)
    assert {rule: (r.function_id, r.module, r.attribute, r.queue_id)
            for rule, r in found.items()} == {
        "OnPushFunctionEcrImagePush": ("OnPushFunction", "functions.on_push.app", "handler",
                                       None),
        "OnScanFunctionEcrBasicScan": ("OnScanFunction", "functions.on_scan.app", "handler",
                                       None),
        "OnScanFunctionInspectorScan": ("OnScanFunction", "functions.on_scan.app", "handler",
                                        None),
        "InspectorFindingRule": ("OnReevaluateFunction", "functions.on_reevaluate.app",
                                 "handler", "ReevaluationQueue"),
        "SweeperFunctionHourly": ("SweeperFunction", "functions.sweeper.app", "handler", None),
        "SweeperFunctionPolicyPublished": ("SweeperFunction", "functions.sweeper.app",
                                           "handler", None),
        "KevRefreshFunctionDaily": ("KevRefreshFunction", "functions.kev_refresh.app",
                                    "handler", None),
    }
    assert all(isinstance(r, Route) and r.pattern == cfn["Resources"][r.rule_id]["Properties"].get(
        "EventPattern") for r in found.values())


def test_routes_take_findings_through_the_queue_and_the_schedule_without_a_pattern(
        cfn: dict[str, Any]) -> None:
    found = {route.rule_id: route for route in routes(cfn, TEMPLATE)}

    # The Inspector finding rule feeds ReevaluationQueue, which OnReevaluateFunction consumes
    finding = found["InspectorFindingRule"]
    assert (finding.function_id, finding.queue_id) == ("OnReevaluateFunction",
                                                       "ReevaluationQueue")
    assert finding.pattern == cfn["Resources"]["InspectorFindingRule"]["Properties"][
        "EventPattern"]
    # and the hourly schedule runs the sweeper with no pattern (tick() fires it)
    hourly = found["SweeperFunctionHourly"]
    assert (hourly.function_id, hourly.pattern, hourly.queue_id) == ("SweeperFunction", None,
                                                                     None)
    # and only those: no other rule is a schedule or feeds a queue
    assert [r.rule_id for r in found.values() if r.pattern is None] == [
        "SweeperFunctionHourly", "KevRefreshFunctionDaily"]
    assert [r.rule_id for r in found.values() if r.queue_id] == ["InspectorFindingRule"]


@pytest.mark.parametrize("rule_id", [
    "OnPushFunctionEcrImagePush", "OnScanFunctionEcrBasicScan", "OnScanFunctionInspectorScan",
    "InspectorFindingRule",
    "SweeperFunctionPolicyPublished",
])
def test_each_route_matches_as_its_deployed_rule(deployment: LocalDeployment,
                                                 rule_id: str) -> None:
    # Given the pattern deliver() uses and the one CloudFormation gave the rule
    (route,) = [r for r in deployment.routes if r.rule_id == rule_id]
    rule = client("events").describe_rule(Name=deployment.physical_ids[rule_id])

    # Then they are the same
    assert route.pattern == json.loads(rule["EventPattern"])


def test_deliver_hands_findings_to_the_reevaluate_function_as_one_batch(
        deployment: LocalDeployment, recorder: Recorder) -> None:
    # Given two Inspector findings and a push, delivered together
    first, second = load("inspector2-finding"), load("inspector2-finding")
    second["id"] = "another-finding-event"
    push = load("ecr-image-push")

    # When they are delivered
    deliveries = deployment.deliver(first, second, push)

    # Then the push reaches OnPushFunction, and the findings OnReevaluateFunction as one SQS
    # batch (they went through the re-evaluation queue), in order
    calls = {(function_id, source): event for function_id, event, source in recorder.calls}
    assert set(calls) == {("OnPushFunction", "OnPushFunctionEcrImagePush"),
                          ("OnReevaluateFunction", "InspectorFindingRule")}
    assert calls["OnPushFunction", "OnPushFunctionEcrImagePush"] == push
    batch = calls["OnReevaluateFunction", "InspectorFindingRule"]
    assert [json.loads(r["body"]) for r in batch["Records"]] == [first, second]
    assert {r["eventSource"] for r in batch["Records"]} == {"aws:sqs"}
    assert len(deliveries) == 2


def test_deliver_runs_the_sweeper_for_the_policy_object(deployment: LocalDeployment,
                                                        recorder: Recorder) -> None:
    event = load("s3-policy-object-created", deployment.policy_bucket)
    deployment.deliver(event)
    assert recorder.calls == [("SweeperFunction", event, "SweeperFunctionPolicyPublished")]


@pytest.mark.parametrize(("bucket", "key"), [("another-bucket", "policy.yaml"),
                                             (None, "notes.txt")])
def test_deliver_ignores_other_objects(deployment: LocalDeployment, recorder: Recorder,
                                       bucket: str | None, key: str) -> None:
    # Given an Object Created event for another bucket, or another key of the policy bucket
    event = load("s3-policy-object-created", bucket or deployment.policy_bucket)
    event["detail"]["object"]["key"] = key

    # When it is delivered; Then nothing runs (EventBridge would not match the rule)
    deployment.deliver(event)
    assert recorder.calls == []


def test_deliver_runs_nothing_for_a_scheduled_event(deployment: LocalDeployment,
                                                    recorder: Recorder) -> None:
    # A schedule's event is not for any pattern: only tick() fires schedules
    assert deployment.deliver(load("scheduled-event")) == []
    assert recorder.calls == []


def test_tick_fires_the_hourly_sweep_once(deployment: LocalDeployment,
                                          recorder: Recorder) -> None:
    # When the schedules fire
    deployment.tick()

    # Then the sweeper runs once, from its schedule, with an event shaped like the recorded one
    ((function_id, event, source),) = recorder.calls
    assert (function_id, source) == ("SweeperFunction", "SweeperFunctionHourly")
    recorded = load("scheduled-event")
    assert set(event) == set(recorded)
    assert (event["source"], event["detail-type"], event["detail"]) == (
        recorded["source"], recorded["detail-type"], recorded["detail"])


def test_drain_hands_the_queue_to_its_consumer_and_keeps_the_failed(
        deployment: LocalDeployment, recorder: Recorder) -> None:
    # Given two messages on the re-evaluation queue, the consumer failing the second
    sqs, url = client("sqs"), deployment.physical_ids["ReevaluationQueue"]
    for body in ("ok", "fails"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    recorder.failing = {"fails"}

    try:
        # When the queue is drained
        deliveries = deployment.drain("ReevaluationQueue")

        # Then OnReevaluateFunction got both in one batch, from the queue
        ((function_id, batch, source),) = recorder.calls
        assert (function_id, source) == ("OnReevaluateFunction", "ReevaluationQueue")
        assert sorted(r["body"] for r in batch["Records"]) == ["fails", "ok"]
        assert len(deliveries) == 1
        # and only the failed message is left (in flight until its visibility timeout)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        assert attributes["Attributes"] == {"ApproximateNumberOfMessages": "0",
                                            "ApproximateNumberOfMessagesNotVisible": "1"}
    finally:
        sqs.purge_queue(QueueUrl=url)


def test_drain_of_an_empty_queue_runs_nothing(deployment: LocalDeployment,
                                              recorder: Recorder) -> None:
    assert deployment.drain("ReevaluationQueue") == []
    assert recorder.calls == []


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


def test_the_stacks_roles_fall_under_the_table_policys_writers_and_nobody_else(
        deployment: LocalDeployment) -> None:
    # Given the deployed roles (moto keeps their path; it does not enforce resource policies)
    # and the principal pattern the verdict table's resource policy lets write
    cfn = deployment.cfn
    (statement,) = (cfn["Resources"]["VerdictTable"]["Properties"]["ResourcePolicy"]
                    ["PolicyDocument"]["Statement"])
    (stack_roles,) = statement["Condition"]["ArnNotLike"]["aws:PrincipalArn"]["Fn::If"][2]
    pattern = (stack_roles["Fn::Sub"]
               .replace("${AWS::Partition}", "aws")
               .replace("${AWS::AccountId}", "123456789012")
               .replace("${AWS::StackName}", deployment.stack_name))
    iam = client("iam")
    roles = [iam.get_role(RoleName=deployment.physical_ids[f"{f}Role"])["Role"]["Arn"]
             for f in FUNCTIONS]
    # Then every function's role ARN (which is aws:PrincipalArn for its sessions) matches it
    assert all(fnmatch.fnmatchcase(arn, pattern) for arn in roles), (pattern, roles)
    # and a role of the account outside the path, or another stack's, does not
    for other in ("arn:aws:iam::123456789012:role/admin",
                  "arn:aws:iam::123456789012:role/ecr-scan-gatekeeper/admin",
                  f"arn:aws:iam::123456789012:role/ecr-scan-gatekeeper/{deployment.stack_name}"
                  "-dev/x",
                  f"arn:aws:iam::210987654321:role/ecr-scan-gatekeeper/{deployment.stack_name}"
                  "/x"):
        assert not fnmatch.fnmatchcase(other, pattern), other
