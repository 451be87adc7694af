"""Runtime configuration: one typed, validated configuration per kind of function, parsed from
the environment the template sets.

- :class:`Config`: the judging functions (push, scan, re-evaluate);
- :class:`SweeperConfig`: the sweeper (schedule and policy uploads);
- :class:`SlackConfig`: the Slack notifier;
- :class:`EcsHookConfig`: the ECS deployment lifecycle hook.
- :class:`VerdictApiConfig`: the verdict API (reads the verdict table only).
- :class:`GateConfig`: whatever answers "may this image run?" (the verdict gate).

Each ``from_env`` reads its function's variables and reports every problem it finds in one
:class:`ConfigError`, whose message names each variable, what is wrong with it and what was
expected. :mod:`gatekeeper.runtime` calls them in its cached factories, so each container reads
its environment once. Plain frozen dataclasses and regular expressions: importing this module
costs next to nothing, and a configuration built with its constructor (tests, the operator CLI)
is taken as given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from gatekeeper.domain.kev import KEV_URL, MIN_PLAUSIBLE_ENTRIES
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.scope import REGION, Scope, scope_of

SECRET_ENV = "GATEKEEPER_SLACK_SECRET_ARN"  # noqa: S105 - the name of a variable holding an ARN

# The shapes of what the template passes (`!Ref` of the table, topic, bucket and queue), as
# pattern strings: `re` compiles (and caches) one on its first use, not at import.
_TABLE_NAME = r"[A-Za-z0-9_.-]{3,255}"
_BUCKET_NAME = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
_TOPIC_ARN = r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?"
_QUEUE_URL = (r"(?P<scheme>https?)://[A-Za-z0-9.-]+(:[0-9]+)?/[0-9]{12}/"
              r"[A-Za-z0-9_-]{1,80}(\.fifo)?")
_SM_ARN = (r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:"
           r"[A-Za-z0-9/_+=.@-]+")
_KEY_ARN = (r"arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
            r"key/[A-Za-z0-9-]{1,128}")
_INTEGER = r"\s*[+-]?[0-9]+\s*"
# An emulator's endpoint (LocalStack, a moto server) hands out http:// queue URLs.
_EMULATOR_ENDPOINTS = ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL")

_TABLE = "the verdict table's name (3 to 255 of A-Z a-z 0-9 _ . -)"
_TOPIC = "an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)"
_BUCKET = "the policy bucket's name (3 to 63 of a-z 0-9 . -)"
_QUEUE = "an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
_KEY = "a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
SIGNING_KEY_ENV = "GATEKEEPER_SIGNING_KEY_ARN"
OTHER_REGISTRIES_ENV = "GATEKEEPER_OTHER_REGISTRIES"
SECURITY_HUB_ENV = "GATEKEEPER_SECURITY_HUB"
_SLACK_ARN = "a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)"


class ConfigError(Exception):
    """The function's environment is incomplete or inconsistent (a deployment error).

    ``problems`` holds one sentence per problem, each naming its variable; the message is the
    problem itself when there is one, else all of them.
    """

    def __init__(self, *problems: str) -> None:
        self.problems = problems or ("invalid configuration",)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = (f"{len(self.problems)} problems in the environment: "
                       + "; ".join(self.problems))
        super().__init__(message)


@dataclass(frozen=True)
class Config:
    """The judging functions' configuration (push, scan and re-evaluation handlers)."""

    table_name: str
    topic_arn: str
    policy_bucket: str
    policy_key: str
    markers: MarkerScheme
    policy_cache_seconds: int = 60
    reevaluation_queue_url: str | None = None  # the sweeper's output (SweeperConfig's)
    scan_timeout_minutes: int = 60
    start_scans: bool = False  # push: start a basic scan where the repository has none on push
    # The per-image lease: longer than any judging function may run (Lambda ends it at its
    # timeout), so a live holder is never overtaken; how long a second writer waits for it.
    lease_seconds: int = 90
    lease_wait_seconds: int = 20
    history_retention_days: int | None = None  # history items expire (DynamoDB TTL) after it
    signing_key_arn: str | None = None  # every verdict change is signed with it (None: not)
    # Where the stack runs (its home scope); None: unknown (every image is then its own).
    account_id: str | None = None
    region: str | None = None
    # Organization mode (a hub): the organization whose member accounts' images it judges,
    # through each account's spoke role ``<spoke_role_name>-<Region>``.
    organization_id: str | None = None
    spoke_role_name: str = "ecr-scan-gatekeeper-spoke"
    operator_topic_arn: str | None = None  # operator alerts (a spoke role unavailable)

    @property
    def home_scope(self) -> Scope | None:
        return scope_of(self.account_id, self.region)
    security_hub: bool = False  # quarantines become Security Hub findings (GATEKEEPER_SECURITY_HUB)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """From ``env`` (default: the process environment); ConfigError lists every problem."""
        read = _Reader(os.environ if env is None else env)
        shared = read.shared()
        config = cls(
            table_name=shared.table_name,
            topic_arn=shared.topic_arn,
            policy_bucket=shared.policy_bucket,
            policy_key=shared.policy_key,
            markers=read.markers(),
            policy_cache_seconds=read.integer("GATEKEEPER_POLICY_CACHE_SECONDS", 60, 0, 86_400),
            reevaluation_queue_url=read.queue_url(required=False),
            scan_timeout_minutes=shared.scan_timeout_minutes,
            start_scans=read.boolean("GATEKEEPER_START_SCANS", default=False),
            lease_seconds=read.integer("GATEKEEPER_LEASE_SECONDS", 90, 1, 3_600),
            lease_wait_seconds=read.integer("GATEKEEPER_LEASE_WAIT_SECONDS", 20, 0, 900),
            history_retention_days=shared.history_retention_days,
            signing_key_arn=read.key_arn(required=False),
            **read.organization(),
            security_hub=read.choice(SECURITY_HUB_ENV, ("enabled", "disabled"),
                                     "disabled") == "enabled",
        )
        read.check()
        return config


