"""CISA's KEV catalog and Security Hub in template.yaml: the daily refresh (unless its URL is
emptied) with exactly its grants, and BatchImportFindings only with SecurityHubFindings."""

from __future__ import annotations

from typing import Any

from tests.template.test_template import DLQ_ARN, KEV_OBJECT, granted, pairs, role_statements

FUNCTION = "KevRefreshFunction"
KEV_RESOURCES = {FUNCTION, f"{FUNCTION}Role", f"{FUNCTION}Daily", f"{FUNCTION}DailyPermission",
                 f"{FUNCTION}EventInvokeConfig",
                 f"{FUNCTION}LogGroup", "KevRefreshAlarm"}
PRODUCT = ("arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:"
           "product/${AWS::AccountId}/default")


def test_the_refresh_exists_unless_its_url_is_emptied(cfn: dict[str, Any]) -> None:
    # Given the condition on KevCatalogUrl; Then the refresh's resources, and only those,
    # carry it
    assert cfn["Conditions"]["HasKevRefresh"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "KevCatalogUrl"}, ""]}]}
    conditioned = {k for k, r in cfn["Resources"].items()
                   if r.get("Condition") == "HasKevRefresh"}
    assert conditioned == KEV_RESOURCES


def test_the_refresh_runs_daily_with_the_url_and_the_operator_topic(cfn: dict[str, Any]) -> None:
    rule = cfn["Resources"][f"{FUNCTION}Daily"]["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 day)"
    variables = cfn["Resources"][FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["GATEKEEPER_KEV_URL"] == {"Ref": "KevCatalogUrl"}
    assert variables["GATEKEEPER_OPERATOR_TOPIC_ARN"] == {"Ref": "OperatorTopic"}


def test_the_refresh_reads_and_writes_the_catalogs_key_only_and_alerts_the_operators(
        cfn: dict[str, Any]) -> None:
    # Given its role; Then it reads and writes that one key (never the policy), tells a missing
    # copy from a denied one, publishes to the operator topic (and uses its key), and sends
    # failed invocations to the DLQ (its OnFailure destination)
    assert granted(role_statements(cfn, FUNCTION)) == pairs(
        ("s3:GetObject", KEV_OBJECT),
        ("s3:PutObject", KEV_OBJECT),
        ("s3:ListBucket", {"Fn::GetAtt": ["PolicyBucket", "Arn"]}),
        ("sns:Publish", {"Ref": "OperatorTopic"}),
        ("kms:GenerateDataKey", {"Fn::GetAtt": ["OperatorTopicKey", "Arn"]}),
        ("kms:Decrypt", {"Fn::GetAtt": ["OperatorTopicKey", "Arn"]}),
        ("sqs:SendMessage", DLQ_ARN),
    )


def test_security_hub_findings_are_imported_only_when_enabled(cfn: dict[str, Any]) -> None:
    # Given the parameter, off by default
    parameter = cfn["Parameters"]["SecurityHubFindings"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("disabled",
                                                                  ["enabled", "disabled"])
    # Then one policy, with the condition, lets the judging functions import findings of the
    # account's default product, and nothing else
    [policy] = [k for k, r in cfn["Resources"].items()
                if r.get("Condition") == "HasSecurityHub"]
    properties = cfn["Resources"][policy]["Properties"]
    assert properties["Roles"] == [{"Ref": f"{f}Role"} for f in (
        "OnPushFunction", "OnScanFunction", "OnReevaluateFunction")]
    [statement] = properties["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow",
                                                          "securityhub:BatchImportFindings")
    assert statement["Resource"] == {"Fn::Sub": PRODUCT}
