"""Fixtures for the adversarial suites: an in-process moto account (``context`` and ``world``,
shared with the integration tests in tests.aws_fixtures) that ``configure`` reconfigures, and
a moto server shared by a module on which many simulated containers race."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from gatekeeper import runtime
from gatekeeper.config import Config
from tests.adversarial.harness import MotoServer, ServerSession, deploy, start_server
from tests.aws_fixtures import context, world
from tests.support import World

__all__ = ["configure", "context", "moto_server", "remote_world", "world"]


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
