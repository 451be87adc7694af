"""Security gates on the template, run by `make test` (and so by CI): checkov finds nothing
unexplained, no IAM role grants more than its service needs, everything at rest is encrypted.

cfn-lint runs in test_sam_validate.py; ruff's security rules (S) run in `make test`'s lint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatekeeper_tools.local.stack import load_sam_template
from tests.template.conftest import ROOT, TEMPLATE
from tests.template.test_template import as_list, of_type, policy_statements

SPOKE = ROOT / "spoke.yaml"  # organization mode: what runs in each member account

# --- checkov --------------------------------------------------------------------------------

CHECKOV_TOOL = ROOT / ".tools" / "checkov" / "bin" / "checkov"  # `make install`, pinned
CHECKOV_ID = re.compile(r"CKV2?_AWS_\d+")
# A reason is a sentence someone wrote, not "n/a" or "false positive".
MIN_REASON_WORDS = 8


def checkov_command() -> str | None:
    """The pinned checkov of `make install`, else one on PATH (`make test` puts it there)."""
    if CHECKOV_TOOL.exists():
        return str(CHECKOV_TOOL)
    return shutil.which("checkov")


@pytest.fixture(scope="module")
def checkov(cfn: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run (CloudFormation checks, offline) over template.yaml as written, over
    the SAM-transformed template (the resources SAM expands the functions into) and over
    spoke.yaml (organization mode's member accounts)."""
    command = checkov_command()
    if command is None:
        pytest.skip("checkov is not installed: `make install` (or `make test`) puts it in "
                    ".tools/checkov; this gate then runs")
    scanned = tmp_path_factory.mktemp("checkov")
    transformed = scanned / "transformed.json"
    transformed.write_text(json.dumps(cfn, indent=1))
    # checkov drops a resource whose condition is false with the parameters' defaults: the
    # template as written is scanned with every switch that defaults to off turned on
    written = scanned / "template.yaml"
    written.write_text(switched_on(TEMPLATE.read_text()))
    spoke = scanned / SPOKE.name
    spoke.write_text(SPOKE.read_text())
    started = time.monotonic()
    done = subprocess.run(
        [command, "--framework", "cloudformation", "--output", "json", "--skip-download",
         "--file", str(written), "--file", str(transformed), "--file", str(spoke)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        # --skip-download: offline, no Prisma Cloud guidelines (CI has no network for it)
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    try:
        report = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"checkov gave no report (exit {done.returncode}):\n{done.stderr[-4000:]}")
    report["seconds"] = time.monotonic() - started
    report["returncode"] = done.returncode
    report["transformed"] = transformed.name
    return report


# Parameters that turn an optional part of the stack on, and the value that does.
# (OrganizationId: organization mode, the hub's bus, rules and AssumeRole grant.)
SWITCHES = {"EcsDeploymentHook": "enabled", "OrganizationId": "o-a1b2c3d4e5"}


def switched_on(text: str) -> str:
    """template.yaml with each switch's default set to its "on" value."""
    for name, on in SWITCHES.items():
        text, count = re.subn(rf'(\n  {name}:\n    Type: String\n    Default: )(\w+|"")',
                              rf"\g<1>{on}", text)
        assert count == 1, name
    return text


def describe(check: dict[str, Any]) -> str:
    return (f"{check['check_id']} {check['check_name']}: {check['resource']} "
            f"({Path(check['file_path']).name})")


def test_checkov_finds_nothing_in_the_template_nor_in_what_sam_makes_of_it(
        checkov: dict[str, Any]) -> None:
    # Given checkov's report over both files
    results, summary = checkov["results"], checkov["summary"]

    # Then it read both, ran checks on both, and none failed: fix the template, or (only
    # where checkov is wrong for this stack) skip the check in the resource's Metadata with
    # the reason (see test_every_checkov_skip_names_a_check_and_gives_a_reason)
    assert summary["parsing_errors"] == 0, results.get("parsing_errors")
    files = {Path(c["file_path"]).name for c in results["passed_checks"]}
    assert files == {"template.yaml", checkov["transformed"], "spoke.yaml"}, files
    failed = [describe(c) for c in results["failed_checks"]]
    assert failed == [], "checkov failed checks:\n  " + "\n  ".join(failed)
    assert checkov["returncode"] == 0
    # and it stays quick enough to run on every `make test` (about 10 s here)
    assert checkov["seconds"] < 120, checkov["seconds"]


def sam_skips(path: Path = TEMPLATE) -> Iterator[tuple[str, Any]]:
    """(logical id, skip entry) for every checkov skip in template.yaml's (or spoke.yaml's)
    Metadata."""
    for logical_id, resource in load_sam_template(path)["Resources"].items():
        checkov_metadata = (resource.get("Metadata") or {}).get("checkov") or {}
        for skip in checkov_metadata.get("skip") or []:
            yield logical_id, skip


@pytest.mark.parametrize("path", [TEMPLATE, SPOKE], ids=lambda path: path.name)
def test_every_checkov_skip_names_a_check_and_gives_a_reason(path: Path) -> None:
    skips = list(sam_skips(path))
    assert skips, "expected the documented suppressions (Lambda VPC, DLQ, ...)"
    for logical_id, skip in skips:
        assert isinstance(skip, dict) and set(skip) == {"id", "comment"}, (logical_id, skip)
        assert CHECKOV_ID.fullmatch(str(skip["id"])), (logical_id, skip)
        comment = str(skip["comment"] or "").strip()
        assert len(comment.split()) >= MIN_REASON_WORDS, (
            f"{logical_id}: checkov skip {skip['id']} needs a written reason, got {comment!r}")


@pytest.mark.parametrize("path", [TEMPLATE, SPOKE], ids=lambda path: path.name)
def test_every_checkov_skip_still_silences_a_finding(checkov: dict[str, Any],
                                                     path: Path) -> None:
    # A skip whose check no longer fires (fixed, or a mistyped id) hides nothing and should
    # go: each skip in the template is one checkov reported as skipped, with its comment
    reported = {(c["resource"].split(".", 1)[1], c["check_id"]):
                c["check_result"].get("suppress_comment")
                for c in checkov["results"]["skipped_checks"]
                if Path(c["file_path"]).name == path.name}
    written = {(logical_id, skip["id"]): " ".join(str(skip["comment"]).split())
               for logical_id, skip in sam_skips(path)}
    assert set(written) == set(reported)
    assert all(" ".join(str(reported[k]).split()) == v for k, v in written.items())


# --- IAM: no wildcard action, Resource "*" only where the service requires it --------------

# Actions that have no resource-level permissions: "*" is the only resource IAM accepts.
RESOURCE_STAR_ALLOWED = {
    # DescribeImageScanFindings under enhanced scanning reads Inspector with the caller's rights
    "inspector2:ListFindings",
    # X-Ray tracing
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    # custom metrics by API (the gatekeeper uses EMF log lines instead, but a function may not)
    "cloudwatch:PutMetricData",
    # the ECS deployment hook reads the task definition a deployment runs
    "ecs:DescribeTaskDefinition",
}
# The AWS managed policies SAM attaches to the roles it generates; the template cannot scope
# them. Anything else attached to a role must be an inline statement this file can check.
SAM_MANAGED_POLICIES = {
    # CloudWatch Logs: logs:CreateLogGroup, CreateLogStream, PutLogEvents
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole":
        "every function's role (SAM)",
    # X-Ray: PutTraceSegments, PutTelemetryRecords, sampling rules (no resource-level rights)
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": "Tracing: Active (SAM)",
    # the Lambda SQS poller receives and deletes with the function's role
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole":
        "an SQS event source (SAM)",
}
IAM_POLICY_TYPES = ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def iam_statements(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(logical id, statement) of every identity policy: each role's inline policies and every
    IAM policy resource, whatever function (present or future) it belongs to."""
    for logical_id, statement in policy_statements(cfn):
        if cfn["Resources"][logical_id]["Type"] in IAM_POLICY_TYPES:
            yield logical_id, statement


def test_every_function_has_a_role_of_this_template(cfn: dict[str, Any]) -> None:
    # A role from outside the template would escape the checks below
    roles = of_type(cfn, "AWS::IAM::Role")
    for function_id, function in of_type(cfn, "AWS::Lambda::Function").items():
        role = function["Properties"]["Role"]
        assert isinstance(role, dict) and role.get("Fn::GetAtt", [None])[0] in roles, (
            function_id, role)


def test_every_role_is_assumed_by_a_service_only(cfn: dict[str, Any]) -> None:
    for logical_id, role in of_type(cfn, "AWS::IAM::Role").items():
        for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            assert set(statement["Principal"]) == {"Service"}, (logical_id, statement)


def test_no_role_allows_a_wildcard_action_or_a_needless_every_resource(
        cfn: dict[str, Any]) -> None:
    # Given every statement of every role and IAM policy of the template
    statements = list(iam_statements(cfn))
    assert {k for k, _ in statements} >= set(of_type(cfn, "AWS::IAM::Role"))

    for logical_id, statement in statements:
        if statement["Effect"] != "Allow":
            continue
        # Then no action is "*", "service:*" or any other pattern, none is NotAction/NotResource
        assert not {"NotAction", "NotResource"} & set(statement), (logical_id, statement)
        actions = as_list(statement["Action"])
        assert not [a for a in actions if "*" in a], (logical_id, statement)
        # and Resource "*" is only for actions that have no resource-level permissions
        if "*" in as_list(statement["Resource"]):
            assert set(actions) <= RESOURCE_STAR_ALLOWED, (
                f"{logical_id}: {sorted(set(actions) - RESOURCE_STAR_ALLOWED)} on Resource "
                f"'*': scope it to the resources it acts on, or, if the service has no "
                f"resource-level permissions for it, add it to RESOURCE_STAR_ALLOWED with why")


def test_roles_attach_only_the_managed_policies_sam_adds(cfn: dict[str, Any]) -> None:
    for logical_id, role in of_type(cfn, "AWS::IAM::Role").items():
        attached = set(role["Properties"].get("ManagedPolicyArns", []))
        assert attached <= set(SAM_MANAGED_POLICIES), (logical_id, attached)
        if logical_id not in SERVICE_ROLES:  # a function's role
            assert ("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
                    in attached), logical_id


# Roles another AWS service assumes to call the stack (not a function's role), and the one
# thing each may do.
SERVICE_ROLES = {"EcsDeploymentHookInvokeRole": ("ecs.amazonaws.com", "lambda:InvokeFunction",
                                                 "EcsDeploymentHookFunction")}


def test_a_service_role_may_only_invoke_its_function(cfn: dict[str, Any]) -> None:
    for logical_id, (service, action, function_id) in SERVICE_ROLES.items():
        role = cfn["Resources"][logical_id]["Properties"]
        (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": service}
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {
            "Ref": "AWS::AccountId"}}}
        assert "ManagedPolicyArns" not in role
        statements = [s for p in role["Policies"]
                      for s in as_list(p["PolicyDocument"]["Statement"])]
        assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [
            ("Allow", action, {"Fn::GetAtt": [function_id, "Arn"]})]


# --- encryption at rest ---------------------------------------------------------------------

def test_every_topic_is_encrypted_with_kms(cfn: dict[str, Any]) -> None:
    topics = of_type(cfn, "AWS::SNS::Topic")
    assert topics
    for logical_id, topic in topics.items():
        assert topic["Properties"].get("KmsMasterKeyId"), logical_id


def test_topics_that_alarms_notify_use_a_key_cloudwatch_may_use(cfn: dict[str, Any]) -> None:
    # CloudWatch cannot publish to a topic under alias/aws/sns (its policy cannot grant it):
    # a topic that alarms notify needs a key of the stack whose policy lets CloudWatch in
    keys = of_type(cfn, "AWS::KMS::Key")
    notified = {action["Ref"] for alarm in of_type(cfn, "AWS::CloudWatch::Alarm").values()
                for action in alarm["Properties"].get("AlarmActions", [])
                + alarm["Properties"].get("OKActions", [])}
    assert notified
    for topic_id in notified:
        key = cfn["Resources"][topic_id]["Properties"]["KmsMasterKeyId"]
        assert isinstance(key, dict) and key.get("Fn::GetAtt", [None])[0] in keys, topic_id
        policy = keys[key["Fn::GetAtt"][0]]["Properties"]["KeyPolicy"]
        assert any(s["Effect"] == "Allow"
                   and s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
                   and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(as_list(s["Action"]))
                   for s in policy["Statement"]), topic_id


def test_every_key_of_the_stack_rotates_and_is_administered_through_iam(
        cfn: dict[str, Any]) -> None:
    # (the verdict signing key is asymmetric: KMS does not rotate those; its policy has its
    # own test below)
    keys = {k: v for k, v in of_type(cfn, "AWS::KMS::Key").items() if k != "VerdictSigningKey"}
    assert keys
    for logical_id, key in keys.items():
        properties = key["Properties"]
        assert properties["EnableKeyRotation"] is True, logical_id
        for statement in properties["KeyPolicy"]["Statement"]:
            # the one broad statement is every key's default: the account, through IAM
            if statement["Action"] == "kms:*":
                assert statement["Principal"] == {"AWS": {
                    "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}, logical_id
            else:
                assert "Service" in statement["Principal"], (logical_id, statement)


STACK_ROLES = ("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/ecr-scan-gatekeeper/"
               "${AWS::StackName}/*")


def test_the_signing_key_is_asymmetric_and_kept(cfn: dict[str, Any]) -> None:
    key = cfn["Resources"]["VerdictSigningKey"]
    assert (key["Properties"]["KeySpec"], key["Properties"]["KeyUsage"]) == (
        "ECC_NIST_P256", "SIGN_VERIFY")
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"
    alias = cfn["Resources"]["VerdictSigningKeyAlias"]["Properties"]
    assert alias["TargetKeyId"] == {"Ref": "VerdictSigningKey"}
    assert cfn["Outputs"]["SigningKeyArn"]["Value"] == {
        "Fn::GetAtt": ["VerdictSigningKey", "Arn"]}


def test_only_the_stacks_roles_may_sign_and_anyone_in_the_account_may_verify(
        cfn: dict[str, Any]) -> None:
    # Given the signing key's policy
    statements = {s["Sid"]: s for s in
                  cfn["Resources"]["VerdictSigningKey"]["Properties"]["KeyPolicy"]["Statement"]}

    # Then the account administers it through IAM,
    admin = statements.pop("AccountAdministersThroughIam")
    assert (admin["Effect"], admin["Action"]) == ("Allow", "kms:*")
    assert admin["Principal"] == {"AWS": {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    # kms:Sign is denied to every principal outside the stack's role path, whatever IAM says,
    sign = statements.pop("OnlyTheJudgingRolesSign")
    assert (sign["Effect"], sign["Principal"], sign["Action"]) == ("Deny", "*", "kms:Sign")
    assert sign["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": {"Fn::Sub": STACK_ROLES}}}
    # any principal of the account (and only of it) may read the public key and verify,
    verify = statements.pop("AnyoneInTheAccountVerifies")
    assert (verify["Effect"], verify["Principal"]) == ("Allow", {"AWS": "*"})
    assert sorted(verify["Action"]) == ["kms:DescribeKey", "kms:GetPublicKey", "kms:Verify"]
    assert verify["Condition"] == {
        "StringEquals": {"aws:PrincipalAccount": {"Ref": "AWS::AccountId"}}}
    # and nothing else
    assert statements == {}


def test_only_the_judging_functions_roles_are_granted_kms_sign(cfn: dict[str, Any]) -> None:
    # Given every function's role, Then only the judging functions may sign, on this key only
    signing = {}
    for logical_id, resource in of_type(cfn, "AWS::IAM::Role").items():
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                actions = [actions] if isinstance(actions, str) else actions
                if any(a in ("kms:Sign", "kms:*", "*") for a in actions):
                    signing[logical_id] = statement["Resource"]
    assert signing == {f"{f}Role": {"Fn::GetAtt": ["VerdictSigningKey", "Arn"]}
                       for f in ("OnPushFunction", "OnScanFunction", "OnReevaluateFunction")}


def test_every_queue_is_encrypted(cfn: dict[str, Any]) -> None:
    queues = of_type(cfn, "AWS::SQS::Queue")
    assert queues
    for logical_id, queue in queues.items():
        properties = queue["Properties"]
        assert properties.get("SqsManagedSseEnabled") is True or properties.get(
            "KmsMasterKeyId"), logical_id


def test_every_table_is_encrypted(cfn: dict[str, Any]) -> None:
    tables = of_type(cfn, "AWS::DynamoDB::Table")
    assert tables
    for logical_id, table in tables.items():
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True, logical_id


def test_every_bucket_is_encrypted(cfn: dict[str, Any]) -> None:
    for logical_id, bucket in of_type(cfn, "AWS::S3::Bucket").items():
        rules = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules and all(r["ServerSideEncryptionByDefault"]["SSEAlgorithm"]
                             for r in rules), logical_id


def test_every_log_group_keeps_a_retention_and_takes_the_optional_key(
        cfn: dict[str, Any]) -> None:
    # CloudWatch Logs encrypts every log group at rest; LogsKmsKeyArn, when given, puts them
    # under a key of yours instead
    groups = of_type(cfn, "AWS::Logs::LogGroup")
    assert groups
    for logical_id, group in groups.items():
        properties = group["Properties"]
        assert properties["RetentionInDays"] == {"Ref": "LogRetentionInDays"}, logical_id
        assert properties["KmsKeyId"] == {"Fn::If": [
            "HasLogsKmsKey", {"Ref": "LogsKmsKeyArn"}, {"Ref": "AWS::NoValue"}]}, logical_id
    assert cfn["Conditions"]["HasLogsKmsKey"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "LogsKmsKeyArn"}, ""]}]}
    assert cfn["Parameters"]["LogsKmsKeyArn"]["Default"] == ""


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True),
    ("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", True),
    ("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-1234abcd", True),
    ("alias/aws/logs", False),  # CloudWatch Logs takes a key ARN, not an alias
    ("arn:aws:kms:eu-west-1:123456789012:alias/logs", False),
])
def test_logs_key_parameter_takes_key_arns_only(cfn: dict[str, Any], value: str,
                                                accepted: bool) -> None:
    pattern = cfn["Parameters"]["LogsKmsKeyArn"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted
