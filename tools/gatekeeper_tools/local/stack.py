"""template.yaml deployed into moto, and events delivered through its EventBridge rules.

The local stand-in for a deployment, shared by the demo and the tests (it needs the dev
extras: moto and aws-sam-translator; it is never imported in Lambda). Inside an active
``moto.mock_aws()``:

    deployment = LocalDeployment.create("template.yaml")
    deployment.deliver(event)   # every rule whose pattern matches runs its handler in-process

The template goes through the SAM translator offline and the plain CloudFormation result is
created by moto's CloudFormation, so the table, topic, bucket, queues, roles and rules are the
ones the template declares, with moto's physical names. moto cannot run Lambda code without
Docker: handlers run in this process, imported from the repository (CodeUri + Handler), with
the environment moto resolved for the function.
"""

from __future__ import annotations

import functools
import importlib
import io
import json
import os
import re
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import yaml
from botocore.exceptions import ClientError

STACK_NAME = "ecr-scan-gatekeeper"
# Local CodeUri/ContentUri folders become s3://ARTIFACTS_BUCKET/<folder> before the transform
# (the translator accepts only S3 locations, as `sam package` would produce). In moto that
# bucket holds a placeholder zip per folder: moto needs an object to create a function or a
# layer, and never runs it.
ARTIFACTS_BUCKET = "local-sam-artifacts"
# Resource types moto's CloudFormation cannot create (it warns and skips them). They are left
# out of the local stack; the tests assert them on the transformed template instead.
NOT_IN_MOTO = frozenset({
    "AWS::Lambda::EventInvokeConfig",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy",
    "AWS::CloudWatch::Alarm",
    # moto creates dashboards, but this one names the alarms, which it cannot create.
    "AWS::CloudWatch::Dashboard",
    # moto would poll the queue itself and try to run the function in Docker; here the
    # consumer runs in-process through LocalDeployment.drain() instead.
    "AWS::Lambda::EventSourceMapping",
})


# --- the template ---------------------------------------------------------------------------

def _names_any(value: Any, logical_ids: set[str]) -> bool:
    """Whether ``value`` refers to one of ``logical_ids`` (Ref, Fn::GetAtt or Fn::Sub)."""
    if isinstance(value, dict):
        if value.get("Ref") in logical_ids:
            return True
        get_att = value.get("Fn::GetAtt")
        if isinstance(get_att, list) and get_att and get_att[0] in logical_ids:
            return True
        sub = value.get("Fn::Sub")
        text = sub[0] if isinstance(sub, list) and sub else sub
        if isinstance(text, str) and any(
                name.split(".", 1)[0] in logical_ids
                for name in re.findall(r"\$\{([^!}][^}]*)\}", text)):
            return True
        return any(_names_any(item, logical_ids) for item in value.values())
    if isinstance(value, list):
        return any(_names_any(item, logical_ids) for item in value)
    return False


def _for_moto(resource: dict[str, Any]) -> dict[str, Any]:
    """Without S3's EventBridge notifications: moto would route them to Lambda targets it
    can only run in Docker. LocalDeployment.deliver() plays those events instead."""
    if resource["Type"] != "AWS::S3::Bucket":
        return resource
    properties = {k: v for k, v in resource.get("Properties", {}).items()
                  if k != "NotificationConfiguration"}
    return {**resource, "Properties": properties}


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short tags (!Ref, !GetAtt, !Sub...) in long form.

    A subclass, so that yaml.safe_load elsewhere in the process keeps rejecting unknown tags.
    """


def _intrinsic(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_sam_template(path: str | Path = "template.yaml") -> dict[str, Any]:
    """The SAM template as written, intrinsics in long form ({"Ref": ...})."""
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506


def _local_folder(uri: Any) -> str | None:
    if isinstance(uri, str) and not uri.startswith("s3://"):
        return str(PurePosixPath(uri))  # "functions/on_push/" -> "functions/on_push"
    return None


def _code_settings(template: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    """A function's properties with Globals.Function under them, as SAM merges them."""
    merged = dict(template.get("Globals", {}).get("Function", {}))
    merged.update(resource.get("Properties", {}))
    return merged


