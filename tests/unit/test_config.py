"""Each kind of function's configuration, read from its environment: the typed values of a
complete environment, the defaults, and one ConfigError naming every variable that is missing
or wrong, what is wrong with it and what was expected. Pure: no AWS, no emulator."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gatekeeper.config import (
    SECRET_ENV,
    Config,
    ConfigError,
    EcsHookConfig,
    GateConfig,
    KevRefreshConfig,
    SlackConfig,
    SweeperConfig,
    VerdictApiConfig,
)
from gatekeeper.domain.markers import MarkerScheme

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:verdicts"
QUEUE = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/reevaluations"
SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:gatekeeper/slack-webhook-AbC123"

# What the template gives every function (Globals), with values of the right shape.
MINIMAL = {
    "GATEKEEPER_TABLE": "verdicts",
    "GATEKEEPER_TOPIC_ARN": TOPIC,
    "GATEKEEPER_POLICY_BUCKET": "gatekeeper-policy",
}
COMPLETE = {
    **MINIMAL,
    "GATEKEEPER_POLICY_KEY": "policies/strict.yaml",
    "GATEKEEPER_APPROVED_TAG": "passed-{digest}",
    "GATEKEEPER_QUARANTINED_TAG": "blocked-{digest12}",
    "GATEKEEPER_REEVALUATION_QUEUE_URL": QUEUE,
    "GATEKEEPER_POLICY_CACHE_SECONDS": "30",
    "GATEKEEPER_SCAN_TIMEOUT_MINUTES": "45",
    "GATEKEEPER_START_SCANS": "true",
    "GATEKEEPER_LEASE_SECONDS": "120",
    "GATEKEEPER_LEASE_WAIT_SECONDS": "15",
    "GATEKEEPER_HISTORY_RETENTION_DAYS": "400",
}

JUDGING = pytest.param(Config, id="Config")
SWEEPER = pytest.param(SweeperConfig, id="SweeperConfig")


def problem_of(config_class: Any, env: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        config_class.from_env(env)
    return raised.value


# --- a complete environment gives the typed values ------------------------------------------

def test_a_complete_environment_gives_the_judging_functions_typed_values() -> None:
    # Given every variable the judging functions read; When it is parsed
    config = Config.from_env(COMPLETE)

    # Then each is typed
    assert config == Config(
        table_name="verdicts", topic_arn=TOPIC, policy_bucket="gatekeeper-policy",
        policy_key="policies/strict.yaml",
        markers=MarkerScheme(approved="passed-{digest}", quarantined="blocked-{digest12}"),
        policy_cache_seconds=30, reevaluation_queue_url=QUEUE, scan_timeout_minutes=45,
        start_scans=True, lease_seconds=120, lease_wait_seconds=15, history_retention_days=400)


def test_a_complete_environment_gives_the_sweeper_typed_values() -> None:
    config = SweeperConfig.from_env(COMPLETE)

    assert config == SweeperConfig(
        table_name="verdicts", topic_arn=TOPIC, policy_bucket="gatekeeper-policy",
        policy_key="policies/strict.yaml", reevaluation_queue_url=QUEUE,
        scan_timeout_minutes=45, history_retention_days=400)


def test_the_slack_notifier_reads_its_secret_arn() -> None:
    assert SlackConfig.from_env({SECRET_ENV: SECRET}) == SlackConfig(secret_arn=SECRET)
    # (surrounding blanks are dropped, as before)
    assert SlackConfig.from_env({SECRET_ENV: f" {SECRET}\n"}).secret_arn == SECRET


def test_what_is_not_set_takes_its_default() -> None:
    # Given only the required variables (a variable set to "" counts as unset)
    config = Config.from_env({**MINIMAL, "GATEKEEPER_LEASE_SECONDS": ""})

    # Then the rest take their defaults
    assert config == Config(table_name="verdicts", topic_arn=TOPIC,
                            policy_bucket="gatekeeper-policy", policy_key="policy.yaml",
                            markers=MarkerScheme())
    assert (config.policy_cache_seconds, config.reevaluation_queue_url,
            config.scan_timeout_minutes, config.start_scans, config.lease_seconds,
            config.lease_wait_seconds, config.history_retention_days) == (
        60, None, 60, False, 90, 20, None)
    sweeper = SweeperConfig.from_env({**MINIMAL, "GATEKEEPER_REEVALUATION_QUEUE_URL": QUEUE})
    assert (sweeper.policy_key, sweeper.scan_timeout_minutes,
            sweeper.history_retention_days) == ("policy.yaml", 60, None)


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("false", False), ("TRUE", True), ("False", False), (" true ", True)])
def test_start_scans_reads_true_or_false_in_any_case(raw: str, expected: bool) -> None:
    assert Config.from_env({**MINIMAL, "GATEKEEPER_START_SCANS": raw}).start_scans is expected


def test_a_history_retention_of_zero_keeps_history_for_ever() -> None:
    env = {**MINIMAL, "GATEKEEPER_HISTORY_RETENTION_DAYS": "0",
           "GATEKEEPER_REEVALUATION_QUEUE_URL": QUEUE}
    assert Config.from_env(env).history_retention_days is None
    assert SweeperConfig.from_env(env).history_retention_days is None


def test_the_sweep_queue_is_optional_and_checked_like_the_reevaluation_queue() -> None:
    # Given the sweeper's environment, with and without the sweep queue
    env = {**MINIMAL, "GATEKEEPER_REEVALUATION_QUEUE_URL": QUEUE}
    sweeps = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/sweeps"
    # Then without it a sweep runs to its end in one invocation; with it, it hands on there
    assert SweeperConfig.from_env(env).sweep_queue_url is None
    assert SweeperConfig.from_env(
        {**env, "GATEKEEPER_SWEEP_QUEUE_URL": sweeps}).sweep_queue_url == sweeps
    # and a value that is not a queue URL is refused, named
    with pytest.raises(ConfigError, match=r"GATEKEEPER_SWEEP_QUEUE_URL must be an SQS queue"):
        SweeperConfig.from_env({**env, "GATEKEEPER_SWEEP_QUEUE_URL": "sweeps"})


def test_an_emulator_s_http_queue_url_is_accepted_where_an_endpoint_names_the_emulator() -> None:
    # Given LocalStack or a moto server, whose queue URLs are http://
    url = f"http://localhost:4566/{ACCOUNT}/reevaluations"
    env = {**MINIMAL, "GATEKEEPER_REEVALUATION_QUEUE_URL": url}

    # Then it is accepted with AWS_ENDPOINT_URL set, and only then
    endpoint = {**env, "AWS_ENDPOINT_URL": "http://localhost:4566"}
    assert SweeperConfig.from_env(endpoint).reevaluation_queue_url == url
    with pytest.raises(ConfigError, match=r"GATEKEEPER_REEVALUATION_QUEUE_URL must be .*https"):
        SweeperConfig.from_env(env)


# --- each variable, each wrong value: the message names it, what is wrong, what was expected --

REQUIRED = [
    # (variable, what the message says was expected)
    ("GATEKEEPER_TABLE", "the verdict table's name"),
    ("GATEKEEPER_TOPIC_ARN", "an SNS topic ARN"),
    ("GATEKEEPER_POLICY_BUCKET", "the policy bucket's name"),
]


@pytest.mark.parametrize("config_class", [JUDGING, SWEEPER])
@pytest.mark.parametrize(("name", "expected"), REQUIRED)
@pytest.mark.parametrize("unset", [None, ""], ids=["absent", "empty"])
def test_a_missing_required_variable_is_named(config_class: Any, name: str, expected: str,
                                              unset: str | None) -> None:
    # Given a complete environment but for this variable
    env = {k: v for k, v in COMPLETE.items() if k != name}
    if unset is not None:
        env[name] = unset

    # When it is parsed; Then the error names the variable and what it should hold
    error = problem_of(config_class, env)
    (problem,) = error.problems
    assert problem.startswith(f"{name} is not set: expected {expected}")
    assert str(error) == problem


def test_the_sweeper_requires_the_reevaluation_queue_url() -> None:
    env = {k: v for k, v in COMPLETE.items() if k != "GATEKEEPER_REEVALUATION_QUEUE_URL"}

    error = problem_of(SweeperConfig, env)

    assert str(error).startswith("GATEKEEPER_REEVALUATION_QUEUE_URL is not set: expected an "
                                 "SQS queue URL (https://")
    # while the judging functions, which do not send to it, run without it
    assert Config.from_env(env).reevaluation_queue_url is None


WRONG_VALUES = [
    # (variable, wrong value, what the message must say)
    ("GATEKEEPER_TABLE", "ab", "must be the verdict table's name (3 to 255"),
    ("GATEKEEPER_TABLE", "verdicts table", "must be the verdict table's name"),
    ("GATEKEEPER_TOPIC_ARN", "verdicts", "must be an SNS topic ARN (arn:aws:sns:"),
    ("GATEKEEPER_TOPIC_ARN", f"arn:aws:sqs:us-east-1:{ACCOUNT}:verdicts",
     "must be an SNS topic ARN"),
    ("GATEKEEPER_TOPIC_ARN", "arn:aws:sns:us-east-1:1234:verdicts", "must be an SNS topic ARN"),
    ("GATEKEEPER_POLICY_BUCKET", "Gatekeeper_Policy", "must be the policy bucket's name"),
    ("GATEKEEPER_POLICY_BUCKET", "s3://gatekeeper-policy", "must be the policy bucket's name"),
    ("GATEKEEPER_REEVALUATION_QUEUE_URL", "reevaluations", "must be an SQS queue URL (https://"),
    ("GATEKEEPER_REEVALUATION_QUEUE_URL", f"arn:aws:sqs:us-east-1:{ACCOUNT}:reevaluations",
     "must be an SQS queue URL"),
    ("GATEKEEPER_REEVALUATION_QUEUE_URL", f"http://sqs.us-east-1.amazonaws.com/{ACCOUNT}/q",
     "http:// is only for an emulator"),
    ("GATEKEEPER_SCAN_TIMEOUT_MINUTES", "sixty", "must be an integer from 1 to 43200"),
    ("GATEKEEPER_SCAN_TIMEOUT_MINUTES", "1.5", "must be an integer from 1 to 43200"),
    ("GATEKEEPER_SCAN_TIMEOUT_MINUTES", "0", "out of range: expected an integer from 1 to 43200"),
    ("GATEKEEPER_SCAN_TIMEOUT_MINUTES", "-5", "out of range: expected an integer from 1"),
    ("GATEKEEPER_SCAN_TIMEOUT_MINUTES", "43201", "out of range: expected an integer from 1"),
    ("GATEKEEPER_HISTORY_RETENTION_DAYS", "a year", "must be an integer from 0 to 36500"),
    ("GATEKEEPER_HISTORY_RETENTION_DAYS", "-1", "out of range: expected an integer from 0 to "
     "36500"),
    ("GATEKEEPER_HISTORY_RETENTION_DAYS", "36501", "out of range"),
]
JUDGING_ONLY = [
    ("GATEKEEPER_POLICY_CACHE_SECONDS", "1m", "must be an integer from 0 to 86400"),
    ("GATEKEEPER_POLICY_CACHE_SECONDS", "1_000", "must be an integer from 0 to 86400"),
    ("GATEKEEPER_POLICY_CACHE_SECONDS", "-1", "out of range: expected an integer from 0 to "
     "86400"),
    ("GATEKEEPER_LEASE_SECONDS", "ninety", "must be an integer from 1 to 3600"),
    ("GATEKEEPER_LEASE_SECONDS", "0", "out of range: expected an integer from 1 to 3600"),
    ("GATEKEEPER_LEASE_SECONDS", "3601", "out of range: expected an integer from 1 to 3600"),
    ("GATEKEEPER_LEASE_WAIT_SECONDS", "0x10", "must be an integer from 0 to 900"),
    ("GATEKEEPER_LEASE_WAIT_SECONDS", "-1", "out of range: expected an integer from 0 to 900"),
    ("GATEKEEPER_LEASE_WAIT_SECONDS", "901", "out of range"),
    ("GATEKEEPER_START_SCANS", "yes", "must be true or false, not 'yes'"),
    ("GATEKEEPER_START_SCANS", "1", "must be true or false, not '1'"),
    ("GATEKEEPER_START_SCANS", "on", "must be true or false"),
    ("GATEKEEPER_APPROVED_TAG", "approved", "must contain exactly one of {digest12} or {digest}"),
    ("GATEKEEPER_APPROVED_TAG", "sha-{digest12}", "starts with 'sha'"),
    ("GATEKEEPER_QUARANTINED_TAG", "quarantined {digest12}", "characters a tag cannot hold"),
]


def _check_named(config_class: Any, name: str, value: str, says: str) -> None:
    # Given a complete environment but for one wrong value; When it is parsed
    error = problem_of(config_class, {**COMPLETE, name: value})

    # Then the one problem names the variable and says what is wrong and what was expected
    (problem,) = error.problems
    assert problem.startswith(name), problem
    assert says in problem
    assert str(error) == problem


@pytest.mark.parametrize("config_class", [JUDGING, SWEEPER])
@pytest.mark.parametrize(("name", "value", "says"), WRONG_VALUES)
def test_a_wrong_value_is_named_with_what_was_expected(config_class: Any, name: str, value: str,
                                                       says: str) -> None:
    _check_named(config_class, name, value, says)


@pytest.mark.parametrize(("name", "value", "says"), JUDGING_ONLY)
def test_a_wrong_value_of_the_judging_functions_is_named(name: str, value: str,
                                                         says: str) -> None:
    _check_named(Config, name, value, says)


@pytest.mark.parametrize(("name", "value", "_"), JUDGING_ONLY)
def test_the_sweeper_ignores_what_only_the_judging_functions_read(name: str, value: str,
                                                                   _: str) -> None:
    assert SweeperConfig.from_env({**COMPLETE, name: value}).table_name == "verdicts"


def test_clashing_marker_templates_name_both_variables() -> None:
    env = {**COMPLETE, "GATEKEEPER_APPROVED_TAG": "marker-{digest12}",
           "GATEKEEPER_QUARANTINED_TAG": "marker-{digest12}"}

    (problem,) = problem_of(Config, env).problems

    assert problem.startswith("GATEKEEPER_APPROVED_TAG and GATEKEEPER_QUARANTINED_TAG: ")
    assert "must differ" in problem


def test_every_problem_of_an_environment_is_reported_at_once() -> None:
    # Given an environment with a problem in nearly every variable
    env = {
        "GATEKEEPER_TOPIC_ARN": "verdicts",
        "GATEKEEPER_POLICY_BUCKET": "",
        "GATEKEEPER_START_SCANS": "yes",
        "GATEKEEPER_LEASE_SECONDS": "0",
        "GATEKEEPER_POLICY_CACHE_SECONDS": "soon",
        "GATEKEEPER_APPROVED_TAG": "approved",
        "GATEKEEPER_REEVALUATION_QUEUE_URL": "reevaluations",
    }

    # When it is parsed
    error = problem_of(Config, env)

    # Then one error lists them all, each naming its variable
    named = [problem.split(" ", 1)[0].rstrip(":") for problem in error.problems]
    assert named == ["GATEKEEPER_TABLE", "GATEKEEPER_TOPIC_ARN", "GATEKEEPER_POLICY_BUCKET",
                     "GATEKEEPER_APPROVED_TAG", "GATEKEEPER_POLICY_CACHE_SECONDS",
                     "GATEKEEPER_REEVALUATION_QUEUE_URL", "GATEKEEPER_START_SCANS",
                     "GATEKEEPER_LEASE_SECONDS"]
    assert str(error).startswith("8 problems in the environment: GATEKEEPER_TABLE is not set")
    for problem in error.problems:
        assert problem in str(error)


def test_the_sweeper_reports_its_problems_at_once_too() -> None:
    error = problem_of(SweeperConfig, {"GATEKEEPER_TABLE": "verdicts",
                                       "GATEKEEPER_SCAN_TIMEOUT_MINUTES": "0"})

    assert [p.split(" ", 1)[0] for p in error.problems] == [
        "GATEKEEPER_TOPIC_ARN", "GATEKEEPER_POLICY_BUCKET", "GATEKEEPER_SCAN_TIMEOUT_MINUTES",
        "GATEKEEPER_REEVALUATION_QUEUE_URL"]


@pytest.mark.parametrize("unset", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_without_the_secret_arn_the_slack_notifier_says_what_to_deploy(unset: str | None) -> None:
    env = {} if unset is None else {SECRET_ENV: unset}

    with pytest.raises(ConfigError) as raised:
        SlackConfig.from_env(env)

    assert str(raised.value) == ("GATEKEEPER_SLACK_SECRET_ARN is not set: deploy with "
                                 "SlackWebhookSecretArn")


@pytest.mark.parametrize("value", [
    "gatekeeper/slack-webhook",  # a name, not an ARN
    f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/slack-webhook",
    f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:slack-webhook",  # no secret: part
    "arn:aws:secretsmanager:us-east-1:12345:secret:slack-webhook",  # not an account
    "https://hooks.slack.com/services/T0/B0/XXXX",  # the webhook itself
])
def test_a_secret_arn_of_the_wrong_shape_is_named(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        SlackConfig.from_env({SECRET_ENV: value})

    message = str(raised.value)
    assert message.startswith("GATEKEEPER_SLACK_SECRET_ARN must be a Secrets Manager secret ARN "
                              "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)")
    assert "SlackWebhookSecretArn" in message


def test_a_long_wrong_value_is_shown_cut_short() -> None:
    (problem,) = problem_of(Config, {**MINIMAL, "GATEKEEPER_TABLE": "x" * 1000}).problems
    assert len(problem) < 200 and problem.endswith("...'")


# --- the environments the template, the tests and the benchmarks give parse -----------------

TEMPLATE = ROOT / "template.yaml"
CONFIG_OF = {  # each function of the template: the configuration its handler reads
    "OnPushFunction": Config,
    "OnScanFunction": Config,
    "OnReevaluateFunction": Config,
    "SweeperFunction": SweeperConfig,
    "SlackNotifierFunction": SlackConfig,
    "EcsDeploymentHookFunction": EcsHookConfig,
    "VerdictApiFunction": VerdictApiConfig,
    "KevRefreshFunction": KevRefreshConfig,
}
# What CloudFormation's Ref gives for the stack's resources of each type (the names are
# generated: stack name, logical id, a random suffix; buckets' in lower case).
REF_OF_TYPE = {
    "AWS::DynamoDB::Table": lambda id_: f"gatekeeper-{id_}-1A2B3C4D5E6F",
    "AWS::SNS::Topic": lambda id_: f"arn:aws:sns:eu-west-1:{ACCOUNT}:gatekeeper-{id_}-1A2B3C",
    "AWS::S3::Bucket": lambda id_: f"gatekeeper-{id_.lower()}-1a2b3c4d5e6f",
    "AWS::SQS::Queue": lambda id_: (f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/"
                                    f"gatekeeper-{id_}-1A2B3C"),
}
# What CloudFormation's Fn::GetAtt gives, by resource type and attribute.
GETATT_OF_TYPE = {
    ("AWS::KMS::Key", "Arn"): lambda id_: (f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/"
                                           "1234abcd-12ab-34cd-56ef-1234567890ab"),
}
# Parameters whose default is empty, for the functions that exist only when they are given.
# (OrganizationId: empty is the single-account stack, the default deployment.)
GIVEN = {"SlackWebhookSecretArn": SECRET, "OrganizationId": ""}


class _Template(yaml.SafeLoader):
    """template.yaml with its short-form intrinsics (!Ref X) kept as {"Ref": X}."""


_Template.add_multi_constructor("!", lambda loader, suffix, node: {
    ("Ref" if suffix == "Ref" else f"Fn::{suffix}"): (
        loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
        else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node))})


def template() -> dict[str, Any]:
    with TEMPLATE.open() as text:
        return yaml.load(text, Loader=_Template)  # a SafeLoader subclass


def function_environment(cfn: dict[str, Any], function_id: str) -> dict[str, str]:
    """The function's variables (Globals merged), as CloudFormation resolves them with the
    parameters' defaults."""
    variables = {**cfn["Globals"]["Function"]["Environment"]["Variables"],
                 **(cfn["Resources"][function_id]["Properties"].get("Environment") or {}
                    ).get("Variables", {})}
    return {name: resolve(cfn, value) for name, value in variables.items()}


