"""One gatekeeper for many accounts: route each event to the gatekeeper of the account and
Region its image lives in, and put off work on an account that cannot be worked on now.

    event -> its scope (account, Region)
          -> the home gatekeeper (the stack's own account and Region, or a stack that does
             not know its own: tests, tooling)
          -> a member account's gatekeeper (organization mode: the same policy, signer and
             notifier; ECR through the account's spoke role; the table's items of that scope)
          -> ignored (a single-account stack never acts in an account it is not in)

An account that is throttled (after botocore's adaptive retries) or whose spoke role is missing
or denies is never approved and never fails its events into the dead-letter queue for that
alone: the event waits in the re-evaluation queue (SQS delay, growing up to 15 minutes) and is
retried as a ``deferred`` re-evaluation, at most MAX_DEFERRALS times (days), then fails like
any error (the DLQ, replayable). A spoke that cannot be reached alerts the operator topic once
per account per quiet period, however many images wait.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any

from botocore.exceptions import ClientError

from gatekeeper.adapters.spoke import DENIED_CODES, SpokeSessions, SpokeUnavailable, throttled
from gatekeeper.domain.events import Ignored, ImageEvent, Trigger, reevaluation_request
from gatekeeper.domain.scope import Scope
from gatekeeper.observability import logger
from gatekeeper.render.operator import spoke_unavailable_notification
from gatekeeper.service.gatekeeper import Gatekeeper
from gatekeeper.service.ports import Images, Notifier, Result

MAX_DEFERRALS = 288  # 3 days at the longest delay: then the event fails (DLQ, replayable)
MAX_DELAY = 900  # SQS's longest delivery delay
THROTTLED_DELAY = 30  # the first delay after throttling; doubled per deferral
ALERT_QUIET_SECONDS = 6 * 3600
_MAX_MEMBERS = 1024  # member gatekeepers kept per container (each holds a few clients)


def deferral_delay(attempt: int, *, unavailable: bool, jitter: float) -> int:
    """Seconds an event put off ``attempt`` times before waits now: 15 minutes for an account
    that cannot be reached; for throttling 30 s doubling up to 15 minutes. ``jitter`` in
    [0, 1) takes up to a quarter off, so a burst's retries spread out."""
    base = MAX_DELAY if unavailable else min(MAX_DELAY, THROTTLED_DELAY * 2 ** min(attempt, 5))
    return max(1, int(base * (1 - 0.25 * jitter)))