@functools.cache
def _transformed_json(path: Path, region: str, mtime_ns: int) -> str:  # mtime: cache key
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = load_sam_template(path)
    sections = [r.get("Properties", {}) for r in template.get("Resources", {}).values()]
    sections.append(template.get("Globals", {}).get("Function", {}))
    for properties in sections:
        for key in ("CodeUri", "ContentUri"):
            folder = _local_folder(properties.get(key))
            if folder:
                properties[key] = f"s3://{ARTIFACTS_BUCKET}/{folder}"
    defaults = {name: spec["Default"] for name, spec in template.get("Parameters", {}).items()
                if "Default" in spec}
    # A session with an explicit region: the translator needs one for pseudo parameters, and
    # must not depend on the caller's environment. get_managed_policy_map returns {}: naming
    # a managed policy in Policies: would otherwise make the translator call IAM.
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    cfn = translator.translate(template, parameter_values=defaults,
                               get_managed_policy_map=lambda: {})
    return json.dumps(cfn)


def transform_template(path: str | Path = "template.yaml",
                       region: str = "us-east-1") -> dict[str, Any]:
    """The SAM template turned into plain CloudFormation, offline (cached per file version)."""
    resolved = Path(path).resolve()
    return json.loads(_transformed_json(resolved, region, resolved.stat().st_mtime_ns))


# Parameters a local deployment sets unless told otherwise: no daily KEV download from the
# internet (seed kev/known_exploited_vulnerabilities.json in the policy bucket instead).
LOCAL_DEFAULTS = {"KevCatalogUrl": ""}


# --- routes: which rule invokes which handler -----------------------------------------------

@dataclass(frozen=True)
class Route:
    rule_id: str
    pattern: dict[str, Any] | None  # None for a schedule
    function_id: str
    module: str  # "functions.on_push.app"
    attribute: str  # "handler"
    queue_id: str | None = None  # set when the rule feeds a queue the function consumes
    bus: str | None = None  # logical id of the rule's event bus; None: the default bus


def _handler_path(code_uri: str, handler: str) -> tuple[str, str]:
    module, _, attribute = handler.rpartition(".")
    parts = [*PurePosixPath(code_uri).parts, *module.replace("/", ".").split(".")]
    return ".".join(p for p in parts if p not in ("", ".")), attribute


def _consumers(cfn: dict[str, Any]) -> dict[str, str]:
    """Queue logical id -> the function it feeds (the SQS event source mappings)."""
    consumers = {}
    for resource in cfn["Resources"].values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            source = resource["Properties"]["EventSourceArn"]
            if isinstance(source, dict) and "Fn::GetAtt" in source:
                consumers[source["Fn::GetAtt"][0]] = resource["Properties"]["FunctionName"]["Ref"]
    return consumers


def _rule_bus(rule: dict[str, Any]) -> str | None:
    """The logical id of the template's bus a rule is on (None: the default bus)."""
    bus = rule["Properties"].get("EventBusName")  # {"Fn::GetAtt": [bus, "Name"]} or {"Ref"}
    if isinstance(bus, dict):
        return bus["Fn::GetAtt"][0] if "Fn::GetAtt" in bus else bus.get("Ref")
    return None


