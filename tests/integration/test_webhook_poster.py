"""WebhookPoster against a real HTTP server on 127.0.0.1, its waits on a virtual clock: how long
it waits, how often it tries, and that it never waits past its deadline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gatekeeper.adapters.webhook import Retry, WebhookError, WebhookPoster, redact
from gatekeeper_tools.local.slack import Reply, WebhookReceiver

PAYLOAD = {"text": "hello", "blocks": []}


class VirtualClock:
    """time.monotonic and time.sleep for the poster: sleeping moves the clock, at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def poster(clock: VirtualClock, jitter: float = 1.0, **options: Any) -> WebhookPoster:
    return WebhookPoster(sleep=clock.sleep, clock=clock.clock, jitter=lambda: jitter,
                         timeout=2.0, **options)


def test_429_waits_exactly_what_retry_after_asks(receiver: WebhookReceiver) -> None:
    clock = VirtualClock()
    receiver.answer(Reply(429, headers={"Retry-After": "25"}), Reply(429, headers={
        "Retry-After": "3"}))
    posted = poster(clock).post(receiver.url, PAYLOAD, deadline=50)
    assert (posted.status, posted.attempts) == (200, 3)
    assert clock.slept == [25.0, 3.0]


def test_a_retry_after_above_the_cap_waits_the_cap(receiver: WebhookReceiver) -> None:
    clock = VirtualClock()
    receiver.answer(Reply(429, headers={"Retry-After": "3600"}))
    poster(clock, max_retry_after=30).post(receiver.url, PAYLOAD, deadline=50)
    assert clock.slept == [30.0]


def test_a_wait_past_the_deadline_is_not_begun(receiver: WebhookReceiver) -> None:
    clock = VirtualClock()
    receiver.answer(Reply(429, headers={"Retry-After": "20"}))
    with pytest.raises(WebhookError, match=r"in 20\.0 s, would pass the deadline"):
        poster(clock).post(receiver.url, PAYLOAD, deadline=15)
    assert clock.slept == []
    assert len(receiver.requests) == 1


def test_server_errors_back_off_exponentially_up_to_the_ceiling(
        receiver: WebhookReceiver) -> None:
    # Given a webhook failing five times (jitter at its top: each wait is its whole ceiling)
    clock = VirtualClock()
    receiver.answer(*[Reply(500)] * 5)
    retries: list[Retry] = []

    # When posting with 6 attempts, backoff 0.5 s doubling up to 4 s
    posted = poster(clock, max_attempts=6, backoff=0.5, max_backoff=4.0).post(
        receiver.url, PAYLOAD, deadline=50, on_retry=retries.append)

    # Then it waited 0.5, 1, 2, 4, 4 and the sixth attempt went through
    assert posted.attempts == 6
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert [r.status for r in retries] == [500] * 5
    assert {r.host for r in retries} == {redact(receiver.url)}


@pytest.mark.parametrize(("jitter", "waits"), [(0.0, [0.25, 0.5]), (0.5, [0.375, 0.75])])
def test_jitter_spreads_each_wait_over_its_upper_half(receiver: WebhookReceiver, jitter: float,
                                                      waits: list[float]) -> None:
    clock = VirtualClock()
    receiver.answer(Reply(502), Reply(503))
    poster(clock, jitter=jitter, backoff=0.5).post(receiver.url, PAYLOAD, deadline=50)
    assert clock.slept == waits


def test_attempts_are_bounded(receiver: WebhookReceiver) -> None:
    clock = VirtualClock()
    receiver.answer(*[Reply(500)] * 10)
    with pytest.raises(WebhookError, match=r"after 3 attempt\(s\)") as raised:
        poster(clock, max_attempts=3).post(receiver.url, PAYLOAD, deadline=50)
    assert raised.value.retryable and raised.value.status == 500
    assert len(receiver.requests) == 3


def test_no_time_left_means_no_attempt(receiver: WebhookReceiver) -> None:
    with pytest.raises(WebhookError, match="after 0 attempt"):
        poster(VirtualClock()).post(receiver.url, PAYLOAD, deadline=0)
    assert receiver.requests == []


@pytest.mark.parametrize("url", [
    "https://hooks.slack.com/services/T000/B000/XXXX",
    "http://127.0.0.1:8080/services/T000/B000/XXXX?x=1#y",
])
def test_redact_keeps_only_scheme_host_and_port(url: str) -> None:
    shown = redact(url)
    assert "XXXX" not in shown and "T000" not in shown
    assert shown.endswith("/***")


@pytest.mark.parametrize("url", ["htp://127.0.0.1/services/T0/B0/SEKRIT",
                                 "http://127.0.0.1:notaport/services/T0/B0/SEKRIT"])
def test_an_unusable_url_fails_without_quoting_it(url: str) -> None:
    with pytest.raises(WebhookError) as raised:
        poster(VirtualClock()).post(url, PAYLOAD, deadline=5)
    assert "SEKRIT" not in str(raised.value)
    assert raised.value.attempts == 0 and raised.value.__context__ is None
