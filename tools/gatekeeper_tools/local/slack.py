"""Slack, locally: an incoming webhook played by a real HTTP server, and messages as text.

Shared by the demo and the tests (never imported in Lambda):

    with WebhookReceiver() as slack:        # http://127.0.0.1:<port>/services/T…/B…/…
        slack.answer(Reply(429, headers={"Retry-After": "1"}), Reply(200))
        ...post to slack.url...
        slack.requests[0].json              # what Slack would have received

Each answer is taken in turn (then ``200 ok``); an answer's ``delay`` holds the response back,
to play a webhook slower than the client's timeout. The server logs nothing: a request line
would carry the webhook URL's token.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"  # noqa: S105 - a made-up webhook path


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    @property
    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class WebhookReceiver:
    """A Slack incoming webhook on 127.0.0.1 (a port of its own), in a background thread."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.requests: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()),
                                                      body, time.monotonic()))
                    reply = receiver._replies.popleft() if receiver._replies else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body.encode("utf-8")
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the request line holds the webhook's token."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="webhook-receiver", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/{self.token}"

    def answer(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def messages(self) -> list[Any]:
        """Every JSON body received so far."""
        return [r.json for r in self.requests]

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- a message as text -----------------------------------------------------------------------

_LINK = re.compile(r"<([^|<>]+)\|([^<>]*)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])")


def _mrkdwn(text: str, links: bool) -> str:
    text = _LINK.sub(lambda m: f"{m[2]} <{m[1]}>" if links else m[2], text)
    text = _ITALIC.sub(r"\1", _BOLD.sub(r"\1", text)).replace("`", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_text(payload: dict[str, Any], *, links: bool = False, width: int = 2) -> str:
    """A compact text rendering of a Block Kit message, as a person reads it in Slack
    (``links``: show each link's URL after its label)."""
    lines: list[str] = []
    for block in payload.get("blocks", []):
        kind = block.get("type")
        if kind == "header":
            lines.append(block["text"]["text"])
        elif kind == "section":
            if "text" in block:
                lines.extend(_mrkdwn(block["text"]["text"], links).splitlines())
            fields = [_mrkdwn(f["text"], links).replace("\n", ": ", 1)
                      for f in block.get("fields", [])]
            for start in range(0, len(fields), width):
                lines.append("   ".join(f"{f:<36}" for f in fields[start:start + width])
                             .rstrip())
        elif kind == "context":
            lines.append(" · ".join(_mrkdwn(e.get("text", ""), links)
                                    for e in block.get("elements", [])))
        elif kind == "divider":
            lines.append("-" * 40)
    return "\n".join(lines)


# --- what SNS hands a Lambda subscriber -------------------------------------------------------

def sns_lambda_event(envelopes: list[dict[str, Any]]) -> dict[str, Any]:
    """The event SNS invokes a Lambda subscriber with, for these notifications as an SQS
    subscriber receives them (the SNS envelope, without raw message delivery)."""
    records = []
    for envelope in envelopes:
        sns = {k: v for k, v in envelope.items() if k not in ("SigningCertURL", "UnsubscribeURL")}
        sns["SigningCertUrl"] = envelope.get("SigningCertURL", "")
        sns["UnsubscribeUrl"] = envelope.get("UnsubscribeURL", "")
        records.append({"EventSource": "aws:sns", "EventVersion": "1.0",
                        "EventSubscriptionArn": f"{envelope.get('TopicArn')}:{uuid.uuid4()}",
                        "Sns": sns})
    return {"Records": records}


# --- the demo's Slack -------------------------------------------------------------------------

class LocalSlack:
    """The Slack notifier, locally: a webhook receiver on 127.0.0.1, its URL stored in (moto's)
    Secrets Manager, and SlackNotifierFunction's handler called in-process with the event SNS
    would invoke it with. Call :meth:`start` inside an active ``moto.mock_aws()``."""

    def __init__(self, receiver: WebhookReceiver, secret_arn: str) -> None:
        self.receiver = receiver
        self.secret_arn = secret_arn

    @classmethod
    def start(cls, region: str, name: str = "gatekeeper/slack-webhook") -> LocalSlack:
        import os

        import boto3

        from gatekeeper.config import SECRET_ENV

        receiver = WebhookReceiver().start()
        arn = boto3.client("secretsmanager", region_name=region).create_secret(
            Name=name, SecretString=receiver.url)["ARN"]
        os.environ[SECRET_ENV] = arn  # as the template sets it for the function
        return cls(receiver, arn)

    def deliver(self, envelopes: list[dict[str, Any]]) -> tuple[Any, list[Any]]:
        """Run the notifier on these SNS notifications; its result (or the exception it
        raised) and the messages the webhook received."""
        from functions.slack_notifier.app import handler
        from gatekeeper_tools.local.stack import LambdaContext

        before = len(self.receiver.requests)
        context = LambdaContext("SlackNotifierFunction", 256,
                                "arn:aws:lambda:us-east-1:123456789012:function:slack",
                                str(uuid.uuid4()))
        try:
            result: Any = handler(sns_lambda_event(envelopes), context)
        except Exception as err:  # the demo shows a failure, it does not stop on it
            result = err
        return result, [r.json for r in self.receiver.requests[before:]]

    def stop(self) -> None:
        self.receiver.stop()
