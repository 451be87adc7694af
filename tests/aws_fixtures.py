"""The moto fixtures the integration and adversarial suites share: a Lambda context, and an
in-process moto account with the gatekeeper deployed and the handlers pointed at it.

Their conftests import these fixtures (``from tests.aws_fixtures import context, world``);
the unit tests never do, so this module may need boto3, moto and Powertools."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from moto import mock_aws

from gatekeeper import runtime
from gatekeeper.config import Config, GateConfig
from gatekeeper.observability import metrics
from gatekeeper_tools.local.stack import LambdaContext
from tests.support import World, make_world


@pytest.fixture
def context() -> LambdaContext:
    """The Lambda context a handler receives (a fixed function name and request id)."""
    return LambdaContext("gatekeeper-test", 256,
                         "arn:aws:lambda:us-east-1:123456789012:function:gatekeeper-test",
                         "52fdfc07-2182-154f-163f-5f0f9a621d72")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Given an account in moto (in-process) with the gatekeeper deployed (table, topic,
    policy bucket), and the handlers' environment pointing at it."""
    with mock_aws():
        world = make_world()
        env = {**world.environment(), "GATEKEEPER_POLICY_CACHE_SECONDS": "0"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        # The handlers build their Gatekeeper from the environment, as in Lambda, but on this
        # world's boto3 session so tests can hook its calls. Register hooks, then cache_clear()
        # (or change the environment through the adversarial suites' ``configure``).
        monkeypatch.setattr(runtime, "gatekeeper",
                            functools.cache(lambda: runtime.build(Config.from_env(),
                                                                  world.session)))
        # The verdict gate (the ECS hook's), likewise: the environment's, on the world's session.
        monkeypatch.setattr(runtime, "verdict_gate",
                            functools.cache(lambda: runtime.build_gate(GateConfig.from_env(),
                                                                       world.session)))
        yield world
        metrics.clear_metrics()
