"""Keeping verdicts true over time: find the images whose verdict time or a new policy can
change, and queue them for re-evaluation (OnReevaluateFunction does the judging).

At scale a sweep goes page by page (a Scan page of the table for a new policy, a Query page
of DueIndex for the hourly sweep), queueing each page's images before reading the next. When
the invocation's time runs short it hands the rest on to the sweep queue as a continuation
(:mod:`gatekeeper.domain.continuation`), which the sweeper's next invocation picks up: a sweep
of any size is a chain of invocations, each within the function's timeout. Every invocation
reads at least one page, so a chain always gets to its end.

Idempotent: a continuation delivered twice (SQS delivers at least once) queues the same
images again at worst, and re-evaluating an image twice gives the same verdict. A policy
sweep stops as soon as a newer policy upload started its own sweep (the table records the
newest), so repeated uploads never stack sweeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from gatekeeper.adapters.notifier import SnsNotifier
from gatekeeper.adapters.queue import ReevaluationQueue, SweepQueue
from gatekeeper.adapters.store import ImageRecord, VerdictStore
from gatekeeper.domain.continuation import Continuation, upload_order
from gatekeeper.domain.events import Trigger, reevaluation_request
from gatekeeper.domain.exception_hygiene import Problem, classify
from gatekeeper.domain.policy import Policy
from gatekeeper.observability import logger
from gatekeeper.render.notification import digest_notification


def everything(store: VerdictStore) -> Iterator[dict[str, str]]:
    """Every judged image, for a new policy version."""
    for record in store.records(judged=True):
        yield reevaluation_request(record.repository, record.digest, Trigger.POLICY,
                                   record.scope)


def sweep(store: VerdictStore, queue: ReevaluationQueue, now: datetime,
          scan_timeout: timedelta) -> int:
    """Queue a re-evaluation of every due image, in one go (see :func:`due_sweep` for the
    paged sweep the sweeper runs)."""
    return due_sweep(store, queue, now, scan_timeout).queued


def policy_published(store: VerdictStore, queue: ReevaluationQueue) -> int:
    """Queue a re-evaluation of every judged image, in one go (see :func:`policy_sweep`)."""
    sent = queue.send(everything(store))
    logger.info("new policy: queued every judged image", count=sent)
    return sent


# --- paged sweeps ---------------------------------------------------------------------------

PAGE_SIZE = 1_000  # items a page reads at most (DynamoDB stops at 1 MB before that anyway)
RESERVE = 2.0  # hand on when less time is left than this many of the slowest page so far


@dataclass(frozen=True)
class SweepOutcome:
    """What one invocation's part of a sweep did."""

    sweep: str
    queued: int = 0
    pages: int = 0
    handed_on: str | None = None  # the continuation's message id, when the rest was handed on
    superseded: bool = False  # a newer policy upload's sweep does the rest


TimeLeft = Callable[[], float]  # seconds this invocation may still spend


def due_sweep(store: VerdictStore, queue: ReevaluationQueue, now: datetime,
              scan_timeout: timedelta, *, time_left: TimeLeft | None = None,
              sweeps: SweepQueue | None = None, page_size: int = PAGE_SIZE) -> SweepOutcome:
    """The hourly sweep: queue a re-evaluation of every due image, DueIndex page by page.
    The first sweep on a table written before DueIndex existed backfills the index first
    (once; see VerdictStore.backfill_due_index)."""
    backfilled = store.backfill_due_index()
    if backfilled:
        logger.info("due index backfilled", count=backfilled)
    return continue_sweep(store, queue, Continuation("due", None, now.isoformat()),
                          scan_timeout, time_left=time_left, sweeps=sweeps,
                          page_size=page_size)


def policy_sweep(store: VerdictStore, queue: ReevaluationQueue, upload: Continuation, *,
                 time_left: TimeLeft | None = None, sweeps: SweepQueue | None = None,
                 page_size: int = PAGE_SIZE) -> SweepOutcome:
    """A new policy upload (``upload``: its version, sequencer and time, from the S3 event):
    record it as the newest, then queue a re-evaluation of every judged image, table page by
    table page. An upload older than one already swept is superseded at once."""
    order = upload_order(upload.sequencer)
    if order is None:
        logger.warning("policy upload without an S3 sequencer: its sweep cannot be "
                       "superseded by a newer upload", policy_version=upload.policy_version)
    elif not store.claim_policy_sweep(order, upload.policy_version, upload.started_at):
        logger.info("policy upload superseded by a newer one; no sweep",
                    policy_version=upload.policy_version)
        return SweepOutcome("policy", superseded=True)
    return continue_sweep(store, queue, replace(upload, continue_from=None),
                          timedelta(0), time_left=time_left, sweeps=sweeps,
                          page_size=page_size)