@dataclass(frozen=True)
class GateConfig:
    """The verdict gate's configuration: where verdicts are, the key that must have signed
    them (required: without it every image would be refused), what to do with images outside
    Amazon ECR, and the stack's own registry (its account and Region: the signing key's)."""

    table_name: str
    signing_key_arn: str
    other_registries: str = "deny"  # "allow" or "deny": images outside Amazon ECR
    account: str = ""
    region: str = ""
    # An organization's hub also answers for its member accounts' registries (their tags
    # resolved through their spoke roles); a single-account stack refuses every other registry.
    organization_id: str | None = None
    spoke_role_name: str = "ecr-scan-gatekeeper-spoke"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GateConfig:
        """From ``env`` (default: the process environment); ConfigError lists every problem."""
        read = _Reader(os.environ if env is None else env)
        table = read.text("GATEKEEPER_TABLE", _TABLE, _TABLE_NAME)
        key = read.key_arn(required=True) or ""
        other = (read.text(OTHER_REGISTRIES_ENV, "allow or deny", default="deny")
                 .strip().lower())
        if other not in ("allow", "deny"):
            read.problems.append(f"{OTHER_REGISTRIES_ENV} must be allow or deny, not "
                                 f"{_shown(other)}")
        organization = read.organization()
        read.check()
        return replace(cls.for_key(table, key, other),
                       organization_id=organization["organization_id"],
                       spoke_role_name=organization["spoke_role_name"] or "")

    @classmethod
    def for_key(cls, table_name: str, key_arn: str, other_registries: str = "deny"
                ) -> GateConfig:
        """The stack's registry is the signing key's account and Region."""
        match = re.fullmatch(_KEY_ARN, key_arn)
        if not match:
            raise ConfigError(f"{SIGNING_KEY_ENV} must be {_KEY}, not {_shown(key_arn)}")
        return cls(table_name=table_name, signing_key_arn=key_arn,
                   other_registries=other_registries, account=match["account"],
                   region=match["region"])


@dataclass(frozen=True)
class SweeperConfig:
    """The sweeper's configuration: where verdicts are, where re-evaluations go (required),
    which object is the policy, and the scan timeout it enforces."""

    table_name: str
    topic_arn: str  # the digests' topic
    policy_bucket: str
    policy_key: str
    reevaluation_queue_url: str
    scan_timeout_minutes: int = 60
    history_retention_days: int | None = None
    # where a sweep hands the rest on when its invocation's time runs short (None: it runs
    # to its end in one invocation)
    sweep_queue_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SweeperConfig:
        """From ``env`` (default: the process environment); ConfigError lists every problem."""
        read = _Reader(os.environ if env is None else env)
        shared = read.shared()
        config = cls(table_name=shared.table_name, topic_arn=shared.topic_arn,
                     policy_bucket=shared.policy_bucket, policy_key=shared.policy_key,
                     reevaluation_queue_url=read.queue_url(required=True) or "",
                     scan_timeout_minutes=shared.scan_timeout_minutes,
                     history_retention_days=shared.history_retention_days,
                     sweep_queue_url=read.queue_url(required=False,
                                                    name="GATEKEEPER_SWEEP_QUEUE_URL"))
        read.check()
        return config