def resolve(cfn: dict[str, Any], value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    (ref,) = value.values()
    if list(value) == ["Fn::GetAtt"]:
        logical_id, attribute = ref.split(".", 1) if isinstance(ref, str) else ref
        kind = cfn["Resources"][logical_id]["Type"]
        return GETATT_OF_TYPE[(kind, attribute)](logical_id)
    assert list(value) == ["Ref"], f"unexpected intrinsic {value}"
    if ref == "AWS::AccountId":  # the pseudo parameter: the stack's account
        return ACCOUNT
    if ref in cfn["Parameters"]:
        default = str(cfn["Parameters"][ref].get("Default", ""))
        return default or GIVEN[ref]
    resource = cfn["Resources"][ref]
    return REF_OF_TYPE[resource["Type"]](ref)


def test_every_function_of_the_template_has_its_configuration() -> None:
    functions = {id_ for id_, r in template()["Resources"].items()
                 if r["Type"] == "AWS::Serverless::Function"}
    assert functions == set(CONFIG_OF)


@pytest.mark.parametrize(("function_id", "config_class"), CONFIG_OF.items())
def test_the_template_s_defaults_parse_for_each_function(function_id: str,
                                                         config_class: Any) -> None:
    # Given the environment the template gives the function, with the parameters' defaults
    cfn = template()
    env = function_environment(cfn, function_id)

    # When its handler reads its configuration; Then it parses, with the template's values
    config = config_class.from_env(env)
    if config_class is SlackConfig:
        pattern = cfn["Parameters"]["SlackWebhookSecretArn"]["AllowedPattern"]
        assert re.fullmatch(pattern, config.secret_arn)  # the sample is one the stack accepts
        return
    if config_class is EcsHookConfig:
        assert config.topic_arn == env["GATEKEEPER_TOPIC_ARN"]
        # And the verdict gate it asks (runtime.verdict_gate) has every setting it reads
        gate = GateConfig.from_env(env)
        assert gate.table_name == env["GATEKEEPER_TABLE"]
        assert gate.signing_key_arn == env["GATEKEEPER_SIGNING_KEY_ARN"]
        assert gate.other_registries == cfn["Parameters"]["OtherRegistries"]["Default"]
        return
    if config_class is VerdictApiConfig:
        assert config.table_name == env["GATEKEEPER_TABLE"]  # all it reads
        return
    if config_class is KevRefreshConfig:
        assert config.catalog_url == cfn["Parameters"]["KevCatalogUrl"]["Default"]
        assert config.operator_topic_arn == env["GATEKEEPER_OPERATOR_TOPIC_ARN"]
        assert config.policy_bucket == env["GATEKEEPER_POLICY_BUCKET"]
        return
    assert config.policy_key == cfn["Parameters"]["PolicyObjectKey"]["Default"]
    assert config.scan_timeout_minutes == cfn["Parameters"]["ScanTimeoutMinutes"]["Default"]
    assert config.history_retention_days == cfn["Parameters"]["HistoryRetentionDays"]["Default"]
    assert config.reevaluation_queue_url == env["GATEKEEPER_REEVALUATION_QUEUE_URL"]
    if config_class is Config:
        assert config.start_scans is True  # StartScanIfNotOnPush defaults to "true"
        assert config.lease_seconds == 90
        assert config.signing_key_arn == env["GATEKEEPER_SIGNING_KEY_ARN"]  # verdicts signed
        assert config.markers == MarkerScheme(
            approved=cfn["Parameters"]["ApprovedTagTemplate"]["Default"],
            quarantined=cfn["Parameters"]["QuarantinedTagTemplate"]["Default"])


def test_the_integration_tests_environment_parses() -> None:
    # tests/integration/conftest.py: World.environment() (tests/support.make_world, on moto)
    # plus no policy cache
    env = {"GATEKEEPER_TABLE": "verdicts", "GATEKEEPER_TOPIC_ARN": TOPIC,
           "GATEKEEPER_POLICY_BUCKET": "gatekeeper-policy", "GATEKEEPER_POLICY_KEY": "policy.yaml",
           "GATEKEEPER_POLICY_CACHE_SECONDS": "0"}

    config = Config.from_env(env)

    assert (config.table_name, config.policy_cache_seconds) == ("verdicts", 0)


def lambda_env() -> dict[str, str]:
    """benchmarks/common.py's LAMBDA_ENV, read from its source (no import of the benchmarks)."""
    tree = ast.parse((ROOT / "benchmarks" / "common.py").read_text())
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "LAMBDA_ENV"):
            return dict(ast.literal_eval(node.value))
    raise AssertionError("benchmarks/common.py has no LAMBDA_ENV")


