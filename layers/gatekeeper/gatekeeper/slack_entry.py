"""The Slack notifier: each notification of the verdict topic, as a Slack message.

SNS invokes the function with the topic's ``default`` message, a ``gatekeeper.notification/v1``
document. For each record: parse the document (malformed: logged, the invocation fails and the
event ends in the dead-letter queue); skip, with a log line, a document of another schema or
kind; skip a duplicate (SNS delivers at least once: a ``verdict_id`` already posted by this
container is not posted again); render it (:mod:`gatekeeper.domain.slack`) and post it to the
incoming webhook whose URL is kept in Secrets Manager.

The webhook URL is a credential: it is read from the secret (cached five minutes), never
logged; log lines name the secret's ARN and the webhook's host only.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from gatekeeper.adapters.webhook import Retry, WebhookError, WebhookPoster, redact
from gatekeeper.config import ConfigError
from gatekeeper.domain.slack import SCHEMA, UnsupportedDocument, payload_size, slack_message
from gatekeeper.observability import MetricUnit, logger, metrics

SECRET_ENV = "GATEKEEPER_SLACK_SECRET_ARN"  # noqa: S105 - the name of a variable holding an ARN
SECRET_MAX_AGE = 300  # seconds a secret value is reused before it is read again
SAFETY_MARGIN = 5.0  # seconds kept back from the Lambda timeout for logging and the raise
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})  # where http:// is accepted
# Secrets Manager answers in milliseconds: fail fast rather than spend the invocation on it.
SECRETS_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 3},
                            connect_timeout=3, read_timeout=5)

# botocore logs every response body at DEBUG: GetSecretValue's holds the webhook URL. Keep
# that logger above DEBUG whatever level the function runs at.
logging.getLogger("botocore.parsers").setLevel(logging.INFO)


class SlackConfigError(ConfigError):
    """The webhook secret is missing, unreadable or holds no usable URL (a deployment error;
    the message names the secret's ARN, never its value)."""


class MalformedNotification(ValueError):
    """An SNS record whose message is not a JSON document."""


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


# --- the secret ------------------------------------------------------------------------------

_HELP = ('store the incoming webhook URL (https://hooks.slack.com/services/...) as the secret '
         'string, or JSON {"webhook_url": "https://..."}')


def check_webhook_url(url: Any, secret: str, what: str = "the webhook URL") -> str:
    """``url`` if it is a usable webhook URL: https, or http to this machine (tests, demo)."""
    problem = None
    if not isinstance(url, str) or not url.strip():
        problem = "is empty"
    elif any(c.isspace() or not c.isprintable() for c in url.strip()):
        problem = "contains spaces or control characters"
    else:
        try:
            parts = urlsplit(url.strip())
            host, _ = parts.hostname, parts.port
        except ValueError:
            problem = "is not a URL"
        else:
            if not host:
                problem = "is not an absolute URL"
            elif parts.scheme == "http" and host not in LOCAL_HOSTS:
                problem = "uses http: only https is accepted (http only to 127.0.0.1/localhost)"
            elif parts.scheme not in ("https", "http"):
                problem = "is not an https URL"
    if problem:
        raise SlackConfigError(f"Slack webhook secret {secret}: {what} {problem}; {_HELP}")
    return str(url).strip()


@dataclass(frozen=True)
class Webhooks:
    """The webhook URLs of the secret: the default one, and optionally one per channel."""

    default: str
    channels: Mapping[str, str] = field(default_factory=dict)

    def for_channel(self, channel: Any) -> str:
        return self.channels.get(channel, self.default) if isinstance(channel, str) else \
            self.default


def webhooks_from_secret(value: Any, secret: str) -> Webhooks:
    """The secret's value: a URL, or JSON ``{"webhook_url": URL, "channels": {name: URL}}``
    (``channels`` optional: the document's ``channel`` picks its webhook, else the default)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise SlackConfigError(f"Slack webhook secret {secret}: its binary value is not "
                                   f"UTF-8 text; {_HELP}") from None
    if not isinstance(value, str):
        raise SlackConfigError(f"Slack webhook secret {secret}: no value; {_HELP}")
    text = value.strip()
    if not text.startswith("{"):
        return Webhooks(check_webhook_url(text, secret, "the secret's value"))
    try:
        data = json.loads(text)
    except ValueError:
        raise SlackConfigError(f"Slack webhook secret {secret}: its value starts like JSON "
                               f"but is not valid JSON; {_HELP}") from None
    if not isinstance(data, dict) or "webhook_url" not in data:
        raise SlackConfigError(f"Slack webhook secret {secret}: its JSON value has no "
                               f"\"webhook_url\"; {_HELP}")
    channels = data.get("channels") or {}
    if not isinstance(channels, dict):
        raise SlackConfigError(f"Slack webhook secret {secret}: \"channels\" must map channel "
                               "names to webhook URLs")
    return Webhooks(
        check_webhook_url(data["webhook_url"], secret, '"webhook_url"'),
        {str(name): check_webhook_url(url, secret, f"the URL of channel {str(name)[:64]!r}")
         for name, url in channels.items()})


def _secret_problem(err: GetParameterError, secret: str) -> str:
    cause = err.__context__ or err.__cause__
    code = (cause.response.get("Error", {}).get("Code", "?") if isinstance(cause, ClientError)
            else type(cause or err).__name__)
    why = {
        "ResourceNotFoundException": "does not exist (ResourceNotFoundException): create it "
                                     "and deploy with SlackWebhookSecretArn set to its full ARN",
        "AccessDeniedException": "may not be read by this function (AccessDeniedException): "
                                 "SlackWebhookSecretArn must be the secret's full ARN; a secret "
                                 "encrypted with a customer managed KMS key also needs "
                                 "kms:Decrypt on that key",
        "DecryptionFailure": "cannot be decrypted (DecryptionFailure): check its KMS key",
        "InvalidRequestException": "cannot be read now (InvalidRequestException): is it "
                                   "scheduled for deletion?",
        "ResourceNotFound": "does not exist",
    }.get(code, f"could not be read ({code})")
    return f"Slack webhook secret {secret} {why}"


class SecretWebhooks:
    """The webhook URLs, read from Secrets Manager through Powertools' parameters utility
    (``get_secret`` with its cache, on a client with short timeouts)."""

    def __init__(self, secret_arn: str, max_age: int = SECRET_MAX_AGE,
                 client: Any = None) -> None:
        self.secret_arn = secret_arn
        self.max_age = max_age
        self._stale = False
        self._client = client  # a Secrets Manager client of the caller's (the operator CLI)
        self._provider: parameters.SecretsProvider | None = None

    def get(self) -> Webhooks:
        if self._provider is None:  # created on first use, like Powertools' default one
            self._provider = (parameters.SecretsProvider(boto3_client=self._client)
                              if self._client is not None
                              else parameters.SecretsProvider(boto_config=SECRETS_CONFIG))
        try:
            value = self._provider.get(self.secret_arn, max_age=self.max_age,
                                       force_fetch=self._stale)
        except GetParameterError as err:
            raise SlackConfigError(_secret_problem(err, self.secret_arn)) from None
        self._stale = False
        try:
            return webhooks_from_secret(value, self.secret_arn)
        except SlackConfigError:
            self._stale = True  # read it again next time: it may have been fixed by then
            raise

    def invalidate(self) -> None:
        """The webhook was refused as wrong or revoked: read the secret again next time."""
        self._stale = True


# --- duplicates ------------------------------------------------------------------------------

class RecentlyDelivered:
    """The last ``size`` notifications this container posted (a small LRU). SNS delivers at
    least once and the gatekeeper may publish a verdict twice; a new container starts empty,
    so a duplicate can still reach Slack after a cold start."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        return False

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)


