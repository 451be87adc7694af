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
from functools import cache, lru_cache
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
    KevRefreshConfig,
    SlackConfig,
    SweeperConfig,
    VerdictApiConfig,
)
from gatekeeper.service import Gatekeeper, Leases

if TYPE_CHECKING:
    from gatekeeper.adapters.security_hub import SecurityHubFindings
    from gatekeeper.adapters.spoke import SpokeSessions
    from gatekeeper.domain.admission import Gate
    from gatekeeper.domain.scope import Scope
    from gatekeeper.service.ecs_hook import EcsDeploymentHook
    from gatekeeper.service.gate import VerdictGate
    from gatekeeper.service.hub import Hub
    from gatekeeper.service.kev_refresh import KevRefresh
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
        scope=config.home_scope,
        findings=security_hub(session) if config.security_hub else None,
    )


def security_hub(session: boto3.session.Session) -> SecurityHubFindings:
    """Quarantines as Security Hub findings (GATEKEEPER_SECURITY_HUB=enabled)."""
    from gatekeeper.adapters.security_hub import SecurityHubFindings

    return SecurityHubFindings(session.client("securityhub", config=BOTO_CONFIG),
                               session.client("sts", config=BOTO_CONFIG))


def build_hub(config: Config, home: Callable[[], Gatekeeper],
              session: boto3.session.Session | None = None) -> Hub:
    """The stack's gatekeepers by account and Region: ``home`` for its own, and in
    organization mode each member account's through its spoke role; deferrals go to the
    re-evaluation queue, spoke alerts to the operator topic (their clients built on first
    use; the alerts' table is the home gatekeeper's)."""
    from gatekeeper.service.hub import Deferrals, Hub

    session = session or boto3.session.Session()
    spokes = spoke_sessions(config, session) if config.organization_id else None
    deferrals = None
    if config.reevaluation_queue_url:
        queue_url, topic_arn = config.reevaluation_queue_url, config.operator_topic_arn
        deferrals = Deferrals(
            lambda: ReevaluationQueue(session.client("sqs", config=BOTO_CONFIG), queue_url),
            alerts=home().store,
            operator=lambda: (SnsNotifier(session.client("sns", config=BOTO_CONFIG), topic_arn)
                              if topic_arn else None),
            clock=lambda: now())
    return Hub(home, config.home_scope, spokes, deferrals=deferrals)


def spoke_sessions(config: Config | GateConfig, session: boto3.session.Session
                   ) -> SpokeSessions:
    """The member accounts' spoke roles, assumed with this session's credentials."""
    from gatekeeper.adapters.spoke import SPOKE_BOTO_CONFIG, SpokeSessions

    return SpokeSessions(session.client("sts", config=SPOKE_BOTO_CONFIG), config.spoke_role_name,
                         session.get_partition_for_region(config.region or "us-east-1"))


def build_gate(config: GateConfig, session: boto3.session.Session | None = None
               ) -> VerdictGate:
    """The stack's verdict gate: ECR resolves tags, the table holds verdicts, KMS verifies
    (its modules imported here: only the functions that gate deployments load them)."""
    from gatekeeper.adapters.signing import KmsVerifier
    from gatekeeper.service.gate import VerdictGate

    session = session or boto3.session.Session()
    member_images = None
    if config.organization_id:
        spokes = spoke_sessions(config, session)

        def member_images(scope: Scope) -> EcrImages:
            return EcrImages(spokes.client("ecr", scope))

    return VerdictGate(
        images=EcrImages(session.client("ecr", config=BOTO_CONFIG)),
        store=VerdictStore(session.client("dynamodb", config=BOTO_CONFIG), config.table_name),
        verifier=KmsVerifier(session.client("kms", config=BOTO_CONFIG), config.signing_key_arn),
        config=config, member_images=member_images,
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


def hub() -> Hub:
    """The container's gatekeepers by account and Region, around :func:`gatekeeper` (built
    again whenever that is)."""
    return _hub_around(gatekeeper())


@lru_cache(maxsize=1)
def _hub_around(home: Gatekeeper) -> Hub:
    return build_hub(Config.from_env(), home=lambda: home)


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
    # the published policy: a new KEV catalog re-evaluates images only if a rule uses it
    policies: S3PolicySource | None = None
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
        S3PolicySource(session.client("s3", config=BOTO_CONFIG), config.policy_bucket,
                       config.policy_key, max_age_seconds=0, with_catalog=False),
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


# --- the KEV catalog refresh ---------------------------------------------------------------

def build_kev_refresh(config: KevRefreshConfig,
                      session: boto3.session.Session | None = None) -> KevRefresh:
    """The daily refresh: CISA's URL in, the policy bucket's copy out, the operator topic told
    of a failure (its modules imported here: the judging functions never load them)."""
    from gatekeeper.adapters import kev_feed
    from gatekeeper.adapters.notifier import OperatorAlerts
    from gatekeeper.adapters.policy_source import KevCatalogSource
    from gatekeeper.service.kev_refresh import KevRefresh

    session = session or boto3.session.Session()
    return KevRefresh(
        download=lambda: kev_feed.download(config.catalog_url),
        catalogs=KevCatalogSource(session.client("s3", config=BOTO_CONFIG),
                                  config.policy_bucket),
        alerts=OperatorAlerts(session.client("sns", config=BOTO_CONFIG),
                              config.operator_topic_arn),
        source=config.catalog_url, min_entries=config.min_entries)


@cache
def kev_refresh() -> KevRefresh:
    """The KEV refresh function's use case, from the environment the template sets."""
    return build_kev_refresh(KevRefreshConfig.from_env())
