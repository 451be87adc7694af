"""The Slack notifier: each notification of the verdict topic, as a Slack message.

SNS invokes the function with the topic's ``default`` message, a ``gatekeeper.notification/v1``
document. For each record: parse the document (malformed: logged, the invocation fails and the
event ends in the dead-letter queue); skip, with a log line, a document of another schema or
kind; skip a duplicate (SNS delivers at least once: a ``verdict_id`` already posted by this
container is not posted again); render it (:mod:`gatekeeper.render.slack`) and post it to the
incoming webhook whose URL is kept in Secrets Manager (:mod:`gatekeeper.adapters.secrets`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.adapters.secrets import SecretWebhooks, SlackConfigError
from gatekeeper.adapters.webhook import Retry, WebhookError, WebhookPoster, redact
from gatekeeper.observability import MetricUnit, logger, metrics
from gatekeeper.render.slack import SCHEMA, UnsupportedDocument, payload_size, slack_message


class MalformedNotification(ValueError):
    """An SNS record whose message is not a JSON document."""


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


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


@dataclass
class SlackNotifier:
    webhooks: SecretWebhooks
    poster: WebhookPoster
    delivered: RecentlyDelivered = field(default_factory=RecentlyDelivered)


def _log_retry(retry: Retry) -> None:
    logger.warning("Slack webhook attempt failed; retrying", attempt=retry.attempt,
                   status=retry.status, reason=retry.reason, wait_seconds=round(retry.wait, 2),
                   webhook=retry.host)


def deliver(record: Any, slack: SlackNotifier, time_left: Callable[[], float]) -> str:
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