class Deferrals:
    """Where work on an unavailable account waits, and who hears about it. The queue and the
    operator topic are reached only when something is put off: their clients are built then,
    not on every container's first event."""

    def __init__(self, queue: Callable[[], Any], alerts: Any,
                 operator: Callable[[], Notifier | None], clock: Callable[[], datetime],
                 jitter: Callable[[], float] = random.random) -> None:
        self._queue = queue
        self._operator = operator
        self.alerts = alerts  # VerdictStore (first_alert)
        self.clock = clock
        self.jitter = jitter

    @cached_property
    def queue(self) -> Any:
        """The re-evaluation queue (a ReevaluationQueue)."""
        return self._queue()

    @cached_property
    def operator(self) -> Notifier | None:
        return self._operator()

    def defer(self, event: ImageEvent, scope: Scope | None, err: Exception) -> Result:
        attempt = event.attempt + 1
        if attempt > MAX_DEFERRALS:
            logger.error("event put off too often; it fails now", repository=event.repository,
                         digest=event.digest, attempts=event.attempt, reason=str(err))
            raise err
        unavailable = isinstance(err, SpokeUnavailable)
        delay = deferral_delay(event.attempt, unavailable=unavailable, jitter=self.jitter())
        request = reevaluation_request(event.repository, event.digest, Trigger.DEFERRED, scope)
        request["attempt"] = attempt
        self.queue.defer(request, delay)
        reason = ("spoke role unavailable" if unavailable else "throttled") + f": {err}"
        logger.warning("event put off", repository=event.repository, digest=event.digest,
                       account=scope.account if scope else None,
                       region=scope.region if scope else None, attempt=attempt,
                       delay_seconds=delay, reason=reason)
        if unavailable and scope is not None:
            self._alert(scope, err)  # type: ignore[arg-type]
        return Result("deferred", event.repository, event.digest, reason=reason)

    def _alert(self, scope: Scope, err: SpokeUnavailable) -> None:
        now = self.clock()
        if not self.alerts.first_alert(f"spoke#{scope.account}", now.timestamp(),
                                       ALERT_QUIET_SECONDS):
            return
        if self.operator is None:
            logger.error("spoke unavailable and no operator topic to tell", account=scope.account,
                         region=scope.region, reason=err.reason)
            return
        self.operator.publish(spoke_unavailable_notification(
            scope, err.reason, time=now.isoformat(), retry_minutes=MAX_DELAY // 60,
            quiet_hours=ALERT_QUIET_SECONDS // 3600))
        logger.error("spoke unavailable: operator alerted", account=scope.account,
                     region=scope.region, reason=err.reason)


class Hub:
    """The stack's gatekeepers, one per scope: the home one, and in organization mode one per
    member account and Region, built on first use and kept."""

    def __init__(self, home: Callable[[], Gatekeeper], home_scope: Scope | None = None,
                 spokes: SpokeSessions | None = None,
                 images: Callable[[Any], Images] | None = None,
                 deferrals: Deferrals | None = None) -> None:
        self.home = home
        self.home_scope = home_scope
        self.spokes = spokes  # None: a single-account stack
        self._images = images
        self.deferrals = deferrals
        self._members: dict[Scope, Gatekeeper] = {}
        self._lock = threading.Lock()

    @property
    def organization(self) -> bool:
        return self.spokes is not None

    def route(self, scope: Scope | None) -> Gatekeeper | Ignored:
        """The gatekeeper for images of ``scope``."""
        if scope is None or self.home_scope is None or scope == self.home_scope:
            return self.home()
        if self.spokes is None:
            return Ignored(f"image in account {scope.account}, Region {scope.region}: this "
                           f"stack judges only {self.home_scope.account} in "
                           f"{self.home_scope.region} (organization mode is off)")
        with self._lock:
            member = self._members.get(scope)
        if member is None:
            client = self.spokes.client("ecr", scope)
            member = self.home().for_scope(scope, self._images(client) if self._images
                                           else _ecr(client))
            with self._lock:
                if len(self._members) >= _MAX_MEMBERS:
                    self._members.clear()
                member = self._members.setdefault(scope, member)
        return member

    def handle(self, event: ImageEvent) -> Result:
        """Judge ``event`` in its image's account and Region; put it off when that account
        cannot be worked on now."""
        scope = event.scope
        try:
            target = self.route(scope)
            if isinstance(target, Ignored):
                logger.warning("event from another account ignored", reason=target.reason)
                return Result("ignored", event.repository, event.digest, reason=target.reason)
            return target.handle(event)
        except Exception as err:
            unavailable = self._unavailable(scope, err)
            if unavailable is None or self.deferrals is None:
                raise
            member = None if scope == self.home_scope else scope
            return self.deferrals.defer(event, member, unavailable)

    def _unavailable(self, scope: Scope | None, err: Exception) -> Exception | None:
        """``err`` as "this account cannot be worked on now", or None for any other error."""
        if isinstance(err, SpokeUnavailable) or throttled(err):
            return err
        member = scope is not None and self.spokes is not None and scope != self.home_scope
        if member and isinstance(err, ClientError):
            error = err.response.get("Error") or {}
            if error.get("Code") in DENIED_CODES:
                return SpokeUnavailable(scope,  # type: ignore[arg-type]
                                        f"{error.get('Code')}: {error.get('Message')}")
        return None


def _ecr(client: Any) -> Images:
    from gatekeeper.adapters.ecr import EcrImages

    return EcrImages(client)
