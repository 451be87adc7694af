"""Organization mode: spoke.yaml (what runs in each member account and Region) and the hub's
side of template.yaml (OrganizationId set): the bus admits the organization only, its rules
mirror the default bus's, the judging functions may assume exactly the spokes' roles, and the
spoke role may do exactly what those functions do with ECR, nothing more, for the hub's
function roles only. With OrganizationId empty none of the hub's resources exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper_tools.local.stack import LocalDeployment, load_sam_template
from tests.template.conditions import render
from tests.template.conftest import REGION, ROOT, TEMPLATE, deployed
from tests.template.eventbridge import eventbridge_matches
from tests.template.test_rule_patterns import DELIVERED_TO, load
from tests.template.test_template import (
    DLQ_ARN,
    HUB_RULES,
    JUDGING_FUNCTIONS,
    QUEUE_ARN,
    as_list,
    granted,
    of_type,
    pairs,
    role_statements,
)

SPOKE = ROOT / "spoke.yaml"
ORGANIZATION = "o-a1b2c3d4e5"
HUB_ACCOUNT = "999999999999"
HUB_BUS = f"arn:aws:events:eu-west-1:{HUB_ACCOUNT}:event-bus/gatekeeper-hub"
SPOKE_PARAMETERS = {"HubAccountId": HUB_ACCOUNT, "HubStackName": "gatekeeper",
                    "HubEventBusArn": HUB_BUS, "OrganizationId": ORGANIZATION}
MEMBER = {"AWS::AccountId": "111111111111", "AWS::Region": "us-east-1"}
# What organization mode adds to the hub, and nothing else.
HUB_RESOURCES = {"HubEventBus", "HubAssumesSpokeRolesPolicy", *HUB_RULES,
                 "HubEcrImagePushPermission", "HubEcrBasicScanPermission",
                 "HubInspectorScanPermission"}
# Each spoke rule forwards what one hub rule takes.
FORWARDED_BY = {"ForwardEcrImagePushRule": "HubEcrImagePushRule",
                "ForwardEcrBasicScanRule": "HubEcrBasicScanRule",
                "ForwardInspectorScanRule": "HubInspectorScanRule",
                "ForwardInspectorFindingRule": "HubInspectorFindingRule"}
REPOSITORIES = {"Fn::Sub": "arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}"
                           ":repository/${RepositoryPattern}"}
RETRIES = {"MaximumRetryAttempts": 24, "MaximumEventAgeInSeconds": 3600}


@pytest.fixture(scope="module")
def spoke() -> dict[str, Any]:
    """spoke.yaml as written (plain CloudFormation), intrinsics in long form."""
    return load_sam_template(SPOKE)


@pytest.fixture(scope="module")
def member(spoke: dict[str, Any]) -> dict[str, Any]:
    """The spoke as a member account (not the hub's) gets it."""
    return render(spoke, SPOKE_PARAMETERS, MEMBER)


@pytest.fixture(scope="module")
def hub(cfn: dict[str, Any]) -> dict[str, Any]:
    """template.yaml (transformed) as deployed with OrganizationId."""
    return render(cfn, {"OrganizationId": ORGANIZATION})


@pytest.fixture(scope="module")
def single(cfn: dict[str, Any]) -> dict[str, Any]:
    """template.yaml (transformed) as deployed with the defaults: one account."""
    return render(cfn)


def statements_of(policy_holder: dict[str, Any]) -> list[dict[str, Any]]:
    properties = policy_holder["Properties"]
    documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
    if "PolicyDocument" in properties:
        documents.append(properties["PolicyDocument"])
    return [s for document in documents for s in as_list(document["Statement"])]


# --- spoke.yaml: validation and security gates ------------------------------------------------

CFN_LINT_TOOL = ROOT / ".tools" / "sam" / "bin" / "cfn-lint"  # `make install`, with sam


@pytest.mark.sam
def test_cfn_lint_passes_on_the_spoke() -> None:
    # Given cfn-lint (the one `sam validate --lint` runs; spoke.yaml is plain CloudFormation,
    # so no SAM transform: checkov runs on it in test_security_gates.py)
    command = str(CFN_LINT_TOOL) if CFN_LINT_TOOL.exists() else shutil.which("cfn-lint")
    if command is None:
        pytest.fail("cfn-lint is not installed: run `make test` (it installs .tools/sam)")

    # When the spoke template is linted, offline; Then it passes
    done = subprocess.run([command, "spoke.yaml"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"cfn-lint failed:\n{done.stdout}\n{done.stderr}"


# --- spoke.yaml: nothing runs in a member account ---------------------------------------------

def test_the_spoke_holds_a_role_forwarding_rules_and_their_dead_letter_queue_only(
        member: dict[str, Any]) -> None:
    kinds = {logical_id: r["Type"] for logical_id, r in member["Resources"].items()}
    assert kinds == {
        "SpokeRole": "AWS::IAM::Role",
        "ForwardingRole": "AWS::IAM::Role",
        **dict.fromkeys(FORWARDED_BY, "AWS::Events::Rule"),
        "ForwardingDeadLetterQueue": "AWS::SQS::Queue",
        "ForwardingDeadLetterQueuePolicy": "AWS::SQS::QueuePolicy",
    }
    assert member["Outputs"]["SpokeRoleArn"]["Value"] == {"Fn::GetAtt": ["SpokeRole", "Arn"]}


def test_in_the_hubs_own_account_and_region_the_spoke_forwards_nothing(
        spoke: dict[str, Any]) -> None:
    # Given the hub's account in the hub's Region (an OU holding the hub account): its
    # events already reach the hub on its default bus; forwarding them would judge twice
    at_hub = render(spoke, SPOKE_PARAMETERS,
                    {"AWS::AccountId": HUB_ACCOUNT, "AWS::Region": "eu-west-1"})
    assert set(at_hub["Resources"]) == {"SpokeRole"}
    # but the hub account's other Regions forward, like any member
    elsewhere = render(spoke, SPOKE_PARAMETERS,
                       {"AWS::AccountId": HUB_ACCOUNT, "AWS::Region": "us-east-1"})
    assert set(FORWARDED_BY) <= set(elsewhere["Resources"])


def test_the_spoke_shares_the_hubs_parameter_rules(cfn: dict[str, Any],
                                                   spoke: dict[str, Any]) -> None:
    for name in ("SpokeRoleName", "RepositoryPattern"):
        hub_spec, spoke_spec = cfn["Parameters"][name], spoke["Parameters"][name]
        assert (spoke_spec["Default"], spoke_spec["AllowedPattern"]) == (
            hub_spec["Default"], hub_spec["AllowedPattern"]), name
    # a member account's organization is the one the hub admits
    organization = spoke["Parameters"]["OrganizationId"]["AllowedPattern"]
    assert re.fullmatch(organization, ORGANIZATION)
    assert re.fullmatch(cfn["Parameters"]["OrganizationId"]["AllowedPattern"], ORGANIZATION)
    assert not re.fullmatch(organization, "")  # a spoke always serves an organization


# --- spoke.yaml: the role the hub assumes -----------------------------------------------------

def test_the_spoke_role_trusts_only_the_hub_stacks_function_roles_in_the_organization(
        cfn: dict[str, Any], member: dict[str, Any]) -> None:
    role = member["Resources"]["SpokeRole"]["Properties"]
    # Given the trust policy; Then one statement: the hub account, narrowed to the principals
    # under the hub stack's role path, of the organization
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Effect"], trust["Action"]) == ("Allow", "sts:AssumeRole")
    assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::"
                                                     "${HubAccountId}:root"}}
    hub_roles = ("arn:${AWS::Partition}:iam::${HubAccountId}:role"
                 "/ecr-scan-gatekeeper/${HubStackName}/*")
    assert trust["Condition"] == {
        "ArnLike": {"aws:PrincipalArn": {"Fn::Sub": hub_roles}},
        "StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}
    # and that path is the one the hub gives its functions' roles (Globals RolePath)
    role_path = cfn["Resources"]["OnScanFunctionRole"]["Properties"]["Path"]["Fn::Sub"]
    assert hub_roles.endswith(":role" + role_path.replace("${AWS::StackName}",
                                                          "${HubStackName}") + "*")


def test_the_spoke_role_is_named_as_the_hub_assumes_it(hub: dict[str, Any],
                                                       member: dict[str, Any]) -> None:
    role = member["Resources"]["SpokeRole"]["Properties"]
    assert role["RoleName"] == {"Fn::Sub": "${SpokeRoleName}-${AWS::Region}"}
    (statement,) = statements_of(hub["Resources"]["HubAssumesSpokeRolesPolicy"])
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${SpokeRoleName}-*"}


def test_the_spoke_role_may_do_exactly_what_the_judging_functions_do_with_ecr(
        cfn: dict[str, Any], member: dict[str, Any]) -> None:
    # Given the ECR actions the hub's judging functions are granted in their own account
    hub_ecr = {action for function_id in JUDGING_FUNCTIONS
               for statement in role_statements(cfn, function_id)
               for action in as_list(statement["Action"]) if action.startswith("ecr:")}
    assert "ecr:PutImage" in hub_ecr and "ecr:StartImageScan" in hub_ecr

    # Then the spoke role grants those (not one more, not one less) on the spoke's
    # repositories, and the Inspector read enhanced scanning needs, nothing else
    statements = statements_of(member["Resources"]["SpokeRole"])
    assert granted(statements) == pairs(
        *((action, REPOSITORIES) for action in sorted(hub_ecr)),
        ("inspector2:ListFindings", "*"))


# --- spoke.yaml: forwarding -------------------------------------------------------------------

@pytest.mark.parametrize("rule_id", sorted(FORWARDED_BY))
def test_each_forwarding_rule_takes_what_its_hub_rule_takes(hub: dict[str, Any],
                                                            member: dict[str, Any],
                                                            rule_id: str) -> None:
    rule = member["Resources"][rule_id]["Properties"]
    hub_rule = hub["Resources"][FORWARDED_BY[rule_id]]["Properties"]
    assert rule["EventPattern"] == hub_rule["EventPattern"]
    assert "EventBusName" not in rule  # the member account's default bus
    # and it puts the event on the hub's bus with its role, retrying, then dead-lettering
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": "HubEventBusArn"}
    assert target["RoleArn"] == {"Fn::GetAtt": ["ForwardingRole", "Arn"]}
    assert target["RetryPolicy"] == RETRIES
    assert target["DeadLetterConfig"] == {
        "Arn": {"Fn::GetAtt": ["ForwardingDeadLetterQueue", "Arn"]}}


@pytest.mark.parametrize("event", sorted(DELIVERED_TO))
def test_the_spoke_forwards_exactly_the_recorded_events_the_hub_judges(
        member: dict[str, Any], event: str) -> None:
    # Given a recorded event in a member account
    hub_twins = {hub_rule: rule for rule, hub_rule in FORWARDED_BY.items()}
    default_twins = {hub_rule: default for hub_rule, default in HUB_RULES.items()}
    expected = {hub_twins[h] for h, d in default_twins.items() if d == DELIVERED_TO[event]}

    # When EventBridge evaluates it against the spoke's rules
    forwarded = {rule for rule in FORWARDED_BY if eventbridge_matches(
        member["Resources"][rule]["Properties"]["EventPattern"], load(event))}

    # Then exactly the rule forwarding to the hub rule meant for it takes it (the policy
    # object's event and the schedules stay with the hub itself)
    assert forwarded == expected


def test_the_forwarding_role_may_only_put_events_on_the_hub_bus(member: dict[str, Any]) -> None:
    role = member["Resources"]["ForwardingRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {
        "Ref": "AWS::AccountId"}}}
    assert granted(statements_of(member["Resources"]["ForwardingRole"])) == pairs(
        ("events:PutEvents", {"Ref": "HubEventBusArn"}))


