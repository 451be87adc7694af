"""One writer per image: a lease kept on the image's own verdict record.

The lease is an owner and an expiry written with the record. It is taken by the write that
starts a change (the verdict commit, or the record write before a reconcile), so it costs no
call of its own, and released by the write that settles it. Every record write is
conditional on the revision read, so a writer that read the record before the lease was
taken loses the race (Conflict) and, re-reading, sees the lease. A second writer waits for
the lease a bounded time, then fails its invocation (LeaseBusy) so that Lambda or SQS
delivers the event again; a holder that died is taken over once its lease expires. The
lease outlives any function timeout, so a live holder is never overtaken.

Leases run on the wall clock (time.time), not the verdicts' clock, which tests move.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace

from botocore.exceptions import BotoCoreError, ClientError

from gatekeeper.adapters.store import Conflict, ImageRecord
from gatekeeper.observability import logger
from gatekeeper.service.ports import LeaseBusy, Store

_CONTAINER = uuid.uuid4().hex[:8]


def _wall() -> float:
    """The lease clock (one place for tests to move it)."""
    return time.time()


class Leases:
    def __init__(self, store: Store, seconds: float = 90, wait_seconds: float = 20,
                 clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.seconds = seconds
        self.wait_seconds = wait_seconds
        self._clock = clock
        self.sleep = sleep

    def clock(self) -> float:
        return (self._clock or _wall)()

    def on(self, store: Store) -> Leases:
        """The same lease rules on another store (a member account's records)."""
        return Leases(store, self.seconds, self.wait_seconds, self._clock, self.sleep)

    @staticmethod
    def new_owner() -> str:
        """A name for one invocation's hold on an image."""
        return f"{_CONTAINER}-{uuid.uuid4().hex[:12]}"

    def wait(self, record: ImageRecord | None, owner: str) -> ImageRecord | None:
        """The record once no other writer holds it (re-read while waiting); LeaseBusy when
        the holder has not finished within ``wait_seconds``."""
        if record is None or not record.leased_by_other(owner, self.clock()):
            return record
        deadline = self.clock() + self.wait_seconds
        pause = 0.05
        while record is not None and record.leased_by_other(owner, self.clock()):
            if self.clock() >= deadline:
                raise LeaseBusy(f"{record.repository}@{record.digest} is held by "
                                f"{record.lease_owner} until {record.lease_until:.0f}")
            logger.debug("image held by another writer; waiting", holder=record.lease_owner)
            self.sleep(min(pause, max(0.0, deadline - self.clock())))
            pause = min(pause * 2, 1.0)
            record = self.store.get(record.repository, record.digest)
        return record

    def claim(self, record: ImageRecord, owner: str) -> ImageRecord:
        """``record`` as written by the lease holder."""
        return replace(record, lease_owner=owner, lease_until=self.clock() + self.seconds)

    @staticmethod
    def cleared(record: ImageRecord) -> ImageRecord:
        return replace(record, lease_owner=None, lease_until=0.0)

    def release(self, committed: ImageRecord) -> None:
        """Best effort, after a failure mid-change: free the image for the retry at once
        (the record stays unsettled, so the retry resumes the change). If this write fails
        too, the lease simply expires."""
        try:
            self.store.put(self.cleared(committed), committed.revision)
        except (Conflict, ClientError, BotoCoreError) as err:
            logger.warning("lease not released; it expires", reason=str(err),
                           lease_until=committed.lease_until)