def dedupe_key(document: Mapping[str, Any], message_id: str | None) -> str:
    """The verdict's id (every delivery of one verdict change carries it), else SNS's id."""
    verdict_id = document.get("verdict_id")
    if isinstance(verdict_id, str) and verdict_id:
        return f"verdict:{verdict_id}"
    return f"sns:{message_id}"


# --- the handler -----------------------------------------------------------------------------

@dataclass
class SlackNotifier:
    webhooks: SecretWebhooks
    poster: WebhookPoster
    delivered: RecentlyDelivered = field(default_factory=RecentlyDelivered)


@cache
def notifier() -> SlackNotifier:
    """The container's notifier, from the environment the template sets."""
    secret = os.environ.get(SECRET_ENV, "").strip()
    if not secret:
        raise ConfigError(f"{SECRET_ENV} is not set: deploy with SlackWebhookSecretArn")
    return SlackNotifier(SecretWebhooks(secret), WebhookPoster())


def _time_left(context: Any) -> Callable[[], float]:
    """Seconds left for posting: the invocation's remaining time less a safety margin."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    budget = (remaining() / 1000 if callable(remaining) else 60.0) - SAFETY_MARGIN
    end = time.monotonic() + max(1.0, budget)
    return lambda: end - time.monotonic()


def _log_retry(retry: Retry) -> None:
    logger.warning("Slack webhook attempt failed; retrying", attempt=retry.attempt,
                   status=retry.status, reason=retry.reason, wait_seconds=round(retry.wait, 2),
                   webhook=retry.host)


def handle_sns(event: Any, notifier: Callable[[], SlackNotifier],
               context: Any = None) -> dict[str, int]:
    """Post every record's notification; raise (after trying them all) if any failed."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        logger.error("malformed SNS event rejected: no Records; it goes to the dead-letter "
                     "queue")
        _count("SlackNotificationsMalformed")
        raise MalformedNotification("the event has no SNS Records")
    try:
        slack = notifier()
    except ConfigError as err:
        logger.error("Slack notifier not configured; the invocation fails", reason=str(err))
        raise
    time_left = _time_left(context)
    outcomes: Counter[str] = Counter()
    errors: list[Exception] = []
    for record in records:
        try:
            outcomes[_deliver(record, slack, time_left)] += 1
        except (MalformedNotification, ConfigError, WebhookError) as err:
            errors.append(err)
    if errors:
        if len(errors) == 1:
            raise errors[0]
        raise WebhookError(f"{len(errors)} of {len(records)} notifications failed; first: "
                           f"{errors[0]}")
    return dict(outcomes)


