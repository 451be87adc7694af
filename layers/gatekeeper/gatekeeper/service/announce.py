"""Announce: tell subscribers of verdict changes (at once or in the digest) and of forged
markers. Called by the lease holder, so an image's notices go out in verdict order.

With a findings publisher (Security Hub, GATEKEEPER_SECURITY_HUB=enabled), a quarantine is
also imported as the image's finding, updated on each change and resolved once the image is
approved. Like a notice, a failed import fails the event (it is retried; the verdict stays).
"""

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.adapters.store import ImageRecord
from gatekeeper.domain.events import ImageEvent
from gatekeeper.domain.policy import Notifications
from gatekeeper.domain.scope import Scope
from gatekeeper.domain.verdict import Outcome, Verdict
from gatekeeper.observability import logger
from gatekeeper.render.notification import (
    ImageRef,
    digest_entry,
    forgery_notification,
    verdict_notification,
)
from gatekeeper.service.ports import FindingsPublisher, Notifier, Store


class Announcer:
    def __init__(self, notifier: Notifier, store: Store, now: Callable[[], str],
                 scope: Scope | None = None,
                 findings: FindingsPublisher | None = None) -> None:
        self.notifier = notifier
        self.store = store
        self.now = now
        self.findings = findings
        self.scope = scope  # where the images live, for events that do not say (re-evaluations)

    def _image(self, event: ImageEvent, tags: tuple[str, ...]) -> ImageRef:
        where = event.scope or self.scope
        return ImageRef(event.repository, event.digest, tags,
                        where.account if where else event.account,
                        where.region if where else event.region)

    def verdict(self, event: ImageEvent, committed: ImageRecord, verdict: Verdict,
                previous: str | None, marker: str | None, tags: tuple[str, ...],
                settings: Notifications, trigger: str | None = None) -> bool:
        """Publish the change now, or hold it for the digest (as the policy that judged it
        says); True when published. Its verdict_id names the committed revision, so a
        repeat of this notice carries the same id."""
        repo, digest = event.repository, event.digest
        trigger = trigger or event.cause
        image = self._image(event, tags)
        channel = settings.channel_for(repo, image.account)
        verdict_id = f"{digest[7:19]}-{committed.verdict_id_revision}"
        time = committed.decided_at or self.now()
        if self.findings is not None:
            self._finding(self.findings, image, verdict, previous,
                          committed.created_at or time, time)
        if settings.digested(verdict.outcome):
            self.store.hold(f"{time}#{verdict_id}", digest_entry(
                image, verdict, previous=previous, trigger=trigger, tags=tags,
                verdict_id=verdict_id, time=time), channel)
            logger.info("verdict held for the digest", repository=repo, digest=digest,
                        verdict=verdict.outcome, channel=channel)
            return False
        message_id = self.notifier.publish(verdict_notification(
            image, verdict, previous=previous, marker=marker, trigger=trigger, tags=tags,
            verdict_id=verdict_id, channel=channel, time=time))
        logger.info("verdict notified", repository=repo, digest=digest,
                    verdict=verdict.outcome, message_id=message_id, channel=channel)
        return True

    @staticmethod
    def _finding(findings: FindingsPublisher, image: ImageRef, verdict: Verdict,
                 previous: str | None, created: str, time: str) -> None:
        """Import the image's finding: active while quarantined, resolved once approved (an
        image never quarantined has no finding to resolve)."""
        if verdict.approved and previous != Outcome.QUARANTINED:
            return
        finding = findings.publish(image, verdict, created_at=created, updated_at=time)
        logger.info("Security Hub finding imported", repository=image.repository,
                    digest=image.digest, finding_id=finding["Id"],
                    record_state=finding["RecordState"])

    def forgery(self, event: ImageEvent, tag: str, *, removed: bool, verdict: str | None,
                tags: tuple[str, ...], settings: Notifications) -> None:
        """A security alert: a marker the gatekeeper did not write was on the image."""
        repo, digest = event.repository, event.digest
        logger.warning("forged marker undone" if removed else "forged marker kept",
                       repository=repo, digest=digest, tag=tag, removed=removed,
                       recorded_verdict=verdict)
        image = self._image(event, tags)
        self.notifier.publish(forgery_notification(
            image, tag, removed=removed, verdict=verdict, time=self.now(),
            channel=settings.channel_for(repo, image.account)))
