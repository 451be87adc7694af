"""Fixtures for the integration tests: ``context`` and ``world`` (tests.aws_fixtures)."""

from __future__ import annotations

from tests.aws_fixtures import context, world

__all__ = ["context", "world"]
