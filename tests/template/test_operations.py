"""Operating the gatekeeper: the operator topic, the alarms, the dashboard and log retention,
asserted over every function of the template (present and future), and the dashboard's
signals checked against what the handlers really emit."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from gatekeeper import handling, runtime
from gatekeeper.domain.events import Trigger
from gatekeeper.observability import SERVICE, logger
from gatekeeper_tools.local.ecr import push_image
from gatekeeper_tools.local.stack import NOT_IN_MOTO, LocalDeployment
from tests.support import load_event
from tests.template.test_template import of_type

NAMESPACE = "EcrScanGatekeeper"
VERDICT_METRICS = set(handling._VERDICT_METRICS.values())
OPERATOR_TOPIC = {"Ref": "OperatorTopic"}
PSEUDO_PARAMETERS = {"AWS::AccountId", "AWS::Region", "AWS::StackName", "AWS::Partition",
                     "AWS::URLSuffix"}


NO_VALUE = {"Ref": "AWS::NoValue"}


def resolved(value: Any, given: bool) -> Any:
    """``value`` with every Fn::If decided (``given``: every condition true) and AWS::NoValue
    dropped. Each condition of the template means "this option was given"."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            _, when_true, when_false = value["Fn::If"]
            return resolved(when_true if given else when_false, given)
        items = {k: resolved(v, given) for k, v in value.items()}
        return {k: v for k, v in items.items() if v != NO_VALUE}
    if isinstance(value, list):
        return [v for v in (resolved(item, given) for item in value) if v != NO_VALUE]
    return value