def _deliver(record: Any, slack: SlackNotifier, time_left: Callable[[], float]) -> str:
    sns = record.get("Sns") if isinstance(record, dict) else None
    message_id = sns.get("MessageId") if isinstance(sns, dict) else None
    try:
        document = json.loads(sns["Message"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as err:
        logger.error("malformed notification rejected; it goes to the dead-letter queue",
                     message_id=message_id, reason=f"{type(err).__name__}: {str(err)[:200]}")
        _count("SlackNotificationsMalformed")
        raise MalformedNotification(f"SNS message {message_id}: not a JSON document") from None
    schema = document.get("schema") if isinstance(document, dict) else None
    if schema != SCHEMA:
        logger.warning("notification skipped: not a gatekeeper.notification/v1 document",
                       message_id=message_id, schema=str(schema)[:100])
        _count("SlackNotificationsSkipped")
        return "skipped"
    key = dedupe_key(document, message_id)
    if key in slack.delivered:
        logger.info("duplicate notification skipped: already posted by this container",
                    message_id=message_id, key=key)
        _count("SlackDuplicatesSkipped")
        return "duplicate"
    try:
        payload = slack_message(document)
    except UnsupportedDocument as err:
        logger.warning("notification skipped", message_id=message_id, reason=str(err))
        _count("SlackNotificationsSkipped")
        return "skipped"
    try:
        webhooks = slack.webhooks.get()
    except SlackConfigError as err:
        logger.error("Slack webhook secret unusable; the invocation fails, Lambda retries it "
                     "twice, then it goes to the dead-letter queue",
                     secret_arn=slack.webhooks.secret_arn, reason=str(err))
        _count("SlackDeliveriesFailed")
        raise
    url = webhooks.for_channel(document.get("channel"))
    try:
        posted = slack.poster.post(url, payload, deadline=time_left(), on_retry=_log_retry)
    except WebhookError as err:
        if err.revoked:
            slack.webhooks.invalidate()
        logger.error("Slack message not delivered; the invocation fails, Lambda retries it "
                     "twice, then it goes to the dead-letter queue", message_id=message_id,
                     kind=document.get("kind"), verdict_id=document.get("verdict_id"),
                     webhook=redact(url), status=err.status, reason=str(err),
                     attempts=err.attempts)
        _count("SlackDeliveriesFailed")
        raise
    slack.delivered.add(key)
    logger.info("Slack message posted", message_id=message_id, kind=document.get("kind"),
                verdict_id=document.get("verdict_id"), webhook=redact(url),
                attempts=posted.attempts, blocks=len(payload["blocks"]),
                characters=payload_size(payload))
    _count("SlackMessagesPosted")
    return "posted"
