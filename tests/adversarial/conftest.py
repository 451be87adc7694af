"""Fixtures for the adversarial suites: an in-process moto account (as the integration tests
have), and a moto server shared by a module on which many simulated containers race."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import pytest
from moto import mock_aws

from gatekeeper import runtime
from gatekeeper.config import Config
from gatekeeper.observability import metrics
from gatekeeper_tools.local.stack import LambdaContext
from tests.adversarial.harness import MotoServer, ServerSession, deploy, start_server
from tests.support import World, make_world


@pytest.fixture
def context() -> LambdaContext:
    return LambdaContext("gatekeeper-adversarial", 256,
                         "arn:aws:lambda:us-east-1:123456789012:function:gatekeeper-adversarial",
                         "6f1c2a7e-4b8d-4d1e-9a53-0c2b7d9e1f44")


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Given an account in moto (in-process) with the gatekeeper deployed, and the handlers'
    environment pointing at it; the handlers build their Gatekeeper from that environment on
    the world's session (``configure`` changes the environment and rebuilds it)."""
    with mock_aws():
        world = make_world()
        for name, value in {**world.environment(),
                            "GATEKEEPER_POLICY_CACHE_SECONDS": "0"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(runtime, "gatekeeper",
                            functools.cache(lambda: runtime.build(Config.from_env(),
                                                                  world.session)))
        yield world
        metrics.clear_metrics()


@pytest.fixture
def configure(world: World, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Config]:
    """Set the functions' environment variables (as the template would) and have the handlers'
    next call build their Gatekeeper from it; returns the parsed configuration."""
    def apply(**env: str) -> Config:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        runtime.gatekeeper.cache_clear()  # type: ignore[attr-defined]
        return Config.from_env()

    return apply


@pytest.fixture(scope="module")
def moto_server(request: pytest.FixtureRequest) -> Iterator[MotoServer]:
    """A ThreadedMotoServer on a free port of 127.0.0.1, started once per module, with its
    DynamoDB requests serialized (see harness.SerializedDynamoDB); a module's
    ``ECR_LATENCY = (min, max)`` seconds delays each ECR request as the real service would."""
    handle = start_server(ecr_latency=getattr(request.module, "ECR_LATENCY", (0.0, 0.0)))
    yield handle.moto
    handle.server.stop()


@pytest.fixture
def remote_world(moto_server: MotoServer) -> World:
    """Given the gatekeeper deployed in the moto server (reset first: a clean account)."""
    moto_server.reset()
    return deploy(ServerSession(moto_server.url))
