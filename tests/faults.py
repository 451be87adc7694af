"""Fault injection for the moto-backed World: failing AWS calls, and Lambda/EventBridge retries.

Two layers of retry are modelled, as in production:

* ``FaultInjector`` answers a chosen share of ECR, SNS and DynamoDB HTTP requests with a
  throttling or 5xx error of the service's own protocol shape, so that botocore's standard
  retry mode (``runtime._BOTO``: max_attempts 5) retries them as it would against AWS. It
  sits on the session's ``before-send`` event in place of moto's stubber, which it calls for
  every request it does not fail: botocore *emits* ``before-send`` to every handler (it does
  not stop at the first response), so a handler merely registered ahead of moto's would
  still let moto carry out the "failed" request. A throttled request must not take effect.
  A ``ghost`` share of the 5xx answers is given after moto did carry the request out (the
  response was lost on the way back), which is the other thing a 5xx can mean.
* ``EventBus`` delivers events to the handlers like EventBridge's asynchronous Lambda
  invocation: a failed invocation is re-delivered later (Lambda async: 2 retries), then
  parked in a dead-letter list that ``replay_dlq`` re-drives with the faults switched off.

``no_backoff`` keeps botocore's backoff computation but never sleeps; the delays it would
have waited are added up (reported, never asserted).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field, replace
from io import BytesIO, StringIO
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.retries import standard
from moto.core.models import botocore_stubber


@dataclass(frozen=True)
class Fault:
    status: int
    code: str
    message: str

    @property
    def throttling(self) -> bool:
        return self.status in (400, 429)


THROTTLING = Fault(400, "ThrottlingException", "Rate exceeded")
THROUGHPUT = Fault(400, "ProvisionedThroughputExceededException",
                   "The level of configured provisioned throughput for the table was exceeded.")
INTERNAL = Fault(500, "InternalFailure", "We encountered an internal error. Please try again.")
UNAVAILABLE = Fault(503, "ServiceUnavailable", "Service is unavailable. Please try again.")
# SNS speaks the query protocol: its own codes, in an <ErrorResponse> document.
SNS_THROTTLING = Fault(400, "Throttling", "Rate exceeded")
SNS_INTERNAL = Fault(500, "InternalError", "Internal Error")
SNS_THROTTLED = Fault(429, "Throttled", "Rate exceeded")  # SNS's modeled ThrottledException

# What a random fault is drawn from, per service.
MENU: dict[str, tuple[Fault, ...]] = {
    "ecr": (THROTTLING, INTERNAL, UNAVAILABLE),
    "dynamodb": (THROTTLING, THROUGHPUT, INTERNAL, UNAVAILABLE),
    "sns": (SNS_THROTTLING, SNS_THROTTLED, SNS_INTERNAL, UNAVAILABLE),
}
QUERY_PROTOCOL = {"sns", "sqs-query", "sts", "iam"}


class _Raw(BytesIO):
    """What botocore reads an HTTP body from (``read`` and ``stream``)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


