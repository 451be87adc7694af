"""The gatekeeper's one use case: an image event in, a verdict and its side effects out.

Order of side effects for a verdict, each step idempotent so that EventBridge retries and a
dead-letter replay are always safe:

1. the verdict is committed to the store, unsettled, naming the marker it wants and the
   markers of earlier verdicts still to remove (so the echo of our own tag write is known);
2. the new marker is added to the image, then the stale ones are removed (never the last tag);
3. the notification is published;
4. the record is settled.

A crash anywhere leaves an unsettled record, and the next delivery finishes the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from gatekeeper.adapters.ecr import ImageGone, Platform, ScanResult, UnsafeUntag
from gatekeeper.adapters.store import PENDING, Conflict, HistoryEntry, ImageRecord
from gatekeeper.domain.events import ImageEvent, Kind, Trigger, reevaluation
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.notification import (
    ImageRef,
    Notification,
    digest_entry,
    forgery_notification,
    verdict_notification,
)
from gatekeeper.domain.policy import SCAN_FAILED_STATES, Notifications, Policy
from gatekeeper.domain.verdict import Outcome, Verdict
from gatekeeper.observability import logger

_MAX_CONFLICT_RETRIES = 3


class ScanNotReady(Exception):
    """A scan event arrived but ECR has no finished scan yet: retry later."""


class Images(Protocol):
    def scan(self, repository: str, digest: str) -> ScanResult | None: ...
    def start_scan(self, repository: str, digest: str) -> str: ...
    def add_tag(self, repository: str, digest: str, tag: str) -> bool: ...
    def remove_tag(self, repository: str, digest: str, tag: str) -> bool: ...
    def tags(self, repository: str, digest: str) -> list[str]: ...
    def set_storage_class(self, repository: str, digest: str, storage_class: str) -> bool: ...
    def platforms(self, repository: str, digest: str) -> list[Platform] | None: ...


class Store(Protocol):
    def get(self, repository: str, digest: str) -> ImageRecord | None: ...
    def put(self, record: ImageRecord, expected_revision: int | None,
            history: HistoryEntry | None = None) -> ImageRecord: ...
    def link(self, repository: str, platform_digest: str, index_digest: str) -> None: ...
    def indexes(self, repository: str, digest: str) -> list[str]: ...
    def hold(self, key: str, entry: dict[str, Any], channel: str | None) -> None: ...


class Notifier(Protocol):
    def publish(self, notification: Notification) -> str: ...


class PolicySource(Protocol):
    def get(self) -> Policy: ...
    def refresh(self) -> Policy: ...


@dataclass(frozen=True)
class Result:
    """What one event led to; returned by the handlers and logged."""

    status: str  # judged, unchanged, pending, ignored, image-gone, stale
    repository: str
    digest: str
    verdict: str | None = None
    previous: str | None = None
    marker: str | None = None
    notified: bool = False
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class Gatekeeper:
    def __init__(
        self,
        images: Images,
        store: Store,
        notifier: Notifier,
        policies: PolicySource,
        markers: MarkerScheme,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        start_scans: bool = False,
    ) -> None:
        self.images = images
        self.store = store
        self.notifier = notifier
        self.policies = policies
        self.markers = markers
        self.clock = clock
        self.start_scans = start_scans

    def handle(self, event: ImageEvent) -> Result:
        for _ in range(_MAX_CONFLICT_RETRIES):
            try:
                result = self._handle(event)
            except Conflict:
                logger.info("concurrent update, re-reading", repository=event.repository,
                            digest=event.digest)
            else:
                return result
        raise Conflict(f"{event.repository}@{event.digest}: too many concurrent updates")

    def _follow_indexes(self, event: ImageEvent) -> None:
        """A platform image changed verdict: the image indexes referencing it follow."""
        for index in self.store.indexes(event.repository, event.digest):
            logger.info("re-judging an image index after a platform image changed",
                        repository=event.repository, index=index, platform_image=event.digest)
            self.handle(reevaluation(event.repository, index, Trigger.PLATFORM))

    def _handle(self, event: ImageEvent) -> Result:
        repo, digest = event.repository, event.digest
        record = self.store.get(repo, digest)

        if event.kind is Kind.PUSH:
            marker_tags = [t for t in event.tags if self.markers.parse(t)]
            if marker_tags:
                echo = self._marker_push(event, marker_tags[0], record)
                if echo is not None:
                    return echo
                event = reevaluation(repo, digest, Trigger.FORGERY)
            elif record is not None and record.complete:
                return Result("unchanged", repo, digest, verdict=record.state,
                              reason="image already judged; a tag was added to it")

        try:
            platforms = self._platforms(event, record)
            if platforms is not None:
                return self._judge_index(event, record, platforms)
            scan = self.images.scan(repo, digest)
        except ImageGone as gone:
            logger.warning("image gone before it could be judged", repository=repo,
                           digest=digest, reason=str(gone))
            return Result("image-gone", repo, digest, reason=str(gone))

        policy = self.policies.get()
        verdict = self._verdict(event, scan, policy, self.clock())
        if verdict is None:
            if record is None:
                now = self._now()
                self.store.put(ImageRecord(repo, digest, tags=event.tags, trigger=event.cause,
                                           decided_at=now, created_at=now), None)
            reason = "no finished scan yet; waiting for the scan event"
            if scan is None and event.kind is Kind.PUSH and self.start_scans:
                started = self._start_scan(repo, digest)
                reason += f" (scan {started})" if started == "started" else f" ({started})"
            logger.info("image pending", repository=repo, digest=digest,
                        scan_status=scan.status if scan else None)
            return Result("pending", repo, digest, verdict=PENDING, reason=reason)

        completed = (scan.completed_at.astimezone(UTC).isoformat()
                     if scan and scan.completed_at else None)
        if (record is not None and record.judged and completed and record.scan_completed_at
                and completed < record.scan_completed_at):
            logger.info("older scan than the recorded verdict; ignored", repository=repo,
                        digest=digest, scan_completed_at=completed,
                        recorded=record.scan_completed_at)
            return Result("stale", repo, digest, verdict=record.state,
                          reason="scan older than the recorded verdict")
        return self._apply(event, record, verdict, completed, policy.notifications)

    def _start_scan(self, repo: str, digest: str) -> str:
        try:
            started = self.images.start_scan(repo, digest)
        except ImageGone as gone:
            return f"not started: {gone}"
        logger.info("basic scan started" if started == "started" else "no scan started",
                    repository=repo, digest=digest, reason=started)
        return started

    def _platforms(self, event: ImageEvent, record: ImageRecord | None) -> list[Platform] | None:
        """The platform images when this digest is an image index (read once, on its push)."""
        if record is not None and record.platforms:
            return [Platform(d, p) for d, p in record.platforms]
        if event.kind is Kind.PUSH and (record is None or not record.judged):
            return self.images.platforms(event.repository, event.digest)
        return None

    def _judge_index(self, event: ImageEvent, record: ImageRecord | None,
                     platforms: list[Platform]) -> Result:
        repo, digest = event.repository, event.digest
        if record is None or not record.platforms:
            for platform in platforms:
                self.store.link(repo, platform.digest, digest)
            now = self._now()
            base = record or ImageRecord(repo, digest, tags=event.tags, trigger=event.cause,
                                         decided_at=now, created_at=now)
            record = self.store.put(
                replace(base, platforms=tuple((p.digest, p.platform) for p in platforms)),
                record.revision if record else None)
        judged = [(p, self.store.get(repo, p.digest)) for p in platforms]
        waiting = [p.platform for p, child in judged if child is None or not child.judged]
        if waiting:
            logger.info("image index pending", repository=repo, digest=digest, waiting=waiting)
            return Result("pending", repo, digest, verdict=PENDING,
                          reason=f"image index waiting for {', '.join(waiting)}")
        policy = self.policies.get()
        verdict = policy.index(repo, [
            (p.platform, p.digest, child.state, child.reasons)
            for p, child in judged if child is not None])
        return self._apply(event, record, verdict, None, policy.notifications)

    def _verdict(self, event: ImageEvent, scan: ScanResult | None, policy: Policy,
                 now: datetime) -> Verdict | None:
        repo = event.repository
        if scan is not None:
            verdict = policy.judge_scan(repo, scan.status, scan.description, scan.findings, now)
            if verdict is not None:
                return verdict
        # ECR has no finished scan. A scan event that itself reports a failure is enough.
        if event.kind is not Kind.PUSH and event.scan_status in SCAN_FAILED_STATES:
            return policy.scan_failed(repo, event.scan_status, "reported by the scan event")
        if event.kind is Kind.REEVALUATE and event.trigger == Trigger.SCAN_TIMEOUT:
            return policy.scan_failed(repo, "SCAN_TIMEOUT", "no scan result in time"
                                      + (f" (ECR reports {scan.status})" if scan else ""))
        if event.kind in (Kind.PUSH, Kind.REEVALUATE):
            return None
        raise ScanNotReady(
            f"{event.kind} event says {event.scan_status} but ECR reports "
            f"{scan.status if scan else 'no scan'} for {repo}@{event.digest}"
        )

    def _marker_push(self, event: ImageEvent, tag: str,
                     record: ImageRecord | None) -> Result | None:
        """The echo of our own tag write, or a forgery undone (then None: re-evaluate)."""
        repo, digest = event.repository, event.digest
        if record is not None and tag == record.marker and self.markers.is_marker_of(tag, digest):
            logger.debug("echo of our own marker", repository=repo, tag=tag)
            return Result("ignored", repo, digest, reason="own marker echo", marker=tag)
        if record is not None and tag in record.stale_markers:
            return Result("ignored", repo, digest, marker=tag,
                          reason="echo of an earlier marker of ours, being replaced")
        if tag not in self.images.tags(repo, digest):
            return Result("ignored", repo, digest, marker=tag,
                          reason="marker no longer on the image; nothing to undo")
        try:
            removed = self.images.remove_tag(repo, digest, tag)
        except UnsafeUntag as unsafe:
            removed = False
            logger.warning("forged marker kept: it is the image's last tag", reason=str(unsafe))
        except ImageGone:
            return Result("image-gone", repo, digest, marker=tag)
        logger.warning("forged marker pushed; undone" if removed else "forged marker pushed",
                       repository=repo, digest=digest, tag=tag, removed=removed,
                       recorded_verdict=record.state if record else None)
        self.notifier.publish(forgery_notification(
            ImageRef(repo, digest, event.tags, event.account, event.region), tag,
            removed=removed, verdict=record.state if record else None, time=self._now(),
            channel=self._notifications().channel_for(repo)))
        return None

    def _apply(self, event: ImageEvent, record: ImageRecord | None, verdict: Verdict,
               scan_completed_at: str | None, settings: Notifications) -> Result:
        repo, digest = event.repository, event.digest
        if verdict.monitor:  # monitor mode: recorded and notified, no tag changed
            marker = record.marker if record is not None else None
        else:
            marker = self.markers.tag_for(verdict.outcome, digest)
        prior = record.state if record is not None and record.judged else None
        # What subscribers were last told: an interrupted change was never announced.
        previous = (record.previous_state if record is not None and not record.settled
                    else prior)
        if (record is not None and not record.settled and record.judged
                and record.state != previous and record.state != verdict.outcome):
            # An earlier change was committed and enforced, but its notice may never have gone
            # out (its event awaits a retry, or sits in the DLQ) and this verdict supersedes
            # it: announce it first, under its own verdict_id, so subscribers hear of every
            # verdict that was in force, in order (at least once; never lost).
            self._announce(event, record, _recorded_verdict(record), previous, record.marker,
                           record.tags, settings, trigger=record.trigger)
            previous = record.state
        changed = previous != verdict.outcome
        tags = tuple(t for t in (record.tags if record else ()) + event.tags
                     if not self.markers.parse(t))
        tags = tuple(dict.fromkeys(tags))

        # Enforcement to redo: a marker monitor mode left unwritten, an archive now asked for.
        retag = not verdict.monitor and record is not None and (
            record.marker != marker
            or (verdict.enforcement == "archive" and verdict.outcome is Outcome.QUARANTINED
                and not record.archived))
        if record is not None and not changed and record.complete and not retag:
            details_same = (record.reasons == verdict.reasons
                            and record.policy_version == verdict.policy_version)
            review_at = verdict.review_at.isoformat() if verdict.review_at else None
            if not details_same or record.review_at != review_at:
                updated = self._record(record, event, verdict, marker, tags, scan_completed_at,
                                       settled=True, previous=record.previous_state)
                self.store.put(updated, record.revision,
                               None if details_same else self._history(updated, previous))
            return Result("unchanged", repo, digest, verdict=str(verdict.outcome), marker=marker,
                          reason="verdict unchanged")

        stale = set(record.stale_markers if record else ())
        if record is not None and record.marker and record.marker != marker:
            stale.add(record.marker)
        stale.discard(marker or "")
        if (record is not None and not record.settled and record.state == verdict.outcome
                and record.marker == marker):
            committed = record  # a redelivery resuming an interrupted change: no new commit
        else:
            pending = self._record(record, event, verdict, marker, tags, scan_completed_at,
                                   settled=False, previous=previous,
                                   stale=tuple(sorted(stale)))
            committed = self.store.put(pending, record.revision if record else None,
                                       self._history(pending, prior))
            logger.info("verdict committed", repository=repo, digest=digest,
                        verdict=str(verdict.outcome), previous=prior,
                        reasons=list(verdict.reasons), policy_version=verdict.policy_version)

        try:
            remaining = (committed.stale_markers if verdict.monitor else
                         self._enforce(repo, digest, marker, committed.stale_markers))
            archived = committed.archived
            if not verdict.monitor:
                archived = self._storage(repo, digest, verdict, committed.archived)
        except ImageGone as gone:
            logger.warning("image deleted before it could be tagged", repository=repo,
                           digest=digest, reason=str(gone))
            self.store.put(replace(committed, settled=True, gone=True), committed.revision)
            return Result("image-gone", repo, digest, verdict=str(verdict.outcome),
                          reason=str(gone))

        notified = False
        if changed:
            # Before the notice and the settle: if this fails, the retry resumes here.
            self._follow_indexes(event)
            notified = self._announce(event, committed, verdict, previous, marker, tags,
                                      settings)
        self.store.put(replace(committed, settled=True, stale_markers=remaining,
                               archived=archived), committed.revision)
        if not changed:  # the same verdict, now enforced by its marker
            return Result("enforced", repo, digest, verdict=str(verdict.outcome),
                          marker=marker, reason="verdict unchanged; marker written")
        return Result("judged", repo, digest, verdict=str(verdict.outcome), previous=previous,
                      marker=marker, notified=notified)

    def _announce(self, event: ImageEvent, committed: ImageRecord, verdict: Verdict,
                  previous: str | None, marker: str | None, tags: tuple[str, ...],
                  settings: Notifications, trigger: str | None = None) -> bool:
        """Publish the change now, or hold it for the digest (as the policy that judged it
        says); True when published."""
        repo, digest = event.repository, event.digest
        trigger = trigger or event.cause
        channel = settings.channel_for(repo)
        image = ImageRef(repo, digest, tags, event.account, event.region)
        verdict_id = f"{digest[7:19]}-{committed.revision}"
        time = committed.decided_at or self._now()
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

    def _notifications(self) -> Notifications:
        """The policy's notification settings; the defaults if the policy cannot be read (an
        alert is still sent, only without its channel)."""
        try:
            return self.policies.get().notifications
        except Exception as err:  # routing must never stop a security alert
            logger.warning("policy unreadable; notifying without routing", reason=str(err))
            return Notifications()

    def _storage(self, repo: str, digest: str, verdict: Verdict, archived: bool) -> bool:
        """With enforcement: archive, a quarantined image is archived so that pulls fail, and
        restored once approved. Returns whether the image is (left) archived by us."""
        if verdict.outcome is Outcome.QUARANTINED and verdict.enforcement == "archive":
            if self.images.set_storage_class(repo, digest, "ARCHIVE"):
                logger.info("image archived", repository=repo, digest=digest)
                return True
            logger.warning("image cannot be archived; its marker still marks it", repository=repo,
                           digest=digest)
            return False
        if archived and verdict.outcome.approved:
            self.images.set_storage_class(repo, digest, "STANDARD")
            logger.info("image restored from the archive", repository=repo, digest=digest)
            return False
        return archived

    def _enforce(self, repo: str, digest: str, marker: str | None,
                 stale: tuple[str, ...]) -> tuple[str, ...]:
        """Add the new marker first, then remove stale ones: the image always keeps a tag."""
        if marker:
            added = self.images.add_tag(repo, digest, marker)
            logger.info("marker tag added" if added else "marker tag already present",
                        repository=repo, digest=digest, tag=marker)
        remaining = []
        for old in stale:
            try:
                removed = self.images.remove_tag(repo, digest, old)
                logger.info("stale marker removed" if removed else "stale marker already gone",
                            repository=repo, digest=digest, tag=old)
            except UnsafeUntag as unsafe:
                logger.warning("stale marker kept", repository=repo, digest=digest, tag=old,
                               reason=str(unsafe))
                remaining.append(old)
        return tuple(remaining)

    def _record(self, record: ImageRecord | None, event: ImageEvent, verdict: Verdict,
                marker: str | None, tags: tuple[str, ...], scan_completed_at: str | None,
                *, settled: bool, previous: str | None,
                stale: tuple[str, ...] | None = None) -> ImageRecord:
        base = record or ImageRecord(event.repository, event.digest)
        return replace(
            base,
            state=str(verdict.outcome),
            tags=tags,
            marker=marker,
            stale_markers=base.stale_markers if stale is None else stale,
            settled=settled,
            reasons=verdict.reasons,
            counts=dict(verdict.counts),
            highest_severity=verdict.highest_severity,
            policy_version=verdict.policy_version,
            matched_rule=verdict.matched_rule,
            scan_status=verdict.scan_status,
            scan_completed_at=scan_completed_at or base.scan_completed_at,
            decided_at=self._now(),
            trigger=event.cause,
            gone=False,
            review_at=verdict.review_at.isoformat() if verdict.review_at else None,
            created_at=base.created_at or self._now(),
            previous_state=previous,
        )

    @staticmethod
    def _history(record: ImageRecord, previous: str | None) -> HistoryEntry:
        return HistoryEntry(
            decided_at=record.decided_at or "", state=record.state, previous=previous,
            trigger=record.trigger or "unknown", policy_version=record.policy_version,
            reasons=record.reasons, scan_status=record.scan_status, marker=record.marker)

    def _now(self) -> str:
        return self.clock().isoformat()


def _recorded_verdict(record: ImageRecord) -> Verdict:
    """A committed verdict as the store keeps it (its reasons and counts, not its findings)."""
    return Verdict(outcome=Outcome(record.state), reasons=record.reasons,
                   policy_version=record.policy_version or "unknown", counts=dict(record.counts),
                   highest_severity=record.highest_severity,
                   scan_status=record.scan_status or "UNKNOWN",
                   matched_rule=record.matched_rule or "default")