@pytest.fixture(params=[True, False], ids=["every-option", "no-option"])
def deployed(cfn: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """The transformed template as CloudFormation deploys it with every optional parameter
    given (the Slack notifier, e-mail subscriptions...), or none: conditions decided."""
    given = request.param
    resources = {k: r for k, r in cfn["Resources"].items() if given or "Condition" not in r}
    return resolved({**cfn, "Resources": resources}, given)


def functions(cfn: dict[str, Any]) -> set[str]:
    return set(of_type(cfn, "AWS::Lambda::Function"))


def emitted_metrics() -> set[str]:
    """Every metric name the handlers can emit (handling.py is the one place that counts)."""
    source = Path(handling.__file__).read_text(encoding="utf-8")
    literal = set(re.findall(r'_count\("(\w+)"\)', source))
    literal |= set(re.findall(r'add_metric\(name="(\w+)"', source))
    return literal | set(handling._RESULT_METRICS.values()) | VERDICT_METRICS


# --- the operator topic ---------------------------------------------------------------------

def test_the_operator_topic_is_encrypted_with_the_stack_key(cfn: dict[str, Any]) -> None:
    topic = cfn["Resources"]["OperatorTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["OperatorTopicKey", "Arn"]}
    key = cfn["Resources"]["OperatorTopicKey"]
    assert key["Type"] == "AWS::KMS::Key"


def test_operator_email_subscription_only_with_an_address(cfn: dict[str, Any]) -> None:
    subscription = cfn["Resources"]["OperatorEmailSubscription"]
    assert subscription["Condition"] == "HasOperatorEmail"
    assert subscription["Properties"] == {"TopicArn": OPERATOR_TOPIC, "Protocol": "email",
                                          "Endpoint": {"Ref": "OperatorEmail"}}
    assert cfn["Conditions"]["HasOperatorEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "OperatorEmail"}, ""]}]}
    pattern = cfn["Parameters"]["OperatorEmail"]["AllowedPattern"]
    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, "oncall@example.com")
    assert not re.fullmatch(pattern, "oncall")


def test_outputs_name_the_operator_topic_and_the_dashboard(cfn: dict[str, Any]) -> None:
    outputs = cfn["Outputs"]
    assert outputs["OperatorTopicArn"]["Value"] == OPERATOR_TOPIC
    assert outputs["OperationsDashboardName"]["Value"] == {"Ref": "OperationsDashboard"}
    url = outputs["OperationsDashboardUrl"]["Value"]["Fn::Sub"]
    assert url.startswith("https://${AWS::Region}.console.aws.amazon.com/cloudwatch/")
    assert url.endswith("#dashboards/dashboard/${OperationsDashboard}")


# --- alarms ---------------------------------------------------------------------------------

def alarms(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in of_type(cfn, "AWS::CloudWatch::Alarm").items()}


def watched(alarm: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(namespace, metric, dimensions) of every metric the alarm's result depends on."""
    if "MetricName" in alarm:
        yield alarm["Namespace"], alarm["MetricName"], alarm.get("Dimensions", [])
        return
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    (result,) = [q for q in queries.values() if q.get("ReturnData", True)]
    used = set(re.findall(r"[a-z][A-Za-z0-9_]*", result.get("Expression", ""))) | {result["Id"]}
    for query_id in used & set(queries):
        stat = queries[query_id].get("MetricStat")
        if stat:
            metric = stat["Metric"]
            yield metric["Namespace"], metric["MetricName"], metric.get("Dimensions", [])


def alarmed(cfn: dict[str, Any], namespace: str, metric: str) -> set[str]:
    """The resources whose ``metric`` some alarm watches (by the Ref/GetAtt of a dimension)."""
    found = set()
    for alarm in alarms(cfn).values():
        for space, name, dimensions in watched(alarm):
            if (space, name) == (namespace, metric):
                for dimension in dimensions:
                    value = dimension["Value"]
                    found.add(value.get("Ref") or value.get("Fn::GetAtt", [None])[0])
    return found


def test_every_alarm_notifies_the_operator_topic_both_ways(deployed: dict[str, Any]) -> None:
    assert alarms(deployed)
    for logical_id, alarm in alarms(deployed).items():
        assert alarm["AlarmActions"] == [OPERATOR_TOPIC], logical_id
        assert alarm["OKActions"] == [OPERATOR_TOPIC], logical_id
        assert alarm["TreatMissingData"] == "notBreaching", logical_id
        assert len(alarm["AlarmDescription"].split()) >= 10, logical_id
        # anything at all: one message in the DLQ, one error, one throttle
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (
            "GreaterThanThreshold", 0), logical_id
        assert alarm["EvaluationPeriods"] == 1, logical_id


def test_the_dead_letter_queue_depth_alarms(cfn: dict[str, Any]) -> None:
    alarm = cfn["Resources"]["DeadLetterQueueAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"] == [{"Name": "QueueName",
                                    "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert (alarm["Statistic"], alarm["Period"]) == ("Maximum", 300)


def test_every_queue_that_takes_dead_letters_has_a_depth_alarm(deployed: dict[str, Any]) -> None:
    # A queue some redrive policy, rule or OnFailure destination dead-letters into
    text = json.dumps(deployed["Resources"])
    dead_letter_queues = {q for q in of_type(deployed, "AWS::SQS::Queue")
                          if f'"deadLetterTargetArn": {{"Fn::GetAtt": ["{q}", "Arn"]}}' in text
                          or f'"DeadLetterConfig": {{"Arn": {{"Fn::GetAtt": ["{q}", "Arn"]}}}}'
                          in text}
    assert dead_letter_queues == {"DeadLetterQueue"}
    assert alarmed(deployed, "AWS/SQS", "ApproximateNumberOfMessagesVisible") >= (
        dead_letter_queues)


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_errors_and_throttles_alarm(deployed: dict[str, Any],
                                                   metric: str) -> None:
    # Every function of the stack, including any added later or only with an option, is in
    # the alarm's math
    missing = functions(deployed) - alarmed(deployed, "AWS/Lambda", metric)
    assert not missing, (f"no alarm watches {metric} of {sorted(missing)}: add it to "
                         f"Handler{metric}Alarm (and to the dashboard)")


def test_alarm_math_sums_every_metric_it_reads(deployed: dict[str, Any]) -> None:
    for logical_id, alarm in alarms(deployed).items():
        if "Metrics" not in alarm:
            continue
        queries = {q["Id"]: q for q in alarm["Metrics"]}
        (result,) = [q for q in queries.values() if q["ReturnData"]]
        inputs = {i for i, q in queries.items() if "MetricStat" in q}
        ordered = [i for i in queries if i in inputs]
        assert result["Expression"] == f"SUM([{', '.join(ordered)}])", logical_id
        assert all(not queries[i]["ReturnData"] for i in inputs), logical_id
        assert {q["MetricStat"]["Stat"] for q in queries.values() if "MetricStat" in q} == {
            "Sum"}, logical_id


# --- the dashboard --------------------------------------------------------------------------

@pytest.fixture
def dashboard(deployed: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body as deployed: its Fn::Sub variables put in, then each remaining
    ${Name} replaced by <Name> (so that it parses as JSON)."""
    sub = deployed["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body, variables = (sub, {}) if isinstance(sub, str) else sub
    for name, value in variables.items():
        text = value["Fn::Sub"] if isinstance(value, dict) else value
        assert isinstance(text, str), name
        body = body.replace(f"${{{name}}}", text)
    names = set(re.findall(r"\$\{([^}]+)\}", body))
    known = set(deployed["Resources"]) | set(deployed["Parameters"]) | PSEUDO_PARAMETERS
    assert {n.split(".", 1)[0] for n in names} <= known, names - known
    return json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", body))


def widget_metrics(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, str]]]:
    for widget in dashboard["widgets"]:
        for line in widget["properties"].get("metrics", []):
            fields = [f for f in line if not isinstance(f, dict)]
            namespace, name, *pairs = fields
            yield namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True))


def titled(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    (widget,) = [w for w in dashboard["widgets"] if w["properties"].get("title") == title]
    return widget["properties"]


def test_dashboard_widgets_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for widget in dashboard["widgets"]:
        assert {"type", "x", "y", "width", "height", "properties"} <= set(widget)
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24, widget
        mine = {(x, y) for x in range(widget["x"], widget["x"] + widget["width"])
                for y in range(widget["y"], widget["y"] + widget["height"])}
        assert not cells & mine, widget["properties"].get("title")
        cells |= mine
        if widget["type"] in ("metric", "log"):
            assert widget["properties"]["region"] == "<AWS::Region>"


def test_dashboard_charts_verdicts_by_outcome(dashboard: dict[str, Any]) -> None:
    verdicts = titled(dashboard, "Verdicts by outcome")
    charted = {name for space, name, dims in widget_metrics({"widgets": [
        {"properties": verdicts}]}) if space == NAMESPACE and dims == {"service": SERVICE}}
    assert charted == VERDICT_METRICS == {"ImagesApproved", "ImagesApprovedWithWarnings",
                                          "ImagesQuarantined"}
    assert (verdicts["stat"], verdicts["stacked"]) == ("Sum", True)
    quarantined = titled(dashboard, "Quarantined images (time range)")
    assert quarantined["metrics"][0][:4] == [NAMESPACE, "ImagesQuarantined", "service", SERVICE]


def test_dashboard_charts_only_metrics_the_handlers_emit(dashboard: dict[str, Any]) -> None:
    # Powertools: namespace EcrScanGatekeeper, the one dimension service=ecr-scan-gatekeeper
    ours = [(name, dims) for space, name, dims in widget_metrics(dashboard)
            if space == NAMESPACE]
    assert ours
    assert all(dims == {"service": SERVICE} for _, dims in ours), ours
    assert {name for name, _ in ours} <= emitted_metrics()
    assert {"SweepReevaluationsQueued", "EventsFailed"} <= {name for name, _ in ours}


def test_dashboard_charts_the_dead_letter_queue_depth(dashboard: dict[str, Any]) -> None:
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible",
            {"QueueName": "<DeadLetterQueue.QueueName>"}) in list(widget_metrics(dashboard))


@pytest.mark.parametrize("metric", ["Errors", "Throttles", "Duration"])
def test_dashboard_charts_every_function(deployed: dict[str, Any], dashboard: dict[str, Any],
                                         metric: str) -> None:
    charted = {dims["FunctionName"] for space, name, dims in widget_metrics(dashboard)
               if (space, name) == ("AWS/Lambda", metric)}
    assert charted == {f"<{function_id}>" for function_id in functions(deployed)}


def test_dashboard_shows_every_alarm(deployed: dict[str, Any],
                                     dashboard: dict[str, Any]) -> None:
    (widget,) = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    assert set(widget["properties"]["alarms"]) == {f"<{a}.Arn>" for a in alarms(deployed)}


def test_dashboard_counts_scan_timeouts_from_the_reevaluation_log(
        dashboard: dict[str, Any]) -> None:
    # No metric counts scan timeouts by themselves (SweepReevaluationsQueued adds expiries):
    # the OnReevaluateFunction log line of each re-evaluation names its trigger
    (widget,) = [w for w in dashboard["widgets"] if w["type"] == "log"]
    query = widget["properties"]["query"]
    assert query.startswith("SOURCE '<OnReevaluateFunctionLogGroup>' | ")
    assert f"trigger = '{Trigger.SCAN_TIMEOUT}'" in query
    assert "message = 're-evaluated'" in query


def test_dashboard_name_carries_the_region(cfn: dict[str, Any]) -> None:
    # Dashboards are global to the account: two regions' stacks of one name must not collide
    properties = cfn["Resources"]["OperationsDashboard"]["Properties"]
    assert properties["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-${AWS::Region}"}


# --- logs -----------------------------------------------------------------------------------

def test_every_function_has_a_log_group_with_a_retention(cfn: dict[str, Any]) -> None:
    groups = of_type(cfn, "AWS::Logs::LogGroup")
    by_name = {json.dumps(g["Properties"]["LogGroupName"], sort_keys=True): (k, g)
               for k, g in groups.items()}
    for function_id, function in of_type(cfn, "AWS::Lambda::Function").items():
        # the group Lambda writes to: /aws/lambda/<name>, or the one LoggingConfig names
        custom = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
        if isinstance(custom, dict) and custom.get("Ref") in groups:
            group = groups[custom["Ref"]]
        else:
            name = json.dumps({"Fn::Sub": f"/aws/lambda/${{{function_id}}}"}, sort_keys=True)
            assert name in by_name, f"{function_id} has no log group in the template"
            group = by_name[name][1]
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
        assert group["DeletionPolicy"] == "Delete", function_id
        # and it exists exactly when its function does
        assert group.get("Condition") == function.get("Condition"), function_id


# --- the local deployment ---------------------------------------------------------------------

def test_local_stack_has_the_operator_topic_and_leaves_out_what_moto_cannot_create(
        deployment: LocalDeployment, cfn: dict[str, Any]) -> None:
    # moto's CloudFormation creates no alarm, and the dashboard names the alarms
    assert {"AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard"} <= NOT_IN_MOTO
    topic = deployment.outputs["OperatorTopicArn"]
    assert boto3.client("sns", region_name=deployment.region).get_topic_attributes(
        TopicArn=topic)["Attributes"]["TopicArn"] == topic
    # and only the outputs naming the dashboard are missing (and those of options not given)
    optional = {name for name, output in cfn["Outputs"].items() if "Condition" in output}
    assert set(cfn["Outputs"]) - set(deployment.outputs) - optional == {
        "OperationsDashboardName", "OperationsDashboardUrl"}


# --- the signals the dashboard reads are the ones the handlers write -------------------------

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    """The handlers' clock, settable; their clients built afresh for this module's stack."""
    clock = [T0]
    monkeypatch.setattr(runtime, "now", lambda: clock[0])
    runtime.gatekeeper.cache_clear()
    runtime.sweeper.cache_clear()
    yield clock
    runtime.gatekeeper.cache_clear()
    runtime.sweeper.cache_clear()


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(line))
    return [line for line in lines if isinstance(line, dict)]


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """What the Powertools logger writes (as Lambda sends it to CloudWatch Logs)."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_a_scan_timeout_writes_what_the_dashboard_reads(
        deployment: LocalDeployment, clock: list[datetime], log_stream: io.StringIO,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given an image pushed where scans run on push, whose scan never arrives
    ecr = boto3.client("ecr", region_name=deployment.region)
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[
        {"scanFrequency": "SCAN_ON_PUSH",
         "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}])
    ecr.create_repository(repositoryName="team-a/web")
    digest = push_image(ecr, "team-a/web", "v1", seed="team-a/web:v1")
    deployment.deliver(load_event("ecr-image-push", repository_name="team-a/web",
                                  image_digest=digest, image_tag="v1"))
    capsys.readouterr()

    # When the hourly sweep runs past the scan timeout and the queue is drained
    clock[0] = T0 + timedelta(minutes=61)
    [sweep] = deployment.tick()
    [judged] = deployment.drain()
    assert sweep.result["count"] == 1 and judged.ok

    # Then the log line the Scan timeouts widget counts was written, once
    logs = json_lines(log_stream.getvalue())
    assert len([line for line in logs if line.get("message") == "re-evaluated"
                and line.get("trigger") == "scan-timeout"]) == 1
    # and the metrics charted (EMF) carry the namespace and the one dimension the dashboard
    # names: service=ecr-scan-gatekeeper
    emf = [line for line in json_lines(capsys.readouterr().out) if "_aws" in line]
    documents = [d for line in emf for d in line["_aws"]["CloudWatchMetrics"]]
    names = {m["Name"] for d in documents for m in d["Metrics"]}
    assert {"SweepReevaluationsQueued", "ImagesQuarantined", "ScanTimeouts"} <= names
    assert all(d["Namespace"] == NAMESPACE and d["Dimensions"] == [["service"]]
               for d in documents)
    assert all(line["service"] == SERVICE for line in emf)