def error_response(service: str, url: str, fault: Fault, request_id: str) -> AWSResponse:
    """``fault`` as the service would send it: JSON (``__type``) or query XML."""
    if service in QUERY_PROTOCOL:
        sender = "Sender" if fault.status < 500 else "Receiver"
        body = (
            '<ErrorResponse xmlns="https://sns.amazonaws.com/doc/2010-03-31/">'
            f"<Error><Type>{sender}</Type><Code>{fault.code}</Code>"
            f"<Message>{fault.message}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = {"Content-Type": "text/xml", "x-amzn-RequestId": request_id}
    else:
        body = json.dumps({"__type": fault.code, "message": fault.message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0",
                   "x-amzn-ErrorType": f"{fault.code}:", "x-amzn-RequestId": request_id}
    headers["Content-Length"] = str(len(body))
    return AWSResponse(url, fault.status, headers, _Raw(body))


@dataclass
class Call:
    """One HTTP attempt made while the injector was active."""

    service: str
    operation: str
    invocation: str  # botocore's amz-sdk-invocation-id: the same for every retry of a call
    attempt: int
    max_attempts: int  # botocore's total: runtime's max_attempts 5 means 6 attempts in all
    delivery: int | None
    fault: Fault | None = None
    ghost: bool = False  # moto carried the request out, the client was told it failed
    status: int = 0  # what moto answered (0: moto was not asked)
    body: bytes = b""  # the request body

    @property
    def took_effect(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Rule:
    """A targeted fault: fail the calls ``match`` selects, ``times`` times (None: always)."""

    match: Callable[[Call], bool]
    fault: Fault
    times: int | None = None
    ghost: bool = False
    hits: int = 0


_ATTEMPT = re.compile(rb"attempt=(\d+)")
_MAX = re.compile(rb"max=(\d+)")


class FaultInjector:
    """Fails a share of the calls a session makes to ``services``; the rest go to moto."""

    def __init__(self, session: boto3.session.Session, *, rate: float = 0.3, seed: int = 7,
                 services: tuple[str, ...] = ("ecr", "sns", "dynamodb"),
                 persistence: float = 0.0, ghost_rate: float = 0.0) -> None:
        self.session = session
        self.rate = rate
        self.persistence = persistence
        self._episodes: dict[str, Fault] = {}  # invocation id -> the fault it is in
        self.random = random.Random(seed)
        self.services = set(services)
        self.ghost_rate = ghost_rate
        self.rules: list[Rule] = []
        self.calls: list[Call] = []
        self.active = False  # only calls made inside a handler invocation are looked at
        self.delivery: int | None = None
        self.listeners: list[Callable[[Call], None]] = []
        self.enabled = True

    # --- wiring ---------------------------------------------------------------------------

    def install(self) -> FaultInjector:
        """Take moto's place on ``before-send``. Clients copy the session's handlers when
        created: install before the gatekeeper is built (or ``cache_clear()`` it after)."""
        events = self.session.events
        events.unregister("before-send", botocore_stubber)
        events.register_first("before-send", self._before_send, unique_id="fault-injector")
        return self

    def uninstall(self) -> None:
        events = self.session.events
        events.unregister("before-send", unique_id="fault-injector")
        events.register("before-send", botocore_stubber)

    @contextmanager
    def calls_of(self, delivery: int) -> Iterator[None]:
        """Calls made meanwhile belong to ``delivery`` (one handler invocation)."""
        self.active, self.delivery = True, delivery
        try:
            yield
        finally:
            self.active, self.delivery = False, None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No random or targeted faults meanwhile (calls are still recorded)."""
        enabled, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = enabled

    def fail(self, match: Callable[[Call], bool], fault: Fault = INTERNAL, *,
             times: int | None = None, ghost: bool = False) -> Rule:
        rule = Rule(match, fault, times, ghost)
        self.rules.append(rule)
        return rule

    # --- the hook ---------------------------------------------------------------------------

    def _before_send(self, request: AWSPreparedRequest, event_name: str,
                     **_: Any) -> AWSResponse | None:
        _, service, operation = event_name.split(".", 2)
        if not self.active:
            return botocore_stubber(event_name=event_name, request=request)
        retry_header = _header(request, "amz-sdk-request")
        attempt, most = _ATTEMPT.search(retry_header), _MAX.search(retry_header)
        body = request.body if isinstance(request.body, bytes) else (
            (request.body or "").encode() if isinstance(request.body, str) else b"")
        call = Call(service, operation, _header(request, "amz-sdk-invocation-id").decode(),
                    int(attempt.group(1)) if attempt else 1,
                    int(most.group(1)) if most else 0, self.delivery, body=body)
        self.calls.append(call)
        fault, ghost = self._choose(call)
        moto = None
        if fault is None or ghost:  # moto carries the request out
            moto = botocore_stubber(event_name=event_name, request=request)
            call.status = moto.status_code if moto is not None else 0
        call.fault, call.ghost = fault, bool(fault and ghost and call.took_effect)
        if call.took_effect:
            for listener in self.listeners:
                listener(call)
        if fault is None:
            return moto
        return error_response(service, request.url, fault, f"fault-{len(self.calls)}")

    def _choose(self, call: Call) -> tuple[Fault | None, bool]:
        if not self.enabled:
            return None, False
        for rule in self.rules:
            if (rule.times is None or rule.hits < rule.times) and rule.match(call):
                rule.hits += 1
                return rule.fault, rule.ghost
        if call.service not in self.services or self.rate <= 0:
            return None, False
        # Always draw the same numbers per attempt, so a run is repeatable from its seed.
        roll, pick, ghost = self.random.random(), self.random.random(), self.random.random()
        episode = self._episodes.pop(call.invocation, None)
        if call.attempt > 1:
            # A retry of a failed attempt: with ``persistence``, the trouble is not over
            # (a throttled table stays throttled a while), else it goes through.
            if episode is None or roll >= self.persistence:
                return None, False
            fault = episode
        elif roll < self.rate:  # ``rate``: the share of calls whose first attempt fails
            menu = MENU.get(call.service, (THROTTLING, INTERNAL, UNAVAILABLE))
            fault = menu[int(pick * len(menu))]
        else:
            return None, False
        self._episodes[call.invocation] = fault
        return fault, (not fault.throttling and ghost < self.ghost_rate)

    # --- figures ---------------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        by_invocation: dict[str, list[Call]] = {}
        for call in self.calls:
            by_invocation.setdefault(call.invocation, []).append(call)
        faults = [c for c in self.calls if c.fault]
        surfaced = [attempts[-1] for attempts in by_invocation.values() if attempts[-1].fault]
        return {
            "api_calls": len(by_invocation),
            "api_calls_hit_by_a_fault": sum(any(c.fault for c in attempts)
                                            for attempts in by_invocation.values()),
            "http_attempts": len(self.calls),
            "faults_injected": len(faults),
            "faults_by_code": dict(Counter(f"{c.service}:{c.fault.code}" for c in faults
                                           if c.fault)),
            "ghost_faults": sum(c.ghost for c in faults),
            "botocore_retries": sum(c.attempt > 1 for c in self.calls),
            "faults_absorbed_by_botocore": len(faults) - len(surfaced),
            "faults_surfaced": len(surfaced),
            "surfaced_at_max_attempts": sum(c.attempt >= c.max_attempts for c in surfaced),
            "surfaced_early": sum(c.attempt < c.max_attempts for c in surfaced),
        }


def _header(request: AWSPreparedRequest, name: str) -> bytes:
    value = request.headers.get(name) or b""
    return value if isinstance(value, bytes) else str(value).encode()


def sns_form(call: Call) -> dict[str, str]:
    """A query-protocol request body (SNS) as a flat dict."""
    return {k: v[0] for k, v in parse_qs(call.body.decode()).items()}


def json_body(call: Call) -> dict[str, Any]:
    return json.loads(call.body or b"{}")


def no_backoff(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """botocore computes its backoff as usual, but the client never sleeps. Returns a dict
    whose ``seconds`` adds up the delays that would have been slept."""
    slept = {"seconds": 0.0, "retries": 0}
    original = standard.ExponentialBackoff.delay_amount

    def delay_amount(self: standard.ExponentialBackoff, context: Any) -> float:
        slept["seconds"] += original(self, context)
        slept["retries"] += 1
        return 0

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", delay_amount)
    return slept


# --- EventBridge -> Lambda (asynchronous invocation) ----------------------------------------

@dataclass
class Delivery:
    handler: str  # "push" or "scan"
    event: dict[str, Any]
    attempt: int = 0  # 0: first delivery; n: the n-th retry
    number: int = 0  # unique per delivery (attempts included)

    @property
    def image(self) -> tuple[str, str]:
        detail = self.event.get("detail", {})
        return str(detail.get("repository-name")), str(detail.get("image-digest"))


@dataclass
class Outcome:
    delivery: Delivery
    result: dict[str, Any] | None = None
    error: str | None = None
    replay: bool = False


@dataclass
class WallClock:
    """The wall clock the image leases read, moved by the bus as Lambda's delays pass."""

    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now


@dataclass
class EventBus:
    """Delivers events to the handlers in-process, re-delivers failures, keeps a DLQ.

    Time passes as it does in Lambda: a retry comes a minute or two after the failure, and
    the dead letters are replayed much later (an operator's replay), so a lease left by a
    failed invocation has expired by then."""

    handlers: dict[str, Callable[[dict[str, Any], Any], dict[str, Any]]]
    injector: FaultInjector
    context: Any
    retries: int = 2  # Lambda asynchronous invocation: two retries, then the DLQ
    queue: deque[Delivery] = field(default_factory=deque)
    dlq: list[Delivery] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    redeliveries: int = 0
    wall: WallClock = field(default_factory=WallClock)
    _numbers: int = 0

    def send(self, handler: str, event: dict[str, Any]) -> None:
        self.queue.append(self._numbered(Delivery(handler, event)))

    def drain(self) -> None:
        """Deliver until nothing is left; a retry goes to the back of the queue (Lambda waits
        a minute or two before it), so other events are handled in between."""
        while self.queue:
            delivery = self.queue.popleft()
            outcome = self._invoke(delivery)
            if outcome.error is None:
                continue
            if delivery.attempt < self.retries:
                self.redeliveries += 1
                self.wall.now += 60.0 * (delivery.attempt + 1)
                self.queue.append(self._numbered(replace(delivery, attempt=delivery.attempt + 1)))
            else:
                self.dlq.append(delivery)

    def replay_dlq(self) -> list[Outcome]:
        """Re-drive the dead letters once each, with the faults switched off."""
        replayed = []
        self.wall.now += 3600.0
        with self.injector.paused():
            for delivery in self.dlq:
                replayed.append(self._invoke(self._numbered(replace(delivery, attempt=0)),
                                             replay=True))
        return replayed

    def _numbered(self, delivery: Delivery) -> Delivery:
        self._numbers += 1
        return replace(delivery, number=self._numbers)

    def _invoke(self, delivery: Delivery, replay: bool = False) -> Outcome:
        outcome = Outcome(delivery, replay=replay)
        # The handlers print their EMF metrics to stdout: hundreds of invocations' worth.
        with self.injector.calls_of(delivery.number), redirect_stdout(StringIO()):
            try:
                outcome.result = self.handlers[delivery.handler](delivery.event, self.context)
            except Exception as err:  # a failed invocation: Lambda retries it
                outcome.error = f"{type(err).__name__}: {err}"
        self.outcomes.append(outcome)
        return outcome