def test_only_the_forwarding_rules_may_dead_letter_in_the_spoke(member: dict[str, Any]) -> None:
    queue = member["Resources"]["ForwardingDeadLetterQueue"]["Properties"]
    assert queue == {"SqsManagedSseEnabled": True, "MessageRetentionPeriod": 1209600}
    (statement,) = statements_of(member["Resources"]["ForwardingDeadLetterQueuePolicy"])
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": [
        {"Fn::GetAtt": [rule, "Arn"]} for rule in FORWARDED_BY]}}


# --- template.yaml: organization mode on and off ----------------------------------------------

def test_organization_mode_adds_only_the_hubs_resources(single: dict[str, Any],
                                                        hub: dict[str, Any]) -> None:
    # Given the template deployed for one account and as a hub
    # Then the hub has exactly the single-account stack's resources plus its own
    assert set(hub["Resources"]) == set(single["Resources"]) | HUB_RESOURCES
    assert not HUB_RESOURCES & set(single["Resources"])
    assert "HubEventBusArn" not in single["Outputs"]
    assert hub["Outputs"]["HubEventBusArn"]["Value"] == {"Fn::GetAtt": ["HubEventBus", "Arn"]}
    # and the single-account stack's queue policies name only its own rules
    (dead_letters, _) = statements_of(single["Resources"]["DeadLetterQueuePolicy"])
    assert not [arn for arn in dead_letters["Condition"]["ArnEquals"]["aws:SourceArn"]
                if arn["Fn::GetAtt"][0].startswith("Hub")]
    (findings,) = statements_of(single["Resources"]["ReevaluationQueuePolicy"])
    assert findings["Condition"] == {"ArnEquals": {"aws:SourceArn": {
        "Fn::GetAtt": ["InspectorFindingRule", "Arn"]}}}
    # and no role of it may assume a role anywhere
    assert not [s for r in of_type(single, "AWS::IAM::Role").values() for s in statements_of(r)
                if "sts:AssumeRole" in as_list(s["Action"])]


