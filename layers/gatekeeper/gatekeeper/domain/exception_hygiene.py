"""Exception hygiene: which of a policy's exceptions have expired, expire soon, or match nothing.

``gatekeeper policy lint`` gathers what the recorded images' findings made the policy use
(each verdict's ``exceptions_used``, judged on findings read again from ECR) and this module
classifies every exception of the policy:

* ``expired``: past its ``expires`` (it no longer applies; delete it);
* ``expiring``: active, and expires within the window (renew it, or fix the image);
* ``unused``: active, and no recorded image has a finding it exempts (delete it). Only when
  usage is known: without it (``used=None``) nothing is called unused.

An exception may be both expiring and unused. Pure: no AWS, no clock (``now`` is given).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from gatekeeper.domain.policy import Policy, PolicyException
from gatekeeper.domain.verdict import ExceptionRef


class Problem(enum.StrEnum):
    EXPIRED = "expired"
    EXPIRING = "expiring"
    UNUSED = "unused"


@dataclass(frozen=True)
class ExceptionReport:
    """One exception of the policy and what is wrong with it (nothing: ``problems`` empty)."""

    exception: PolicyException
    problems: tuple[Problem, ...]
    days_left: int | None  # whole days until it expires (negative: whole days since it
    # expired); None: never (9999-12-31)

    @property
    def index(self) -> int:
        return self.exception.index


def classify(policy: Policy, now: datetime, within: timedelta,
             used: Collection[ExceptionRef] | None) -> list[ExceptionReport]:
    """Every exception of ``policy`` in file order, with its problems at ``now``: expiring
    means expiring before ``now + within``; ``used`` holds the exceptions some verdict used
    (None: usage unknown, so none is called unused)."""
    window_end = now + within
    reports = []
    for exception in policy.exceptions:
        problems: list[Problem] = []
        if not exception.active(now):
            problems.append(Problem.EXPIRED)
        else:
            if exception.expires <= window_end:
                problems.append(Problem.EXPIRING)
            if used is not None and exception.ref not in used:
                problems.append(Problem.UNUSED)
        reports.append(ExceptionReport(exception, tuple(problems), _days_left(exception, now)))
    return reports


def _days_left(exception: PolicyException, now: datetime) -> int | None:
    if exception.expires.year >= 9999:
        return None
    left = exception.expires - now
    day = timedelta(days=1)
    return left // day if left >= timedelta(0) else -((-left) // day)  # whole days, either way
