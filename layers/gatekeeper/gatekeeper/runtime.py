"""Wiring for Lambda: configuration and AWS clients built once per container, on first use.

Each factory reads its own function's configuration (:mod:`gatekeeper.config`): the judging
functions :class:`Config`, the sweeper :class:`SweeperConfig`, the Slack notifier
:class:`SlackConfig`, the verdict API :class:`VerdictApiConfig`, the verdict gate
:class:`GateConfig`. A factory is cached, so the environment is read and checked once
per container; a ConfigError fails that invocation, and the next one reads it again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

import boto3
from botocore.config import Config as BotoConfig

from gatekeeper.adapters.ecr import EcrImages
from gatekeeper.adapters.notifier import SnsNotifier
from gatekeeper.adapters.policy_source import S3PolicySource
from gatekeeper.adapters.queue import ReevaluationQueue, SweepQueue
from gatekeeper.adapters.signing import KmsSigner
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.config import (
    Config,
    EcsHookConfig,
    GateConfig,
    SlackConfig,
    SweeperConfig,
    VerdictApiConfig,
)
from gatekeeper.service import Gatekeeper, Leases

if TYPE_CHECKING:
    from gatekeeper.domain.admission import Gate
    from gatekeeper.service.ecs_hook import EcsDeploymentHook
    from gatekeeper.service.gate import VerdictGate
    from gatekeeper.service.slack import SlackNotifier
    from gatekeeper.service.verdict_api import VerdictApi

# Standard retry mode absorbs throttling; shared by the functions and the operator CLI.
BOTO_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5,
                         read_timeout=20)
# The verdict API's caller waits: fewer, shorter retries (the function times out at 10 s; a
# read that still fails answers 503 and the caller retries).
API_BOTO_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2,
                             read_timeout=3)


def now() -> datetime:
    """The clock every verdict and sweep reads (one place to move it in tests)."""
    return datetime.now(UTC)


def build(config: Config, session: boto3.session.Session | None = None) -> Gatekeeper:
    session = session or boto3.session.Session()
    store = verdict_store(config, session)
    return Gatekeeper(
        images=EcrImages(session.client("ecr", config=BOTO_CONFIG)),
        store=store,
        notifier=SnsNotifier(session.client("sns", config=BOTO_CONFIG), config.topic_arn),
        policies=S3PolicySource(session.client("s3", config=BOTO_CONFIG), config.policy_bucket,
                                config.policy_key, config.policy_cache_seconds),
        markers=config.markers,
        clock=lambda: now(),
        start_scans=config.start_scans,
        leases=Leases(store, config.lease_seconds, config.lease_wait_seconds),
        signer=(KmsSigner(session.client("kms", config=BOTO_CONFIG), config.signing_key_arn)
                if config.signing_key_arn else None),
    )


def build_gate(config: GateConfig, session: boto3.session.Session | None = None
               ) -> VerdictGate:
    """The stack's verdict gate: ECR resolves tags, the table holds verdicts, KMS verifies
    (its modules imported here: only the functions that gate deployments load them)."""
    from gatekeeper.adapters.signing import KmsVerifier
    from gatekeeper.service.gate import VerdictGate

    session = session or boto3.session.Session()
    return VerdictGate(
        images=EcrImages(session.client("ecr", config=BOTO_CONFIG)),
        store=VerdictStore(session.client("dynamodb", config=BOTO_CONFIG), config.table_name),
        verifier=KmsVerifier(session.client("kms", config=BOTO_CONFIG), config.signing_key_arn),
        config=config,
    )


def verdict_store(config: Config | SweeperConfig, session: boto3.session.Session) -> VerdictStore:
    retention = (timedelta(days=config.history_retention_days)
                 if config.history_retention_days else None)
    return VerdictStore(session.client("dynamodb", config=BOTO_CONFIG), config.table_name,
                        retention)


@cache
def gatekeeper() -> Gatekeeper:
    """The container's Gatekeeper, from the environment the template sets."""
    return build(Config.from_env())


@cache
def verdict_gate() -> VerdictGate:
    """The container's verdict gate (the verdict API, the ECS hook), from the environment
    (GATEKEEPER_TABLE, GATEKEEPER_SIGNING_KEY_ARN, GATEKEEPER_OTHER_REGISTRIES)."""
    return build_gate(GateConfig.from_env())


class SweeperDeps(NamedTuple):
    store: VerdictStore
    queue: ReevaluationQueue
    config: SweeperConfig
    notifier: SnsNotifier
    sweeps: SweepQueue | None = None  # where a long sweep hands the rest on (None: it doesn't)


@cache
def sweeper() -> SweeperDeps:
    """The sweeper's store, queues and notifier (digests), from the template's environment."""
    config = SweeperConfig.from_env()  # the queue URL is required there
    session = boto3.session.Session()
    sqs = session.client("sqs", config=BOTO_CONFIG)
    return SweeperDeps(
        verdict_store(config, session),
        ReevaluationQueue(sqs, config.reevaluation_queue_url),
        config,
        SnsNotifier(session.client("sns", config=BOTO_CONFIG), config.topic_arn),
        SweepQueue(sqs, config.sweep_queue_url) if config.sweep_queue_url else None)


@cache
def slack_notifier() -> SlackNotifier:
    """The Slack function's notifier, from the environment the template sets (its modules
    imported here: the judging functions never load them)."""
    from gatekeeper.adapters.secrets import SecretWebhooks
    from gatekeeper.adapters.webhook import WebhookPoster
    from gatekeeper.service.slack import SlackNotifier

    config = SlackConfig.from_env()
    return SlackNotifier(SecretWebhooks(config.secret_arn), WebhookPoster())


# --- the ECS deployment hook ---------------------------------------------------------------

def build_ecs_hook(config: EcsHookConfig, session: boto3.session.Session | None = None,
                   gate: Callable[[], Gate] | None = None) -> EcsDeploymentHook:
    """The hook's ECS reader, gate and notifier (its modules imported here: the judging
    functions never load them). The gate is the stack's verdict gate, built on first use: a
    ConfigError building it (no signing key, a wrong setting) fails the hook closed."""
    from gatekeeper.adapters.ecs import EcsDeployments
    from gatekeeper.service.ecs_hook import EcsDeploymentHook

    session = session or boto3.session.Session()
    return EcsDeploymentHook(
        EcsDeployments(session.client("ecs", config=BOTO_CONFIG)), gate=gate or verdict_gate,
        notifier=SnsNotifier(session.client("sns", config=BOTO_CONFIG), config.topic_arn),
        now=lambda: now().isoformat())


@cache
def ecs_hook() -> EcsDeploymentHook:
    """The ECS deployment hook function's use case, from the environment the template sets."""
    return build_ecs_hook(EcsHookConfig.from_env())


# --- the verdict API -----------------------------------------------------------------------

def build_verdict_api(config: VerdictApiConfig,
                      session: boto3.session.Session | None = None) -> VerdictApi:
    """The verdict API's use case on the table (GetItem) and ECR (DescribeImages, for tags)."""
    from gatekeeper.service.verdict_api import VerdictApi

    session = session or boto3.session.Session()
    return VerdictApi(
        records=VerdictStore(session.client("dynamodb", config=API_BOTO_CONFIG),
                             config.table_name),
        images=EcrImages(session.client("ecr", config=API_BOTO_CONFIG)))


@cache
def verdict_api() -> VerdictApi:
    """The verdict API function's use case, from the environment the template sets."""
    return build_verdict_api(VerdictApiConfig.from_env())