def routes(cfn: dict[str, Any], template_path: str | Path = "template.yaml",
           bus: str | None = None) -> list[Route]:
    """One Route per (EventBridge rule, Lambda target) of the transformed template ``cfn``,
    for the rules on ``bus`` (None: the default bus; else an AWS::Events::EventBus's id).

    The handler's import path comes from the SAM template (CodeUri + Handler, relative to the
    repository root): the transformed template's Code only names an S3 object.
    """
    sam = load_sam_template(template_path)
    consumers = _consumers(cfn)
    found = []
    for rule_id, rule in cfn["Resources"].items():
        if rule["Type"] != "AWS::Events::Rule" or _rule_bus(rule) != bus:
            continue
        for target in rule["Properties"].get("Targets", []):
            arn = target["Arn"]
            target_id = arn.get("Fn::GetAtt", [None])[0] if isinstance(arn, dict) else None
            queue_id = target_id if target_id in consumers else None
            function_id = consumers.get(target_id, target_id)
            source = sam["Resources"].get(function_id, {})
            if source.get("Type") != "AWS::Serverless::Function":
                continue
            settings = _code_settings(sam, source)
            module, attribute = _handler_path(settings["CodeUri"], settings["Handler"])
            found.append(Route(rule_id, rule["Properties"].get("EventPattern"), function_id,
                               module, attribute, queue_id, bus))
    return found


def _resolve(value: Any, refs: dict[str, str]) -> Any:
    """``value`` with every {"Ref": name} replaced by its value; unknown names stay."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in refs:
            return refs[value["Ref"]]
        return {key: _resolve(item, refs) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, refs) for item in value]
    return value


def sqs_batch(bodies: list[str]) -> dict[str, Any]:
    """The event Lambda's SQS poller passes a function for a batch of message bodies."""
    return {"Records": [{"messageId": str(uuid.uuid4()), "body": body,
                         "eventSource": "aws:sqs"} for body in bodies]}


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge pattern matching, by moto's implementation of it."""
    from moto.events.models import EventPattern

    return EventPattern.load(json.dumps(pattern)).matches_event(event)


# --- the deployment -------------------------------------------------------------------------