@dataclass(frozen=True)
class SlackConfig:
    """The Slack notifier's configuration: the secret holding its webhooks."""

    secret_arn: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SlackConfig:
        """From ``env`` (default: the process environment); ConfigError says what is wrong."""
        env = os.environ if env is None else env
        secret = (env.get(SECRET_ENV) or "").strip()
        if not secret:
            raise ConfigError(f"{SECRET_ENV} is not set: deploy with SlackWebhookSecretArn")
        if not re.fullmatch(_SM_ARN, secret):
            raise ConfigError(f"{SECRET_ENV} must be {_SLACK_ARN}, not {_shown(secret)}: deploy "
                              "with SlackWebhookSecretArn set to the secret's full ARN")
        return cls(secret_arn=secret)


@dataclass(frozen=True)
class EcsHookConfig:
    """The ECS deployment hook's configuration: the topic its refusals are published to.
    (The gate it asks reads its own settings: the signing key, other registries.)"""

    topic_arn: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EcsHookConfig:
        """From ``env`` (default: the process environment); ConfigError says what is wrong."""
        read = _Reader(os.environ if env is None else env)
        config = cls(topic_arn=read.text("GATEKEEPER_TOPIC_ARN", _TOPIC, _TOPIC_ARN))
        read.check()
        return config


@dataclass(frozen=True)
class VerdictApiConfig:
    """The verdict API's configuration: the table it reads verdicts from."""

    table_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> VerdictApiConfig:
        """From ``env`` (default: the process environment); ConfigError says what is wrong."""
        read = _Reader(os.environ if env is None else env)
        config = cls(table_name=read.text("GATEKEEPER_TABLE", _TABLE, _TABLE_NAME))
        read.check()
        return config


@dataclass(frozen=True)
class KevRefreshConfig:
    """The KEV refresh's configuration: where the catalog comes from and goes (the policy
    bucket), and whom to alert when a refresh fails."""

    policy_bucket: str
    catalog_url: str
    operator_topic_arn: str
    min_entries: int = MIN_PLAUSIBLE_ENTRIES  # fewer CVEs is not CISA's catalog

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KevRefreshConfig:
        """From ``env`` (default: the process environment); ConfigError lists every problem."""
        read = _Reader(os.environ if env is None else env)
        bucket = read.text("GATEKEEPER_POLICY_BUCKET", _BUCKET, _BUCKET_NAME)
        url = read.text("GATEKEEPER_KEV_URL", _KEV, default=KEV_URL)
        match = re.fullmatch(_KEV_URL, url)
        if not match or (match["scheme"] == "http" and match["host"] not in _LOOPBACK):
            read.problems.append(f"GATEKEEPER_KEV_URL must be {_KEV}, not {_shown(url)}")
        config = cls(policy_bucket=bucket, catalog_url=url,
                     operator_topic_arn=read.text("GATEKEEPER_OPERATOR_TOPIC_ARN", _TOPIC,
                                                  _TOPIC_ARN),
                     min_entries=read.integer("GATEKEEPER_KEV_MIN_ENTRIES",
                                              MIN_PLAUSIBLE_ENTRIES, 1, 1_000_000))
        read.check()
        return config


_KEV_URL = r"(?P<scheme>https?)://(?P<host>[A-Za-z0-9.-]+)(:[0-9]+)?(/[^\s]*)?"
_KEV = "an https:// URL of CISA's KEV catalog (http:// only on 127.0.0.1 or localhost)"
_LOOPBACK = ("127.0.0.1", "localhost")


class _Shared(NamedTuple):
    table_name: str
    topic_arn: str
    policy_bucket: str
    policy_key: str
    scan_timeout_minutes: int
    history_retention_days: int | None


