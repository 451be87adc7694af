"""Amazon SQS: the re-evaluation queue the sweeper fills and OnReevaluateFunction drains (and
where work on an account that is throttled or unreachable waits), and the sweep queue the
sweeper hands the rest of a long sweep on through."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any


class ReevaluationQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    def send(self, requests: Iterable[dict[str, str]]) -> int:
        """Send every request (batches of 10); raise if SQS refused any of them."""
        batch: list[dict[str, str]] = []
        sent = 0
        for request in requests:
            batch.append(request)
            if len(batch) == 10:
                sent += self._flush(batch)
                batch = []
        if batch:
            sent += self._flush(batch)
        return sent

    def _flush(self, batch: list[dict[str, str]]) -> int:
        response = self._sqs.send_message_batch(QueueUrl=self._url, Entries=[
            {"Id": str(index), "MessageBody": json.dumps(request, sort_keys=True)}
            for index, request in enumerate(batch)])
        failed = response.get("Failed") or []
        if failed:
            raise RuntimeError(f"SQS refused {len(failed)} re-evaluation request(s): "
                               f"{failed[0].get('Code')}: {failed[0].get('Message')}")
        return len(batch)

    def defer(self, request: dict[str, Any], delay_seconds: int) -> None:
        """Put one request back on the queue, delivered after ``delay_seconds`` (at most
        900, SQS's limit)."""
        self._sqs.send_message(QueueUrl=self._url, MessageBody=json.dumps(request, sort_keys=True),
                               DelaySeconds=max(0, min(900, int(delay_seconds))))

class SweepQueue:
    """The sweep queue: what is left of a sweep, for the sweeper's next invocation."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self._sqs = client
        self._url = queue_url

    def hand_on(self, message: dict[str, Any]) -> str:
        """Put one continuation on the queue; its message id."""
        response = self._sqs.send_message(QueueUrl=self._url,
                                          MessageBody=json.dumps(message, sort_keys=True))
        return str(response.get("MessageId"))