@dataclass(frozen=True)
class LambdaContext:
    """What Lambda passes as ``context`` (the fields Powertools reads, and the timer)."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    timeout_seconds: int = 60

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_seconds * 1000


@dataclass
class Delivery:
    """One rule's invocation of its function: the handler's return value or its exception."""

    rule_id: str
    function_id: str
    result: Any = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "placeholder: handlers run in-process, not in moto\n")
    return buffer.getvalue()


class LocalDeployment:
    """The template's stack in moto; call :meth:`create` inside an active ``mock_aws()``."""

    def __init__(self, cfn: dict[str, Any], routes: list[Route], stack_name: str,
                 session: boto3.session.Session) -> None:
        self.cfn = cfn
        self.routes = routes
        self.stack_name = stack_name
        self.region = str(session.region_name)
        self._session = session
        cloudformation = session.client("cloudformation")
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        # moto resolves Ref of a layer version to the object's repr: GatekeeperLayerArn is
        # not meaningful here.
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        self.physical_ids = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
            if "LogicalResourceId" in r and "PhysicalResourceId" in r
        }
        # Patterns name stack resources and parameters ({"Ref": "PolicyBucket"}): resolve
        # them, or moto's matcher would take the unknown filter as "match anything". Rules
        # whose condition left them out of the stack (the hub's, without OrganizationId)
        # route nothing.
        values = {**{name: str(spec["Default"]) for name, spec in
                     cfn.get("Parameters", {}).items() if "Default" in spec},
                  **self.physical_ids}
        # a rule left out by its condition (an option not given) routes nothing
        self.routes = [replace(route, pattern=_resolve(route.pattern, values))
                       for route in routes if route.rule_id in self.physical_ids]

    @classmethod
    def create(cls, template_path: str | Path = "template.yaml", region: str = "us-east-1",
               stack_name: str = STACK_NAME,
               parameters: dict[str, str] | None = None) -> LocalDeployment:
        """``parameters``: stack parameter values (the others keep their defaults)."""
        session = boto3.session.Session(region_name=region)
        cfn = transform_template(template_path, region)
        left_out = {logical_id for logical_id, resource in cfn["Resources"].items()
                    if resource["Type"] in NOT_IN_MOTO}
        local = {**cfn, "Resources": {logical_id: _for_moto(resource)
                                      for logical_id, resource in cfn["Resources"].items()
                                      if logical_id not in left_out},
                 # an output naming a resource left out (the dashboard's) is left out too
                 "Outputs": {name: output for name, output in cfn.get("Outputs", {}).items()
                             if not _names_any(output, left_out)}}
        s3 = session.client("s3")
        try:
            # outside us-east-1, S3 wants the bucket's Region said
            s3.create_bucket(Bucket=ARTIFACTS_BUCKET, **({} if region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": region}}))
        except ClientError as err:
            if err.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                raise
        for resource in local["Resources"].values():
            location = resource["Properties"].get("Code") or resource["Properties"].get("Content")
            if isinstance(location, dict) and location.get("S3Bucket") == ARTIFACTS_BUCKET:
                s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=location["S3Key"],
                              Body=_placeholder_zip())
        cloudformation = session.client("cloudformation")
        cloudformation.create_stack(StackName=stack_name, TemplateBody=json.dumps(local),
                                    Capabilities=["CAPABILITY_IAM"],
                                    Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                                for k, v in {**LOCAL_DEFAULTS,
                                                             **(parameters or {})}.items()])
        status = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
        if status != "CREATE_COMPLETE":
            raise RuntimeError(f"stack {stack_name} ended {status} in moto")
        buses = [None, *(k for k, r in cfn["Resources"].items()
                         if r["Type"] == "AWS::Events::EventBus")]
        deployment = cls(cfn, [route for bus in buses for route in routes(cfn, template_path, bus)],
                         stack_name, session)
        deployment._complete_buckets(local)
        deployment._complete_keys(local)
        return deployment

    def _complete_keys(self, cfn: dict[str, Any]) -> None:
        """Give asymmetric keys the KeySpec and KeyUsage moto's CloudFormation ignores (it
        creates every key symmetric): the verdict signing key signs and verifies."""
        from gatekeeper_tools.local.kms import complete_key

        for logical_id, resource in cfn["Resources"].items():
            properties = resource.get("Properties", {})
            if (resource["Type"] != "AWS::KMS::Key"
                    or properties.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"):
                continue
            complete_key(self.physical_ids[logical_id].rsplit("/", 1)[-1], self.region,
                         properties["KeySpec"], properties.get("KeyUsage", "SIGN_VERIFY"))

    def _complete_buckets(self, cfn: dict[str, Any]) -> None:
        """Apply the bucket settings moto's CloudFormation ignores (it reads only BucketEncryption
        and Tags): versioning, which the gatekeeper relies on, public access block, ownership."""
        s3 = self._session.client("s3")
        for logical_id, resource in cfn["Resources"].items():
            if resource["Type"] != "AWS::S3::Bucket":
                continue
            bucket, properties = self.physical_ids[logical_id], resource.get("Properties", {})
            if "VersioningConfiguration" in properties:
                s3.put_bucket_versioning(Bucket=bucket,
                                         VersioningConfiguration=properties["VersioningConfiguration"])
            if "PublicAccessBlockConfiguration" in properties:
                s3.put_public_access_block(
                    Bucket=bucket,
                    PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"])
            if "OwnershipControls" in properties:
                s3.put_bucket_ownership_controls(Bucket=bucket,
                                                 OwnershipControls=properties["OwnershipControls"])

    # The physical names the handlers are configured with.
    @property
    def table_name(self) -> str:
        return self.outputs["VerdictTableName"]

    @property
    def topic_arn(self) -> str:
        return self.outputs["VerdictTopicArn"]

    @property
    def policy_bucket(self) -> str:
        return self.outputs["PolicyBucketName"]

    @property
    def dlq_url(self) -> str:
        return self.outputs["DeadLetterQueueUrl"]

    def environment(self, function_id: str) -> dict[str, str]:
        """The function's Environment.Variables (Globals merged), as moto resolved them."""
        configuration = self._session.client("lambda").get_function_configuration(
            FunctionName=self.physical_ids[function_id])
        variables = configuration.get("Environment", {}).get("Variables", {})
        return {name: str(value) for name, value in variables.items()}  # moto keeps numbers

    def context(self, function_id: str) -> LambdaContext:
        configuration = self._session.client("lambda").get_function_configuration(
            FunctionName=self.physical_ids[function_id])
        return LambdaContext(
            function_name=configuration["FunctionName"],
            memory_limit_in_mb=int(configuration["MemorySize"]),
            invoked_function_arn=configuration["FunctionArn"],
            aws_request_id=str(uuid.uuid4()),
            timeout_seconds=int(configuration["Timeout"]),
        )

    def deliver(self, *events: dict[str, Any], bus: str | None = None) -> list[Delivery]:
        """Run the handler of every rule whose pattern matches, as EventBridge would, for
        events put on ``bus`` (None: the default bus; "HubEventBus": the hub's bus).

        Events for a rule that feeds a queue reach its consuming function as one SQS batch
        (several events: one batch, as within the queue's batching window). Each call runs
        with the function's environment (plus AWS_REGION, which Lambda sets), restored
        afterwards. A handler's exception is captured in its Delivery, not raised.
        """
        deliveries = []
        for route in (r for r in self.routes if r.bus == bus):
            matching = [e for e in events
                        if route.pattern is not None and matches(route.pattern, e)]
            if route.queue_id is not None and matching:
                batch = sqs_batch([json.dumps(e) for e in matching])
                deliveries.append(self.invoke(route.function_id, batch, route.rule_id))
            else:
                deliveries += [self.invoke(route.function_id, e, route.rule_id)
                               for e in matching]
        return deliveries

    def tick(self) -> list[Delivery]:
        """Fire every schedule of the template once."""
        event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                 "source": "aws.events", "account": "123456789012", "region": self.region,
                 "time": "2026-01-01T00:00:00Z", "resources": [], "detail": {}}
        return [self.invoke(route.function_id, event, route.rule_id)
                for route in self.routes if route.pattern is None]

    def drain(self, queue_id: str = "ReevaluationQueue") -> list[Delivery]:
        """Receive what is on a queue of the stack and hand it to its consumer in one batch,
        deleting the messages it did not report as failed (as Lambda's SQS poller does)."""
        consumer = _consumers(self.cfn).get(queue_id)
        sqs = self._session.client("sqs")
        url = self.physical_ids[queue_id]
        messages = []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                break
            messages += got
        if not messages or consumer is None:
            return []
        batch = {"Records": [{"messageId": m["MessageId"], "body": m["Body"],
                              "eventSource": "aws:sqs"} for m in messages]}
        delivery = self.invoke(consumer, batch, queue_id)
        failed = {f["itemIdentifier"] for f in (delivery.result or {}).get(
            "batchItemFailures", [])} if delivery.ok else {m["MessageId"] for m in messages}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [delivery]

    def invoke(self, function_id: str, event: dict[str, Any], source: str) -> Delivery:
        route = next(r for r in self.routes if r.function_id == function_id)
        delivery = Delivery(source, function_id)
        handler = getattr(importlib.import_module(route.module), route.attribute)
        env = {**self.environment(function_id),
               "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        with _environment(env):
            try:
                delivery.result = handler(event, self.context(function_id))
            except Exception as err:  # a failed invocation is an outcome to report
                delivery.error = err
        return delivery

    def subscribe_queue(self, filter_policy: dict[str, Any] | None = None) -> str:
        """A new SQS queue subscribed to the verdict topic (SNS envelope, MessageAttributes
        included); returns its URL."""
        sqs = self._session.client("sqs")
        queue_url = sqs.create_queue(QueueName=f"verdicts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {"RawMessageDelivery": "false"}
        if filter_policy is not None:
            attributes["FilterPolicy"] = json.dumps(filter_policy)
        self._session.client("sns").subscribe(TopicArn=self.topic_arn, Protocol="sqs",
                                              Endpoint=queue_arn, Attributes=attributes)
        return queue_url
