"""Judge: an image's scan (or its platform images' verdicts) and the newest policy in, a verdict
out. Nothing here changes a tag or announces anything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from gatekeeper.adapters.ecr import Platform, ScanResult
from gatekeeper.adapters.store import PENDING, ImageRecord
from gatekeeper.domain import evaluation
from gatekeeper.domain.events import ImageEvent, Kind, Trigger
from gatekeeper.domain.policy import SCAN_FAILED_STATES, Policy
from gatekeeper.domain.scope import Scope
from gatekeeper.domain.verdict import Verdict
from gatekeeper.observability import logger
from gatekeeper.service.ports import (
    Images,
    PolicySource,
    Result,
    ScanNotReady,
    StalePolicy,
    Store,
)


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    policy: Policy
    scan_completed_at: str | None = None


@dataclass(frozen=True)
class Pending:
    reason: str
    scan: ScanResult | None = None


class Judge:
    def __init__(self, images: Images, store: Store, policies: PolicySource,
                 clock: Callable[[], datetime], scope: Scope | None = None) -> None:
        self.images = images
        self.store = store
        self.policies = policies
        self.clock = clock
        self.scope = scope  # where the images judged here live (the policy's ``accounts:``)

    def account(self, event: ImageEvent) -> str | None:
        """The image's account, for the policy's ``accounts:`` rules (None: unknown, and no
        rule restricted to named accounts applies)."""
        return event.account or (self.scope.account if self.scope else None)

    def __call__(self, event: ImageEvent, record: ImageRecord | None
                 ) -> Judgement | Pending | Result:
        """The verdict on the image; Pending while it has none; a Result when the event
        must not change it (an older scan). ImageGone propagates."""
        repo, digest = event.repository, event.digest
        platforms = self._platforms(event, record)
        if platforms is not None:
            return self._index(event, record, platforms)
        scan = self.images.scan(repo, digest)
        policy = self.policy(record)
        verdict = self._verdict(event, scan, policy)
        if verdict is None:
            return Pending("no finished scan yet; waiting for the scan event", scan)
        if scan is not None and scan.in_use is not None:
            verdict = replace(verdict, in_use=scan.in_use)
        completed = (scan.completed_at.astimezone(UTC).isoformat()
                     if scan and scan.completed_at else None)
        if (record is not None and record.judged and completed and record.scan_completed_at
                and completed < record.scan_completed_at):
            logger.info("older scan than the recorded verdict; ignored", repository=repo,
                        digest=digest, scan_completed_at=completed,
                        recorded=record.scan_completed_at)
            return Result("stale", repo, digest, verdict=record.state,
                          reason="scan older than the recorded verdict")
        return Judgement(verdict, policy, completed)

    def policy(self, record: ImageRecord | None) -> Policy:
        """The newest policy: a verdict recorded under a version this container's cache does
        not hold makes it read the object again (a conditional GET). A policy older than the
        recorded one is never used."""
        policy = self.policies.get()
        if (record is not None and record.policy_version
                and record.policy_version != policy.version):
            policy = self.policies.refresh()
            logger.info("policy re-read: the verdict names another version",
                        recorded=record.policy_version, current=policy.version)
        if record is not None and record.policy_order and policy.order \
                and policy.order < record.policy_order:
            raise StalePolicy(f"policy {policy.version} (published {policy.order}) is older "
                              f"than {record.policy_version} (published {record.policy_order})"
                              " behind the recorded verdict")
        return policy

    def _verdict(self, event: ImageEvent, scan: ScanResult | None,
                 policy: Policy) -> Verdict | None:
        repo, now = event.repository, self.clock()
        if scan is not None:
            verdict = evaluation.judge_scan(policy, repo, scan.status, scan.description,
                                            scan.findings, now, digest=event.digest,
                                            account=self.account(event))
            if verdict is not None:
                return verdict
        # ECR has no finished scan. A scan event that itself reports a failure is enough.
        if event.kind is not Kind.PUSH and event.scan_status in SCAN_FAILED_STATES:
            return evaluation.scan_failed(policy, repo, event.scan_status,
                                          "reported by the scan event",
                                          account=self.account(event))
        if event.kind is Kind.REEVALUATE and event.trigger == Trigger.SCAN_TIMEOUT:
            return evaluation.scan_failed(policy, repo, "SCAN_TIMEOUT", "no scan result in time"
                                          + (f" (ECR reports {scan.status})" if scan else ""),
                                          account=self.account(event))
        if event.kind in (Kind.PUSH, Kind.REEVALUATE):
            return None
        raise ScanNotReady(
            f"{event.kind} event says {event.scan_status} but ECR reports "
            f"{scan.status if scan else 'no scan'} for {repo}@{event.digest}"
        )

    def _platforms(self, event: ImageEvent, record: ImageRecord | None) -> list[Platform] | None:
        """The platform images when this digest is an image index (read once, on its push)."""
        if record is not None and record.platforms:
            return [Platform(d, p) for d, p in record.platforms]
        if event.kind is Kind.PUSH and (record is None or not record.judged):
            return self.images.platforms(event.repository, event.digest)
        return None

    def _index(self, event: ImageEvent, record: ImageRecord | None,
               platforms: list[Platform]) -> Judgement | Pending:
        """An image index follows its platform images' verdicts (recorded on first sight)."""
        repo, digest = event.repository, event.digest
        if record is None or not record.platforms:
            for platform in platforms:
                self.store.link(repo, platform.digest, digest)
            now = self.clock().isoformat()
            base = record or ImageRecord(repo, digest, tags=event.tags, trigger=event.cause,
                                         decided_at=now, created_at=now)
            record = self.store.put(
                replace(base, platforms=tuple((p.digest, p.platform) for p in platforms)),
                record.revision if record else None)
        judged = [(p, self.store.get(repo, p.digest)) for p in platforms]
        waiting = [p.platform for p, child in judged if child is None or child.state == PENDING]
        if waiting:
            logger.info("image index pending", repository=repo, digest=digest, waiting=waiting)
            return Pending(f"image index waiting for {', '.join(waiting)}")
        policy = self.policy(record)
        verdict = evaluation.index_verdict(policy, repo, [
            (p.platform, p.digest, child.state, child.reasons)
            for p, child in judged if child is not None], account=self.account(event))
        return Judgement(verdict, policy)
