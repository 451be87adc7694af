"""The ECS deployment hook in template.yaml: only with EcsDeploymentHook=enabled; the function
with exactly its read grants and the topic, the role ECS assumes to invoke it, its log group,
alarm and outputs."""

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

FUNCTION = "EcsDeploymentHookFunction"
ROLE = "EcsDeploymentHookInvokeRole"
HOOK_RESOURCES = {FUNCTION, f"{FUNCTION}Role", f"{FUNCTION}LogGroup", ROLE,
                  "EcsDeploymentHookAlarm"}
ECS = "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}"


def test_the_hook_exists_only_when_enabled(cfn: dict[str, Any]) -> None:
    # Given the parameter, off by default
    parameter = cfn["Parameters"]["EcsDeploymentHook"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("disabled",
                                                                  ["enabled", "disabled"])
    assert cfn["Conditions"]["HasEcsDeploymentHook"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "EcsDeploymentHook"}, "disabled"]}]}

    # Then every resource of the hook, and only those, carry its condition
    conditioned = {k for k, r in cfn["Resources"].items()
                   if r.get("Condition") == "HasEcsDeploymentHook"}
    assert conditioned == HOOK_RESOURCES
    assert {k for k, o in cfn["Outputs"].items()
            if o.get("Condition") == "HasEcsDeploymentHook"} == {
        "EcsDeploymentHookFunctionArn", "EcsDeploymentHookRoleArn"}


def test_the_hook_is_synchronous_short_and_follows_the_gate_settings(
        cfn: dict[str, Any]) -> None:
    properties = cfn["Resources"][FUNCTION]["Properties"]
    assert properties["Timeout"] == 30
    assert properties["Runtime"] == "python3.13" and properties["Architectures"] == ["arm64"]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    variables = properties["Environment"]["Variables"]
    assert variables["GATEKEEPER_OTHER_REGISTRIES"] == {"Ref": "OtherRegistries"}
    assert variables["GATEKEEPER_TOPIC_ARN"] == {"Ref": "VerdictTopic"}
    assert cfn["Parameters"]["OtherRegistries"]["AllowedValues"] == ["deny", "allow"]
    # ECS invokes it and reads the answer: no event source, no asynchronous invoke config
    assert not [r for r in of_type(cfn, "AWS::Lambda::EventInvokeConfig").values()
                if r["Properties"]["FunctionName"] == {"Ref": FUNCTION}]
    assert not [r for r in of_type(cfn, "AWS::Lambda::Permission").values()
                if r["Properties"]["FunctionName"] == {"Ref": FUNCTION}]


def test_the_hook_only_reads_deployments_images_verdicts_and_notifies(
        cfn: dict[str, Any]) -> None:
    assert granted(role_statements(cfn, FUNCTION)) == pairs(
        ("ecs:DescribeServices", {"Fn::Sub": f"{ECS}:service/*"}),
        ("ecs:DescribeServiceRevisions", {"Fn::Sub": f"{ECS}:service-revision/*"}),
        ("ecs:DescribeTaskDefinition", "*"),  # no resource-level permissions
        ("ecr:DescribeImages", {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:"
                                           "${AWS::AccountId}:repository/${RepositoryPattern}"}),
        ("dynamodb:GetItem", TABLE_ARN),
        ("dynamodb:Query", TABLE_ARN),
        ("kms:Verify", {"Fn::GetAtt": ["VerdictSigningKey", "Arn"]}),  # the stack's key only
        ("sns:Publish", {"Ref": "VerdictTopic"}),
    )
    role = cfn["Resources"][f"{FUNCTION}Role"]["Properties"]
    assert set(role["ManagedPolicyArns"]) == SAM_MANAGED_POLICIES


def test_ecs_assumes_a_role_that_may_only_invoke_the_hook(cfn: dict[str, Any]) -> None:
    role = cfn["Resources"][ROLE]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Principal"], trust["Action"]) == ({"Service": "ecs.amazonaws.com"},
                                                     "sts:AssumeRole")
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert (statement["Action"], statement["Resource"]) == (
        "lambda:InvokeFunction", {"Fn::GetAtt": [FUNCTION, "Arn"]})
    outputs = cfn["Outputs"]
    assert outputs["EcsDeploymentHookRoleArn"]["Value"] == {"Fn::GetAtt": [ROLE, "Arn"]}
    assert outputs["EcsDeploymentHookFunctionArn"]["Value"] == {
        "Fn::GetAtt": [FUNCTION, "Arn"]}