def test_the_hub_bus_admits_events_from_the_organization_only(hub: dict[str, Any]) -> None:
    bus = hub["Resources"]["HubEventBus"]["Properties"]
    assert bus["Name"] == {"Fn::Sub": "${AWS::StackName}-hub"}
    (statement,) = bus["Policy"]["Statement"]
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == (
        "Allow", "*", "events:PutEvents")
    assert statement["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}"
                                                ":${AWS::AccountId}:event-bus/${AWS::StackName}-hub"}
    assert statement["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": {
        "Ref": "OrganizationId"}}}


@pytest.mark.parametrize("hub_rule", sorted(HUB_RULES))
def test_each_hub_rule_mirrors_its_default_bus_twin_on_the_hub_bus(hub: dict[str, Any],
                                                                   hub_rule: str) -> None:
    rule = hub["Resources"][hub_rule]["Properties"]
    twin = hub["Resources"][HUB_RULES[hub_rule]]["Properties"]
    # Then it is on the hub's bus, with its twin's pattern and target, retries, dead letters
    assert rule["EventBusName"] == {"Fn::GetAtt": ["HubEventBus", "Name"]}
    assert rule["EventPattern"] == twin["EventPattern"]
    ((target,), (twin_target,)) = rule["Targets"], twin["Targets"]
    assert target["Arn"] == twin_target["Arn"]
    assert target["RetryPolicy"] == twin_target["RetryPolicy"] == RETRIES
    assert target["DeadLetterConfig"] == twin_target["DeadLetterConfig"] == {"Arn": DLQ_ARN}