@pytest.mark.parametrize("config_class", [JUDGING, SWEEPER])
def test_the_benchmarks_lambda_environment_parses(config_class: Any) -> None:
    env = lambda_env()

    config = config_class.from_env(env)

    assert config.reevaluation_queue_url == env["GATEKEEPER_REEVALUATION_QUEUE_URL"]


def test_the_ecs_hook_needs_its_topic() -> None:
    # Given no topic; Then the hook's configuration names the variable
    with pytest.raises(ConfigError, match="GATEKEEPER_TOPIC_ARN is not set"):
        EcsHookConfig.from_env({})
    with pytest.raises(ConfigError, match="GATEKEEPER_TOPIC_ARN must be an SNS topic ARN"):
        EcsHookConfig.from_env({"GATEKEEPER_TOPIC_ARN": "verdicts"})
    topic = "arn:aws:sns:us-east-1:123456789012:verdicts"
    assert EcsHookConfig.from_env({"GATEKEEPER_TOPIC_ARN": topic}).topic_arn == topic


# --- the verdict API ------------------------------------------------------------------------

def test_the_verdict_api_reads_only_the_table_name() -> None:
    # Given only the table's name; When the API's configuration is read; Then that is all
    assert VerdictApiConfig.from_env({"GATEKEEPER_TABLE": "verdicts"}) == VerdictApiConfig(
        table_name="verdicts")


@pytest.mark.parametrize(("env", "says"), [
    ({}, "GATEKEEPER_TABLE is not set"),
    ({"GATEKEEPER_TABLE": "no spaces allowed"}, "GATEKEEPER_TABLE must be the verdict table"),
])
def test_the_verdict_api_without_its_table_is_a_config_error(env: dict[str, str],
                                                              says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        VerdictApiConfig.from_env(env)
