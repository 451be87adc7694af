"""Runtime configuration, parsed once per container from the environment the template sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gatekeeper.domain.markers import MarkerScheme


class ConfigError(Exception):
    """The function's environment is incomplete or inconsistent (a deployment error)."""


@dataclass(frozen=True)
class Config:
    table_name: str
    topic_arn: str
    policy_bucket: str
    policy_key: str
    markers: MarkerScheme
    policy_cache_seconds: int = 60
    reevaluation_queue_url: str | None = None  # the sweeper's output
    scan_timeout_minutes: int = 60
    start_scans: bool = False  # push: start a basic scan where the repository has none on push

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        missing = [name for name in _REQUIRED if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        try:
            cache = int(env.get("GATEKEEPER_POLICY_CACHE_SECONDS", "60"))
            timeout = int(env.get("GATEKEEPER_SCAN_TIMEOUT_MINUTES", "60"))
        except ValueError as err:
            raise ConfigError("GATEKEEPER_POLICY_CACHE_SECONDS and "
                              "GATEKEEPER_SCAN_TIMEOUT_MINUTES must be integers") from err
        try:
            markers = MarkerScheme(
                approved=env.get("GATEKEEPER_APPROVED_TAG", MarkerScheme.approved),
                quarantined=env.get("GATEKEEPER_QUARANTINED_TAG", MarkerScheme.quarantined),
            )
        except ValueError as err:
            raise ConfigError(str(err)) from err
        return cls(
            table_name=env["GATEKEEPER_TABLE"],
            topic_arn=env["GATEKEEPER_TOPIC_ARN"],
            policy_bucket=env["GATEKEEPER_POLICY_BUCKET"],
            policy_key=env.get("GATEKEEPER_POLICY_KEY") or "policy.yaml",
            markers=markers,
            policy_cache_seconds=max(0, cache),
            reevaluation_queue_url=env.get("GATEKEEPER_REEVALUATION_QUEUE_URL") or None,
            scan_timeout_minutes=max(1, timeout),
            start_scans=env.get("GATEKEEPER_START_SCANS", "false").strip().lower() == "true",
        )


_REQUIRED = ("GATEKEEPER_TABLE", "GATEKEEPER_TOPIC_ARN", "GATEKEEPER_POLICY_BUCKET")
