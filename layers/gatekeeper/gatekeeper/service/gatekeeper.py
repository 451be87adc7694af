"""The gatekeeper's use case: an image event in, the image converged to its verdict out.

    event -> judge (scan, newest policy -> verdict)
          -> take the image's lease with the verdict commit (or with the record write before
             a reconcile): one writer per image
          -> enforce (read the image's tags, add the verdict's marker, remove contradicting
             markers; storage class)
          -> announce (in verdict order) -> settle, releasing the lease

Each step is idempotent, so EventBridge retries and a dead-letter replay are always safe: a
crash anywhere leaves an unsettled record, and the next delivery finishes the work. The
image's tags are observed on every judgement, redelivery and sweep, and converged; the record
says what was decided and done, the image what is true.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from gatekeeper.adapters.ecr import ImageGone
from gatekeeper.adapters.store import (
    MAX_ITEM_BYTES,
    PENDING,
    Conflict,
    HistoryEntry,
    ImageRecord,
    bounded,
)
from gatekeeper.domain import attestation
from gatekeeper.domain.events import ImageEvent, Kind, Trigger, reevaluation
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.policy import Notifications
from gatekeeper.domain.reconcile import user_tags
from gatekeeper.domain.scope import Scope
from gatekeeper.domain.verdict import Outcome, Verdict
from gatekeeper.observability import logger
from gatekeeper.service.announce import Announcer
from gatekeeper.service.enforce import Enforcer, Reconciled
from gatekeeper.service.judge import Judge, Judgement, Pending
from gatekeeper.service.lease import Leases
from gatekeeper.service.ports import (
    FindingsPublisher,
    Images,
    Notifier,
    PolicySource,
    Result,
    Signer,
    Store,
)

_MAX_CONFLICT_RETRIES = 5
_MAX_DEPTH = 3  # images re-judged because of this one (indexes, a moved marker's owner)


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
        leases: Leases | None = None,
        signer: Signer | None = None,
        scope: Scope | None = None,
        member: bool = False,
        findings: FindingsPublisher | None = None,
    ) -> None:
        self.images = images
        self.store = store
        self.notifier = notifier
        self.policies = policies
        self.markers = markers
        self.clock = clock
        self.start_scans = start_scans
        self.leases = leases or Leases(store)
        self.signer = signer  # None: the stack has no signing key, verdicts go unsigned
        self.scope = scope  # the account and Region of the images judged here (None: unknown)
        self.member = member  # a member account's images (an organization's hub): their
        # records are keyed, and their verdicts signed, with their account and Region
        self.judge = Judge(images, store, policies, lambda: self.clock(), scope)
        self.enforcer = Enforcer(images, markers)
        self.announcer = Announcer(notifier, store, self._now, scope, findings)

    def for_scope(self, scope: Scope, images: Images) -> Gatekeeper:
        """The same gatekeeper (policy, signer, notifier, markers, lease timings) judging a
        member account's images: its ECR is ``images`` (through the account's spoke role) and
        its records are the table's items of that account and Region."""
        store = self.store.scoped(scope)  # type: ignore[attr-defined]
        return Gatekeeper(
            images=images, store=store, notifier=self.notifier, policies=self.policies,
            markers=self.markers, clock=self.clock, start_scans=self.start_scans,
            leases=self.leases.on(store),
            signer=self.signer, scope=scope, member=True,
            findings=self.announcer.findings)

    def handle(self, event: ImageEvent, _depth: int = 0) -> Result:
        owner = self.leases.new_owner()
        for _ in range(_MAX_CONFLICT_RETRIES):
            try:
                result = self._handle(event, owner, _depth)
            except Conflict:
                logger.info("concurrent update, re-reading", repository=event.repository,
                            digest=event.digest)
            else:
                return result
        raise Conflict(f"{event.repository}@{event.digest}: too many concurrent updates")

    # -- one attempt ----------------------------------------------------------------------

    def _handle(self, event: ImageEvent, owner: str, depth: int) -> Result:
        repo, digest = event.repository, event.digest
        record = self.store.get(repo, digest)
        forged: tuple[str, ...] = ()

        if event.kind is Kind.PUSH:
            markers = [t for t in event.tags if self.markers.parse(t)]
            unknown = [t for t in markers if not self._ours(t, record, digest)]
            if markers and not unknown:
                logger.debug("echo of our own marker", repository=repo, tags=markers)
                return Result("ignored", repo, digest, reason="own marker echo",
                              marker=markers[0])
            if unknown:
                record = self.leases.wait(record, owner)
                try:
                    on_image = self.images.observe(repo, digest)
                except ImageGone as gone:
                    return Result("image-gone", repo, digest, marker=unknown[0],
                                  reason=str(gone))
                forged = tuple(t for t in unknown if t in on_image)
                if not forged:
                    return Result("ignored", repo, digest, marker=unknown[0],
                                  reason="marker no longer on the image; nothing to undo")
                logger.warning("marker the gatekeeper did not write", repository=repo,
                               digest=digest, tags=list(forged))
                event = reevaluation(repo, digest, Trigger.FORGERY, event.tags, event.scope)
            elif record is not None and record.complete:
                return self._retagged(event, record, owner)

        record = self.leases.wait(record, owner)
        try:
            judged = self.judge(event, record)
        except ImageGone as gone:
            logger.warning("image gone before it could be judged", repository=repo,
                           digest=digest, reason=str(gone))
            return Result("image-gone", repo, digest, reason=str(gone))
        if isinstance(judged, Result):
            return judged
        if isinstance(judged, Pending):
            return self._pending(event, record, judged, owner, forged)
        return self._apply(event, record, judged, owner, forged, depth)

    def _ours(self, tag: str, record: ImageRecord | None, digest: str) -> bool:
        """The marker the record says the gatekeeper wrote on this very image."""
        return (record is not None and tag == record.marker
                and self.markers.is_marker_of(tag, digest))

    # -- outcomes -------------------------------------------------------------------------

    def _retagged(self, event: ImageEvent, record: ImageRecord, owner: str) -> Result:
        """A user's tag was pushed onto an image already judged: nothing to judge again; its
        markers are still checked (the image is the truth)."""
        repo, digest = event.repository, event.digest
        try:
            actual = self.images.observe(repo, digest)
        except ImageGone as gone:
            return Result("image-gone", repo, digest, reason=str(gone))
        verdict = _recorded_verdict(record)
        write = record.marker is not None
        if self.enforcer.plan(digest, actual, verdict.outcome, write).converged:
            return Result("unchanged", repo, digest, verdict=record.state, marker=record.marker,
                          reason="image already judged; a tag was added to it")
        record = self.leases.wait(record, owner)
        if record is None:  # pragma: no cover - a record is never deleted while judged
            return Result("ignored", repo, digest, reason="record gone")
        committed = self.store.put(self.leases.claim(record, owner), record.revision)
        return self._converge(event, committed, verdict, actual, write, owner, changed=False)

    def _pending(self, event: ImageEvent, record: ImageRecord | None, pending: Pending,
                 owner: str, forged: tuple[str, ...]) -> Result:
        repo, digest = event.repository, event.digest
        reason = pending.reason
        now = self._now()
        if record is None:
            fresh = ImageRecord(repo, digest, tags=user_tags(self.markers, event.tags),
                                trigger=event.cause, decided_at=now, created_at=now)
            record = self.store.put(self.leases.claim(fresh, owner) if forged else fresh, None)
        elif forged:
            record = self.store.put(self.leases.claim(record, owner), record.revision)
        if forged:  # no verdict yet: no marker may stay (but the image's last tag)
            try:
                actual = self.images.observe(repo, digest)
                done = self.enforcer.reconcile(repo, digest, actual, None, write=False)
                self._alert(event, forged, done, record.state)
            except ImageGone as gone:
                self.store.put(self.leases.cleared(replace(record, gone=True)), record.revision)
                return Result("image-gone", repo, digest, reason=str(gone))
            except Exception:
                self.leases.release(record)
                raise
            self.store.put(self.leases.cleared(replace(
                record, tags=user_tags(self.markers, done.tags))), record.revision)
        scan = pending.scan
        if scan is None and event.kind is Kind.PUSH and self.start_scans:
            started = self._start_scan(repo, digest)
            reason += f" (scan {started})" if started == "started" else f" ({started})"
        logger.info("image pending", repository=repo, digest=digest,
                    scan_status=scan.status if scan else None)
        return Result("pending", repo, digest, verdict=PENDING, reason=reason)

    def _start_scan(self, repo: str, digest: str) -> str:
        try:
            started = self.images.start_scan(repo, digest)
        except ImageGone as gone:
            return f"not started: {gone}"
        logger.info("basic scan started" if started == "started" else "no scan started",
                    repository=repo, digest=digest, reason=started)
        return started

    def _apply(self, event: ImageEvent, record: ImageRecord | None, judged: Judgement,
               owner: str, forged: tuple[str, ...], depth: int) -> Result:
        repo, digest = event.repository, event.digest
        verdict, settings = judged.verdict, judged.policy.notifications
        write = not verdict.monitor
        marker = self.markers.tag_for(verdict.outcome, digest) if write else None
        prior = record.state if record is not None and record.judged else None
        # What subscribers were last told: an interrupted change was never announced.
        previous = (record.previous_state if record is not None and not record.settled
                    else prior)
        earlier = None
        if (record is not None and not record.settled and record.judged
                and record.state != previous and record.state != verdict.outcome):
            # An earlier change was committed and enforced, but its notice may never have gone
            # out (its event awaits a retry, or sits in the DLQ) and this verdict supersedes
            # it: it is announced first, under its own verdict_id, so subscribers hear of
            # every verdict that was in force, in order (at least once; never lost).
            earlier = (record, previous)
            previous = record.state
        changed = previous != verdict.outcome

        try:
            actual = self.images.observe(repo, digest)
        except ImageGone as gone:
            return self._gone(record, repo, digest, gone, verdict)
        tag_plan = self.enforcer.plan(digest, actual, verdict.outcome, write)
        archived = record.archived if record is not None else False
        storage_due = self.enforcer.storage_due(verdict, archived)
        details_same = record is not None and (record.reasons == verdict.reasons
                                               and record.policy_version == verdict.policy_version)
        if (record is not None and not changed and record.complete and not tag_plan.writes
                and not storage_due and not forged):
            review_at = verdict.review_at.isoformat() if verdict.review_at else None
            if (not details_same or record.review_at != review_at
                    or record.in_use != verdict.in_use
                    or record.exceptions_used != _exception_ids(verdict)
                    or record.policy_order != (judged.policy.order or record.policy_order)):
                updated = self._record(record, event, verdict, marker, actual, judged,
                                       settled=True, previous=record.previous_state)
                self.store.put(updated, record.revision,
                               None if details_same else self._history(updated, previous))
            return Result("unchanged", repo, digest, verdict=str(verdict.outcome), marker=marker,
                          reason="verdict unchanged")

        # Something to write: take the image's lease with the commit.
        resuming = (record is not None and not record.settled and record.judged
                    and record.state == verdict.outcome and record.marker == marker)
        if resuming and record is not None:
            committed = self.store.put(self.leases.claim(record, owner), record.revision)
        else:
            pending = self._signed(replace(
                self._record(record, event, verdict, marker, actual, judged, settled=False,
                             previous=previous),
                verdict_revision=(record.revision if record else 0) + 1))
            new_state = record is None or record.state != pending.state
            committed = self.store.put(
                self.leases.claim(pending, owner), record.revision if record else None,
                self._history(pending, prior) if new_state or not details_same else None)
            logger.info("verdict committed", repository=repo, digest=digest,
                        verdict=str(verdict.outcome), previous=prior,
                        reasons=list(verdict.reasons), policy_version=verdict.policy_version)
        # A contradicting marker the gatekeeper did not write is a forgery, however it was
        # found (its own push event, or this judgement's look at the image).
        # The markers of this digest for the verdicts the record holds (an interrupted flip
        # leaves the previous one on the image) are the gatekeeper's own.
        ours = set()
        if record is not None:
            ours = {self.markers.tag_for(Outcome(state), digest)
                    for state in (record.state, record.previous_state)
                    if state and state != PENDING}
            ours.add(record.marker)
        found = tuple(t for t in (*tag_plan.remove, *tag_plan.kept) if t not in ours)
        return self._converge(event, committed, verdict, actual, write, owner, changed=changed,
                              settings=settings, earlier=earlier, previous=previous,
                              forged=tuple(dict.fromkeys((*forged, *found))), depth=depth)

    def _converge(self, event: ImageEvent, committed: ImageRecord, verdict: Verdict,
                  actual: list[str], write: bool, owner: str, *, changed: bool,
                  settings: Notifications | None = None,
                  earlier: tuple[ImageRecord, str | None] | None = None,
                  previous: str | None = None, forged: tuple[str, ...] = (),
                  depth: int = 0) -> Result:
        """Under the lease: tags, storage class, notices, then settle (releasing it)."""
        repo, digest = event.repository, event.digest
        settings = settings or self._notifications()
        try:
            done = self.enforcer.reconcile(repo, digest, actual, verdict.outcome, write)
            archived = committed.archived
            if write:
                archived = self.enforcer.storage(repo, digest, verdict, committed.archived)
            if forged:
                self._alert(event, forged, done, committed.state, settings)
            notified = False
            tags = user_tags(self.markers, done.tags)
            if changed:
                # Before the notice and the settle: if this fails, the retry resumes here.
                self._follow_indexes(event, depth)
                if earlier is not None:
                    old, told = earlier
                    self.announcer.verdict(event, old, _recorded_verdict(old), told,
                                           old.marker, old.tags, settings, trigger=old.trigger)
                notified = self.announcer.verdict(event, committed, verdict, previous,
                                                  committed.marker, tags, settings)
        except ImageGone as gone:
            return self._gone(committed, repo, digest, gone, verdict, committed=True)
        except Exception:
            self.leases.release(committed)
            raise
        self.store.put(self.leases.cleared(replace(committed, settled=True, archived=archived,
                                                   tags=tags)), committed.revision)
        self._remark_owners(event, done, depth)
        if not changed:  # the same verdict, now enforced on the image
            return Result("enforced", repo, digest, verdict=str(verdict.outcome),
                          marker=committed.marker, reason="verdict unchanged; image reconciled")
        return Result("judged", repo, digest, verdict=str(verdict.outcome), previous=previous,
                      marker=committed.marker, notified=notified,
                      in_use=verdict.in_use.running if verdict.in_use else None)

    def _gone(self, record: ImageRecord | None, repo: str, digest: str, gone: ImageGone,
              verdict: Verdict, *, committed: bool = False) -> Result:
        """The image was deleted before it could be tagged: the record says so. Past the
        commit (``committed``), the change is settled and the image's lease released."""
        logger.warning("image deleted before it could be tagged", repository=repo,
                       digest=digest, reason=str(gone))
        if committed and record is not None:
            self.store.put(self.leases.cleared(replace(record, settled=True, gone=True)),
                           record.revision)
        elif record is not None and not record.gone:
            self.store.put(replace(record, gone=True), record.revision)
        return Result("image-gone", repo, digest, verdict=str(verdict.outcome), reason=str(gone))

    # -- follow-ups -----------------------------------------------------------------------

    def _alert(self, event: ImageEvent, forged: tuple[str, ...], done: Reconciled,
               verdict: str | None, settings: Notifications | None = None) -> None:
        settings = settings or self._notifications()
        for tag in forged:
            self.announcer.forgery(event, tag, removed=tag in done.removed,
                                   verdict=None if verdict == PENDING else verdict,
                                   tags=user_tags(self.markers, done.tags), settings=settings)

    def _follow_indexes(self, event: ImageEvent, depth: int) -> None:
        """A platform image changed verdict: the image indexes referencing it follow."""
        if depth >= _MAX_DEPTH:
            return
        for index in self.store.indexes(event.repository, event.digest):
            logger.info("re-judging an image index after a platform image changed",
                        repository=event.repository, index=index, platform_image=event.digest)
            self.handle(reevaluation(event.repository, index, Trigger.PLATFORM,
                                         scope=event.scope), depth + 1)

    def _remark_owners(self, event: ImageEvent, done: Reconciled, depth: int) -> None:
        """A marker naming another image was removed from this one: that image (if it still
        exists) is judged again, so that it carries its own marker."""
        if depth >= _MAX_DEPTH:
            return
        for prefix in done.foreign_prefixes:
            for other in self.images.find(event.repository, prefix):
                if other == event.digest:
                    continue
                logger.warning("re-marking the image a moved marker belongs to",
                               repository=event.repository, digest=other, found_on=event.digest)
                self.handle(reevaluation(event.repository, other, Trigger.FORGERY,
                                             scope=event.scope), depth + 1)

    def _notifications(self) -> Notifications:
        """The policy's notification settings; the defaults if the policy cannot be read (an
        alert is still sent, only without its channel)."""
        try:
            return self.policies.get().notifications
        except Exception as err:  # routing must never stop a security alert
            logger.warning("policy unreadable; notifying without routing", reason=str(err))
            return Notifications()

    # -- records --------------------------------------------------------------------------

    def _record(self, record: ImageRecord | None, event: ImageEvent, verdict: Verdict,
                marker: str | None, actual: list[str], judged: Judgement, *, settled: bool,
                previous: str | None) -> ImageRecord:
        base = record or ImageRecord(event.repository, event.digest)
        return replace(
            base,
            state=str(verdict.outcome),
            tags=user_tags(self.markers, actual),
            tags_omitted=0,
            marker=marker,
            settled=settled,
            reasons=verdict.reasons,
            counts=dict(verdict.counts),
            highest_severity=verdict.highest_severity,
            policy_version=verdict.policy_version,
            policy_order=judged.policy.order or base.policy_order,
            matched_rule=verdict.matched_rule,
            scan_status=verdict.scan_status,
            scan_completed_at=judged.scan_completed_at or base.scan_completed_at,
            decided_at=self._now(),
            trigger=event.cause,
            gone=False,
            review_at=verdict.review_at.isoformat() if verdict.review_at else None,
            created_at=base.created_at or self._now(),
            previous_state=previous,
            in_use=verdict.in_use,
            exceptions_used=_exception_ids(verdict),
        )

    def _signed(self, pending: ImageRecord) -> ImageRecord:
        """The verdict about to be committed, with its signed envelope (before the write that
        commits it: a record never holds an unsigned or stale verdict while the stack has a
        key). Bounded first, so that the record and its envelope fit in one item."""
        if self.signer is None:
            return replace(pending, envelope=None)
        pending = bounded(replace(pending, envelope=None), MAX_ITEM_BYTES // 3)
        subject = attestation.subject_name(pending.repository,
                                           self.scope if self.member else None)
        payload = attestation.statement(subject, pending.digest, attestation.predicate(
            outcome=pending.state, repository=pending.repository, digest=pending.digest,
            policy_version=pending.policy_version, decided_at=pending.decided_at,
            verdict_revision=pending.verdict_revision, reasons=pending.reasons,
            counts=pending.counts))
        signature = self.signer.sign(attestation.pae(attestation.PAYLOAD_TYPE, payload))
        return replace(pending, envelope=attestation.envelope(payload, [signature]).as_dict())

    @staticmethod
    def _history(record: ImageRecord, previous: str | None) -> HistoryEntry:
        return HistoryEntry(
            decided_at=record.decided_at or "", state=record.state, previous=previous,
            trigger=record.trigger or "unknown", policy_version=record.policy_version,
            reasons=record.reasons, scan_status=record.scan_status, marker=record.marker,
            envelope=record.envelope)

    def _now(self) -> str:
        return self.clock().isoformat()


def _exception_ids(verdict: Verdict) -> tuple[str, ...]:
    """The ids of the exceptions a verdict applied, as its record keeps them."""
    return tuple(dict.fromkeys(e.id for e in verdict.exceptions_used))


def _recorded_verdict(record: ImageRecord) -> Verdict:
    """A committed verdict as the store keeps it (its reasons and counts, not its findings)."""
    return Verdict(outcome=Outcome(record.state), reasons=record.reasons,
                   policy_version=record.policy_version or "unknown", counts=dict(record.counts),
                   highest_severity=record.highest_severity,
                   scan_status=record.scan_status or "UNKNOWN",
                   matched_rule=record.matched_rule or "default",
                   mode="enforce" if record.marker else "monitor", in_use=record.in_use)