def continue_sweep(store: VerdictStore, queue: ReevaluationQueue, at: Continuation,
                   scan_timeout: timedelta, *, time_left: TimeLeft | None = None,
                   sweeps: SweepQueue | None = None,
                   page_size: int = PAGE_SIZE) -> SweepOutcome:
    """Go on with a sweep from ``at``, page by page, until it ends, a newer policy upload
    supersedes it, or the time left runs short: then the rest goes to ``sweeps`` as a
    continuation (without ``sweeps`` or ``time_left`` the sweep runs to its end here).
    At least one page is read, so a chain of continuations always gets to the end."""
    if at.sweep == "policy":
        order = upload_order(at.sequencer)

        def current() -> bool:
            return order is None or store.newest_policy_sweep() in (None, order)
    else:
        def current() -> bool:
            return True
    fetch = _policy_page if at.sweep == "policy" else _due_page(scan_timeout)
    queued = pages = 0
    slowest = 0.0
    position: Continuation | None = at
    while position is not None:
        if not current():
            logger.info("policy sweep superseded by a newer upload; stopped",
                        policy_version=at.policy_version, queued=queued, pages=pages)
            return SweepOutcome(at.sweep, queued, pages, superseded=True)
        if pages and sweeps is not None and time_left is not None \
                and time_left() < RESERVE * slowest:
            message_id = sweeps.hand_on(position.message())
            logger.info("sweep handed on", sweep=at.sweep, queued=queued, pages=pages,
                        message_id=message_id)
            return SweepOutcome(at.sweep, queued, pages, handed_on=message_id)
        began = time.monotonic()
        records, position = fetch(store, position, page_size)
        queued += queue.send(reevaluation_request(r.repository, r.digest, _trigger(at, r),
                                                  r.scope) for r in records)
        pages += 1
        slowest = max(slowest, time.monotonic() - began)
    logger.info("sweep queued re-evaluations", sweep=at.sweep, count=queued, pages=pages)
    return SweepOutcome(at.sweep, queued, pages)


def _trigger(at: Continuation, record: ImageRecord) -> Trigger:
    if at.sweep == "policy":
        return Trigger.POLICY
    return Trigger.SCAN_TIMEOUT if not record.judged else Trigger.EXPIRY


Page = tuple[list[ImageRecord], Continuation | None]


def _policy_page(store: VerdictStore, at: Continuation, limit: int) -> Page:
    records, following = store.records_page(judged=True, start=at.continue_from, limit=limit,
                                            keys_only=True)
    return records, (replace(at, continue_from=following) if following else None)


def _due_page(scan_timeout: timedelta) -> Callable[[VerdictStore, Continuation, int], Page]:
    def page(store: VerdictStore, at: Continuation, limit: int) -> Page:
        started = datetime.fromisoformat(at.started_at)
        records, following = store.due_page(
            due_by=at.started_at, pending_since=(started - scan_timeout).isoformat(),
            query=at.query, start=at.continue_from, limit=limit)
        if following is None:
            return records, None
        return records, replace(at, query=following[0], continue_from=following[1])
    return page


def send_digests(store: VerdictStore, notifier: SnsNotifier, now: datetime,
                 policy: Policy | None = None) -> int:
    """Announce the verdict changes held for the digest: one message per channel, then
    forget them. A failure before the forgetting sends them again next time (at least once,
    never lost). Each digest also lists ``policy``'s exceptions that expired or expire within
    its ``expiring_window_days``."""
    by_channel: dict[str | None, list[tuple[str, dict]]] = {}
    for key, channel, entry in store.held():
        by_channel.setdefault(channel, []).append((key, entry))
    exceptions = _exceptions_due(policy, now) if by_channel else []
    sent = 0
    for channel, held in by_channel.items():
        message_id = notifier.publish(digest_notification(
            [entry for _, entry in held], time=now.isoformat(), channel=channel,
            exceptions=exceptions))
        logger.info("digest sent", channel=channel, changes=len(held), message_id=message_id)
        for key, _ in held:
            store.release(key)
        sent += len(held)
    return sent


def _exceptions_due(policy: Policy | None, now: datetime) -> list[dict[str, Any]]:
    """The policy's exceptions that expired or expire within its window, soonest first."""
    if policy is None:
        return []
    reports = classify(policy, now, timedelta(days=policy.expiring_window_days), used=None)
    return sorted(({"id": r.exception.id,
                    "expires": r.exception.expires_text or r.exception.expires.date().isoformat(),
                    "owner": r.exception.owner, "days_left": r.days_left,
                    "expired": Problem.EXPIRED in r.problems}
                   for r in reports if r.problems and r.days_left is not None),
                  key=lambda e: e["days_left"])
