"""Keeping verdicts true over time: find the images whose verdict time or a new policy can
change, and queue them for re-evaluation (OnReevaluateFunction does the judging)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from gatekeeper.adapters.notifier import SnsNotifier
from gatekeeper.adapters.queue import ReevaluationQueue
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.domain.events import Trigger, reevaluation_request
from gatekeeper.observability import logger
from gatekeeper.render.notification import digest_notification


def due(store: VerdictStore, now: datetime, scan_timeout: timedelta
        ) -> Iterator[dict[str, str]]:
    """Verdicts whose exception expired or grace period ended; images waiting too long for a
    scan."""
    since = (now - scan_timeout).isoformat()
    for record in store.due_records(due_by=now.isoformat(), pending_since=since):
        trigger = Trigger.SCAN_TIMEOUT if not record.judged else Trigger.EXPIRY
        yield reevaluation_request(record.repository, record.digest, trigger, record.scope)


def everything(store: VerdictStore) -> Iterator[dict[str, str]]:
    """Every judged image, for a new policy version."""
    for record in store.records(judged=True):
        yield reevaluation_request(record.repository, record.digest, Trigger.POLICY,
                                   record.scope)


def sweep(store: VerdictStore, queue: ReevaluationQueue, now: datetime,
          scan_timeout: timedelta) -> int:
    """Queue a re-evaluation of every due image. The first sweep on a table written before
    DueIndex existed backfills the index first (once; see VerdictStore.backfill_due_index)."""
    backfilled = store.backfill_due_index()
    if backfilled:
        logger.info("due index backfilled", count=backfilled)
    sent = queue.send(due(store, now, scan_timeout))
    logger.info("sweep queued re-evaluations", count=sent)
    return sent


def policy_published(store: VerdictStore, queue: ReevaluationQueue) -> int:
    sent = queue.send(everything(store))
    logger.info("new policy: queued every judged image", count=sent)
    return sent


def send_digests(store: VerdictStore, notifier: SnsNotifier, now: datetime) -> int:
    """Announce the verdict changes held for the digest: one message per channel, then
    forget them. A failure before the forgetting sends them again next time (at least once,
    never lost)."""
    by_channel: dict[str | None, list[tuple[str, dict]]] = {}
    for key, channel, entry in store.held():
        by_channel.setdefault(channel, []).append((key, entry))
    sent = 0
    for channel, held in by_channel.items():
        message_id = notifier.publish(digest_notification(
            [entry for _, entry in held], time=now.isoformat(), channel=channel))
        logger.info("digest sent", channel=channel, changes=len(held), message_id=message_id)
        for key, _ in held:
            store.release(key)
        sent += len(held)
    return sent