def test_the_hub_rules_may_invoke_their_functions_and_reach_the_queues(
        hub: dict[str, Any]) -> None:
    # Given the hub's Lambda permissions for its rules
    permissions = {p["Properties"]["SourceArn"]["Fn::GetAtt"][0]: p["Properties"]
                   for k, p in of_type(hub, "AWS::Lambda::Permission").items()
                   if k.startswith("Hub")}
    # Then each rule whose target is a function may invoke that function, and only it
    to_functions = {rule: hub["Resources"][rule]["Properties"]["Targets"][0]["Arn"]
                    for rule in HUB_RULES if rule != "HubInspectorFindingRule"}
    assert set(permissions) == set(to_functions)
    for rule, arn in to_functions.items():
        assert permissions[rule] == {"Action": "lambda:InvokeFunction",
                                     "FunctionName": {"Ref": arn["Fn::GetAtt"][0]},
                                     "Principal": "events.amazonaws.com",
                                     "SourceArn": {"Fn::GetAtt": [rule, "Arn"]}}
    # and the finding rule may send to the re-evaluation queue, every hub rule to the DLQ
    assert hub["Resources"]["HubInspectorFindingRule"]["Properties"]["Targets"][0]["Arn"] == (
        QUEUE_ARN)
    (findings,) = statements_of(hub["Resources"]["ReevaluationQueuePolicy"])
    assert {"Fn::GetAtt": ["HubInspectorFindingRule", "Arn"]} in findings["Condition"][
        "ArnEquals"]["aws:SourceArn"]
    (dead_letters, _) = statements_of(hub["Resources"]["DeadLetterQueuePolicy"])
    assert {arn["Fn::GetAtt"][0] for arn in dead_letters["Condition"]["ArnEquals"][
        "aws:SourceArn"]} >= set(HUB_RULES)


