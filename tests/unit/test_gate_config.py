"""The verdict gate's configuration and the judging functions' signing key, from the
environment."""

from __future__ import annotations

import pytest

from gatekeeper.config import Config, ConfigError, GateConfig

KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BASE = {"GATEKEEPER_TABLE": "verdicts",
        "GATEKEEPER_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:verdicts",
        "GATEKEEPER_POLICY_BUCKET": "gatekeeper-policy"}


def test_the_gate_takes_the_stack_registry_from_its_key() -> None:
    config = GateConfig.from_env({"GATEKEEPER_TABLE": "verdicts",
                                  "GATEKEEPER_SIGNING_KEY_ARN": KEY})
    assert (config.account, config.region, config.other_registries) == (
        "123456789012", "eu-west-1", "deny")


def test_other_registries_may_be_allowed() -> None:
    config = GateConfig.from_env({"GATEKEEPER_TABLE": "verdicts",
                                  "GATEKEEPER_SIGNING_KEY_ARN": KEY,
                                  "GATEKEEPER_OTHER_REGISTRIES": "allow"})
    assert config.other_registries == "allow"


def test_the_gate_needs_a_key_and_a_known_setting() -> None:
    with pytest.raises(ConfigError) as raised:
        GateConfig.from_env({"GATEKEEPER_TABLE": "verdicts",
                             "GATEKEEPER_OTHER_REGISTRIES": "maybe"})
    problems = " ".join(raised.value.problems)
    assert "GATEKEEPER_SIGNING_KEY_ARN is not set" in problems
    assert "GATEKEEPER_OTHER_REGISTRIES must be allow or deny" in problems


def test_the_judging_functions_sign_only_with_a_key_arn() -> None:
    assert Config.from_env(BASE).signing_key_arn is None
    assert Config.from_env({**BASE, "GATEKEEPER_SIGNING_KEY_ARN": KEY}).signing_key_arn == KEY
    with pytest.raises(ConfigError, match="GATEKEEPER_SIGNING_KEY_ARN must be a KMS key ARN"):
        Config.from_env({**BASE, "GATEKEEPER_SIGNING_KEY_ARN": "alias/verdicts"})
