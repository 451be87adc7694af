"""Runtime configuration, parsed once per container from the environment the template sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gatekeeper.domain.markers import MarkerScheme

SECRET_ENV = "GATEKEEPER_SLACK_SECRET_ARN"  # noqa: S105 - the name of a variable holding an ARN


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
    # The per-image lease: longer than any judging function may run (Lambda ends it at its
    # timeout), so a live holder is never overtaken; how long a second writer waits for it.
    lease_seconds: int = 90
    lease_wait_seconds: int = 20
    history_retention_days: int | None = None  # history items expire (DynamoDB TTL) after it

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        missing = [name for name in _REQUIRED if not env.get(name)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        cache = _integer(env, "GATEKEEPER_POLICY_CACHE_SECONDS", 60)
        timeout = _integer(env, "GATEKEEPER_SCAN_TIMEOUT_MINUTES", 60)
        lease = _integer(env, "GATEKEEPER_LEASE_SECONDS", 90)
        lease_wait = _integer(env, "GATEKEEPER_LEASE_WAIT_SECONDS", 20)
        retention = _integer(env, "GATEKEEPER_HISTORY_RETENTION_DAYS", 0)
        if lease < 1 or lease_wait < 0 or retention < 0:
            raise ConfigError("GATEKEEPER_LEASE_SECONDS must be positive; "
                              "GATEKEEPER_LEASE_WAIT_SECONDS and "
                              "GATEKEEPER_HISTORY_RETENTION_DAYS must not be negative")
        try:
            markers = MarkerScheme(
                approved=env.get("GATEKEEPER_APPROVED_TAG", MarkerScheme.approved),
                quarantined=env.get("GATEKEEPER_QUARANTINED_TAG", MarkerScheme.quarantined),
            )
        except ValueError as err:
            raise ConfigError(f"GATEKEEPER_APPROVED_TAG / GATEKEEPER_QUARANTINED_TAG: {err}"
                              ) from err
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
            lease_seconds=lease,
            lease_wait_seconds=lease_wait,
            history_retention_days=retention or None,
        )


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as err:
        raise ConfigError(f"{name} must be an integer, not {raw!r:.40}") from err


_REQUIRED = ("GATEKEEPER_TABLE", "GATEKEEPER_TOPIC_ARN", "GATEKEEPER_POLICY_BUCKET")