class _Reader:
    """Reads variables from an environment, noting every problem rather than stopping at the
    first; :meth:`check` raises them together. A variable set to "" counts as unset."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def check(self) -> None:
        if self.problems:
            raise ConfigError(*self.problems)

    def _get(self, name: str) -> str | None:
        value = self.env.get(name)
        return value if value else None

    def text(self, name: str, expected: str, shape: str | None = None,
             default: str | None = None) -> str:
        value = self._get(name)
        if value is None:
            if default is None:
                self.problems.append(f"{name} is not set: expected {expected}")
            return default or ""
        if shape is not None and not re.fullmatch(shape, value):
            self.problems.append(f"{name} must be {expected}, not {_shown(value)}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self._get(name)
        if raw is None:
            return default
        if not re.fullmatch(_INTEGER, raw):
            self.problems.append(f"{name} must be an integer from {low} to {high}, "
                                 f"not {_shown(raw)}")
            return default
        value = int(raw)
        if not low <= value <= high:
            self.problems.append(f"{name} is out of range: expected an integer from {low} to "
                                 f"{high}, not {value}")
            return default
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        raw = self._get(name)
        if raw is None:
            return default
        if raw.strip().lower() not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, "
                                 f"not {_shown(raw)}")
            return default
        return raw.strip().lower()

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._get(name)
        if raw is None:
            return default
        word = raw.strip().lower()
        if word not in ("true", "false"):
            self.problems.append(f"{name} must be true or false, not {_shown(raw)}")
            return default
        return word == "true"

    def shared(self) -> _Shared:
        """What the judging functions and the sweeper both read."""
        return _Shared(
            table_name=self.text("GATEKEEPER_TABLE", _TABLE, _TABLE_NAME),
            topic_arn=self.text("GATEKEEPER_TOPIC_ARN", _TOPIC, _TOPIC_ARN),
            policy_bucket=self.text("GATEKEEPER_POLICY_BUCKET", _BUCKET, _BUCKET_NAME),
            policy_key=self.text("GATEKEEPER_POLICY_KEY", "the policy object's key",
                                 default="policy.yaml"),
            scan_timeout_minutes=self.integer("GATEKEEPER_SCAN_TIMEOUT_MINUTES", 60, 1, 43_200),
            # 0: history kept for ever
            history_retention_days=self.integer("GATEKEEPER_HISTORY_RETENTION_DAYS", 0, 0,
                                                36_500) or None,
        )

    def key_arn(self, *, required: bool) -> str | None:
        if not required and self._get(SIGNING_KEY_ENV) is None:
            return None
        return self.text(SIGNING_KEY_ENV, _KEY, _KEY_ARN)

    def queue_url(self, *, required: bool,
                  name: str = "GATEKEEPER_REEVALUATION_QUEUE_URL") -> str | None:
        if not required and self._get(name) is None:
            return None
        url = self.text(name, _QUEUE, _QUEUE_URL)
        match = re.fullmatch(_QUEUE_URL, url)
        if match and match["scheme"] == "http" and not any(
                self._get(e) for e in _EMULATOR_ENDPOINTS):
            self.problems.append(f"{name} must be {_QUEUE}, not {_shown(url)} (http:// is "
                                 "only for an emulator named by AWS_ENDPOINT_URL)")
        return url

    def organization(self) -> dict[str, str | None]:
        """The stack's home scope and organization mode (the judging functions')."""
        account = self._get("GATEKEEPER_ACCOUNT_ID")
        if account is not None and not re.fullmatch(r"[0-9]{12}", account):
            self.problems.append(f"GATEKEEPER_ACCOUNT_ID must be a 12-digit account id, not "
                                 f"{_shown(account)}")
            account = None
        region = self._get("AWS_REGION") or self._get("AWS_DEFAULT_REGION")
        if region is not None and not REGION.fullmatch(region):
            self.problems.append(f"AWS_REGION must be a Region name, not {_shown(region)}")
            region = None
        organization = self._get("GATEKEEPER_ORGANIZATION_ID")
        if organization is not None:
            if not re.fullmatch(r"o-[a-z0-9]{10,32}", organization):
                self.problems.append("GATEKEEPER_ORGANIZATION_ID must be an organization id "
                                     f"(o-...), not {_shown(organization)}")
            if account is None or region is None:
                self.problems.append("GATEKEEPER_ORGANIZATION_ID needs GATEKEEPER_ACCOUNT_ID "
                                     "and AWS_REGION: the hub must know its own account")
        role = self.text("GATEKEEPER_SPOKE_ROLE_NAME", "an IAM role name prefix",
                         r"[A-Za-z0-9+=,.@_-]{1,50}", default="ecr-scan-gatekeeper-spoke")
        operator = self._get("GATEKEEPER_OPERATOR_TOPIC_ARN")
        if operator is not None and not re.fullmatch(_TOPIC_ARN, operator):
            self.problems.append(f"GATEKEEPER_OPERATOR_TOPIC_ARN must be {_TOPIC}, not "
                                 f"{_shown(operator)}")
        return {"account_id": account, "region": region, "organization_id": organization,
                "spoke_role_name": role, "operator_topic_arn": operator}

    def markers(self) -> MarkerScheme:
        names = ("GATEKEEPER_APPROVED_TAG", "GATEKEEPER_QUARANTINED_TAG")
        approved = self.env.get(names[0], MarkerScheme.approved)
        quarantined = self.env.get(names[1], MarkerScheme.quarantined)
        try:
            return MarkerScheme(approved=approved, quarantined=quarantined)
        except ValueError as err:
            # the scheme quotes the template at fault; both when they clash with each other
            named = [n for n, t in zip(names, (approved, quarantined), strict=True)
                     if repr(t) in str(err)]
            self.problems.append(f"{' and '.join(named or names)}: {err}")
            return MarkerScheme()


def _shown(value: str) -> str:
    """A value quoted for a message, cut short."""
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")
