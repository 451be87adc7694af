"""The verdict API in template.yaml: only with VerdictApi=enabled; a function URL with AWS_IAM
auth; throttled by its reserved concurrency; exactly its read grants; its log group, its
alarm lines and its output."""

from __future__ import annotations

from typing import Any

from tests.template.test_template import (
    SAM_MANAGED_POLICIES,
    TABLE_ARN,
    granted,
    of_type,
    pairs,
    role_statements,
)

FUNCTION = "VerdictApiFunction"
REPOSITORIES = {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}"
                           ":repository/${RepositoryPattern}"}
CONDITION = "HasVerdictApi"


def test_the_api_is_off_unless_enabled(cfn: dict[str, Any]) -> None:
    # Given the parameter; Then it is enabled or disabled, disabled by default
    spec = cfn["Parameters"]["VerdictApi"]
    assert (spec["Default"], spec["AllowedValues"]) == ("disabled", ["enabled", "disabled"])
    assert cfn["Conditions"][CONDITION] == {
        "Fn::Equals": [{"Fn::Join": ["", [{"Ref": "VerdictApi"}]]}, "enabled"]}
    # and everything the API adds exists only under that condition
    ours = {k for k, r in cfn["Resources"].items() if k.startswith(FUNCTION)}
    assert ours == {FUNCTION, f"{FUNCTION}Role", f"{FUNCTION}Url", f"{FUNCTION}LogGroup"}
    assert {cfn["Resources"][k].get("Condition") for k in ours} == {CONDITION}
    outputs = {k: o for k, o in cfn["Outputs"].items() if k.startswith("VerdictApi")}
    assert set(outputs) == {"VerdictApiUrl", "VerdictApiFunctionArn"}
    assert {o.get("Condition") for o in outputs.values()} == {CONDITION}


def test_the_function_url_requires_iam_auth(cfn: dict[str, Any]) -> None:
    (url,) = [r for r in of_type(cfn, "AWS::Lambda::Url").values()]
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": FUNCTION}
    assert "Cors" not in url["Properties"]  # no browser callers
    # no permission lets anyone invoke it without IAM (SAM adds one only for AuthType NONE)
    assert not [p for p in of_type(cfn, "AWS::Lambda::Permission").values()
                if p["Properties"].get("FunctionUrlAuthType") == "NONE"]
    assert cfn["Outputs"]["VerdictApiUrl"]["Value"] == {
        "Fn::GetAtt": [f"{FUNCTION}Url", "FunctionUrl"]}


def test_the_function_is_throttled_by_its_reserved_concurrency(cfn: dict[str, Any]) -> None:
    properties = cfn["Resources"][FUNCTION]["Properties"]
    assert properties["ReservedConcurrentExecutions"] == {
        "Ref": "VerdictApiReservedConcurrency"}
    spec = cfn["Parameters"]["VerdictApiReservedConcurrency"]
    assert (spec["Type"], spec["Default"], spec["MinValue"]) == ("Number", 5, 1)


def test_the_function_is_built_like_the_others_and_answers_quickly(cfn: dict[str, Any]) -> None:
    properties = cfn["Resources"][FUNCTION]["Properties"]
    (layer_id,) = of_type(cfn, "AWS::Lambda::LayerVersion")
    assert (properties["Runtime"], properties["Architectures"]) == ("python3.13", ["arm64"])
    assert properties["Layers"] == [{"Ref": layer_id}]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert properties["Handler"] == "app.handler"
    assert properties["Timeout"] == 10
    assert properties["Environment"]["Variables"]["GATEKEEPER_TABLE"] == {"Ref": "VerdictTable"}


def test_the_role_only_reads_verdicts_and_resolves_tags(cfn: dict[str, Any]) -> None:
    # Given the function's role; Then it reads one item at a time from the table and
    # describes images in the gatekeeper's repositories, nothing else: no write at all
    assert granted(role_statements(cfn, FUNCTION)) == pairs(
        ("dynamodb:GetItem", TABLE_ARN),
        ("ecr:DescribeImages", REPOSITORIES),
    )
    role = cfn["Resources"][f"{FUNCTION}Role"]["Properties"]
    assert set(role["ManagedPolicyArns"]) == SAM_MANAGED_POLICIES


def test_the_function_has_its_log_group_with_a_retention(cfn: dict[str, Any]) -> None:
    group = cfn["Resources"][f"{FUNCTION}LogGroup"]["Properties"]
    assert group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{FUNCTION}}}"}
    assert group["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