def test_the_judging_functions_may_assume_only_the_spoke_roles_of_the_organization(
        hub: dict[str, Any]) -> None:
    policy = hub["Resources"]["HubAssumesSpokeRolesPolicy"]["Properties"]
    # Given the hub's one AssumeRole grant; Then it belongs to the judging functions' roles
    assert policy["Roles"] == [{"Ref": f"{f}Role"} for f in JUDGING_FUNCTIONS]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "sts:AssumeRole")
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${SpokeRoleName}-*"}
    assert statement["Condition"] == {"StringEquals": {"aws:ResourceOrgID": {
        "Ref": "OrganizationId"}}}
    # and no other statement of the template lets anyone assume a role, but the same grant
    # for the ECS deployment hook (with the hook on)
    hook = hub["Resources"].get("HubEcsHookAssumesSpokeRolesPolicy")
    if hook is not None:
        assert hook["Properties"]["Roles"] == [{"Ref": "EcsDeploymentHookFunctionRole"}]
        assert hook["Properties"]["PolicyDocument"]["Statement"] == [statement]
    others = [k for k, r in hub["Resources"].items()
              if k not in ("HubAssumesSpokeRolesPolicy", "HubEcsHookAssumesSpokeRolesPolicy")
              and r["Type"] in ("AWS::IAM::Role", "AWS::IAM::Policy")
              for s in statements_of(r) if "sts:AssumeRole" in as_list(s["Action"])]
    assert others == []


@pytest.mark.parametrize(("value", "accepted"), [
    ("", True), ("o-a1b2c3d4e5", True), ("o-abcdefghijklmnopqrstuvwxyz012345", True),
    ("o-short", False), ("123456789012", False), ("O-A1B2C3D4E5", False),
    ("r-a1b2", False), ("ou-a1b2-c3d4e5f6", False),
])
def test_organization_id_takes_an_organization_id_or_nothing(cfn: dict[str, Any], value: str,
                                                             accepted: bool) -> None:
    pattern = cfn["Parameters"]["OrganizationId"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) is accepted


# --- the hub in moto ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hub_deployment() -> Iterator[LocalDeployment]:
    """Given the template deployed into moto as a hub (fake credentials, no real AWS)."""
    with deployed(stack_name="hub", parameters={"OrganizationId": ORGANIZATION}) as stack:
        yield stack


def test_a_hub_deploys_and_routes_its_bus_rules_apart_from_the_default_bus(
        hub_deployment: LocalDeployment) -> None:
    # Then the hub bus's rules route events put on the hub bus, the others the default bus's
    by_bus = {rule.rule_id: rule.bus for rule in hub_deployment.routes}
    assert {rule for rule, bus in by_bus.items() if bus == "HubEventBus"} == set(HUB_RULES)
    assert {rule for rule, bus in by_bus.items() if bus is None} == set(HUB_RULES.values()) | {
        "SweeperFunctionHourly", "SweeperFunctionPolicyPublished"}
    # and the functions are told they are a hub's
    environment = hub_deployment.environment("OnScanFunction")
    assert environment["GATEKEEPER_ORGANIZATION_ID"] == ORGANIZATION
    assert environment["GATEKEEPER_SPOKE_ROLE_NAME"] == "ecr-scan-gatekeeper-spoke"
    assert environment["GATEKEEPER_ACCOUNT_ID"] == "123456789012"
    assert environment["GATEKEEPER_OPERATOR_TOPIC_ARN"].startswith("arn:aws:sns:")
    assert hub_deployment.outputs["HubEventBusArn"].endswith(":event-bus/hub-hub")


def test_a_single_account_stack_routes_no_hub_rule(
        hub_deployment: LocalDeployment) -> None:
    # Given a single-account stack next to the hub (the defaults); Then it has no hub route
    single = LocalDeployment.create(TEMPLATE, region=REGION, stack_name="single")
    assert {rule.bus for rule in single.routes} == {None}
    assert not [k for k in single.physical_ids if k.startswith("Hub")]
