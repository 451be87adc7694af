"""The Kubernetes validating admission webhook: a small HTTPS server in front of a Gate.

``POST /validate`` takes an AdmissionReview v1 and answers it (:mod:`gatekeeper.domain.kubernetes`
reads and answers; a :class:`~gatekeeper.domain.admission.Gate` decides each image);
``GET /healthz`` answers ``ok`` for the readiness probe. ``gatekeeper webhook serve`` runs it
(:mod:`gatekeeper_tools.cli.webhook`); ``deploy/kubernetes/`` deploys it in a cluster.

It fails closed and answers in time: the API server waits ``timeoutSeconds`` (10 in the
manifest; Kubernetes allows 1 to 30) and, with ``failurePolicy: Fail``, refuses the object
when no answer comes. Each review's gate calls share one deadline (``deadline`` seconds, less
than the API server's own ``?timeout=``, which it appends to the URL); an image whose gate
call has not returned by then is refused ("verdict store did not answer in time"), one whose
call raised is refused with the error. Namespaces named in ``exempt_namespaces`` are allowed
without asking the gate (the usual exemption, by namespace label, is the manifest's
``namespaceSelector``: the API server never asks for those).

Standard library only (``http.server``, ``ssl``, ``concurrent.futures``): a thread per
connection, a bounded pool for the gate calls, TLS 1.2 or later, the certificate read again
when its file changes (cert-manager renews it in place).
"""

from __future__ import annotations

import json
import os
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gatekeeper.domain.admission import Decision, Gate
from gatekeeper.domain.kubernetes import (
    MalformedReview,
    Review,
    Unsupported,
    answer,
    read_review,
    refusal,
    response,
)
from gatekeeper.observability import logger

MAX_BODY = 3 * 1024 * 1024  # bytes: the API server's own request limit is 3 MiB
DEFAULT_DEADLINE = 5.0  # seconds for every gate call of one review
MARGIN = 1.0  # seconds kept back from the API server's ?timeout= for the answer itself
TIMED_OUT = "verdict store did not answer in time"
_TIMEOUT_PARAMETER = re.compile(r"(?P<value>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]


class AdmissionWebhook:
    """Answers AdmissionReviews with a Gate, within a deadline; no HTTP here."""

    def __init__(self, gate: Gate, *, deadline: float = DEFAULT_DEADLINE,
                 exempt_namespaces: Collection[str] = (), workers: int = 16,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if deadline <= 0:
            raise ValueError("the deadline must be positive")
        self.gate = gate
        self.deadline = deadline
        self.exempt_namespaces = frozenset(exempt_namespaces)
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gate")

    def close(self) -> None:
        """Stops taking gate calls; a call still running is left to finish on its own."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def validate(self, body: object, api_timeout: float | None = None) -> Reply:
        """The reply to a decoded request body; 400 when there is no uid to answer."""
        try:
            review = read_review(body)
        except MalformedReview as err:
            logger.warning("admission review refused", uid=err.uid, reason=str(err))
            if err.uid is None:
                return Reply(HTTPStatus.BAD_REQUEST, {"error": str(err)})
            return Reply(HTTPStatus.OK, refusal(err.uid, str(err)))
        return Reply(HTTPStatus.OK, self.answer(review, api_timeout))

    def answer(self, review: Review, api_timeout: float | None = None) -> dict[str, Any]:
        subject = review.subject
        if isinstance(subject, Unsupported):
            logger.info("admission review unchecked", uid=review.uid, warning=subject.warning)
            return answer(review, {})
        if review.namespace in self.exempt_namespaces:
            logger.info("admission review exempt", uid=review.uid, namespace=review.namespace,
                        workload=subject.describe())
            return response(review.uid, True, warnings=[
                f"namespace {review.namespace} is exempt from the image gatekeeper"])
        deadline = self.deadline
        if api_timeout is not None:
            deadline = max(0.1, min(deadline, api_timeout - MARGIN))
        decisions = self.decide(subject.images, deadline)
        reply = answer(review, decisions)
        refused = [d.as_dict() for d in decisions.values() if not d.allowed]
        logger.info("admission review answered", uid=review.uid, operation=review.operation,
                    workload=subject.describe(), allowed=reply["response"]["allowed"],
                    images=len(decisions), refused=refused)
        return reply

    def decide(self, images: Collection[str], deadline: float) -> dict[str, Decision]:
        """The gate's decision for each image, asked at once; past ``deadline`` seconds, or
        when the call raised, a refusal."""
        started = self.clock()
        try:
            futures = {image: self._pool.submit(self.gate.check, image) for image in images}
        except RuntimeError:  # the pool is shut down: the server is stopping
            return {image: Decision(False, image, "the webhook is stopping") for image in images}
        wait(futures.values(), timeout=max(0.0, deadline - (self.clock() - started)))
        return {image: _decision(image, future) for image, future in futures.items()}


def _decision(image: str, future: Future[Decision]) -> Decision:
    if not future.done():
        future.cancel()
        return Decision(False, image, TIMED_OUT)
    try:
        decision = future.result()
    except Exception as err:  # the gate should not raise; when it does, refuse (fail closed)
        text = " ".join(str(err).split())[:160] or type(err).__name__
        return Decision(False, image, f"the verdict could not be checked: {text}")
    if not isinstance(decision, Decision):
        return Decision(False, image, "the gate gave no decision")
    return decision


def api_timeout(query: str) -> float | None:
    """The API server's ``?timeout=10s`` (how long it waits), in seconds; None if absent."""
    values = parse_qs(query).get("timeout")
    match = _TIMEOUT_PARAMETER.fullmatch(values[0]) if values else None
    return float(match["value"]) * _UNITS[match["unit"]] if match else None


class _Handler(BaseHTTPRequestHandler):
    server: WebhookServer
    protocol_version = "HTTP/1.1"  # the API server keeps its connections open
    timeout = 30  # seconds a connection may sit idle or half-written (and for the handshake)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        else:
            self._error(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/validate":
            self._discard_body()
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        media = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if media != "application/json":
            self._discard_body()
            self._error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "expected application/json")
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required", close=True)
            return
        if int(length) > MAX_BODY:
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"the body is over {MAX_BODY} bytes", close=True)
            return
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            self._error(HTTPStatus.BAD_REQUEST, f"the body is not JSON: {err}")
            return
        reply = self.server.webhook.validate(body, api_timeout(url.query))
        self._send(reply.status, json.dumps(reply.body).encode(), "application/json")

    def _discard_body(self) -> None:
        length = self.headers.get("Content-Length") or ""
        if length.isdigit() and int(length) <= MAX_BODY:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _error(self, status: int, message: str, close: bool = False) -> None:
        if close:
            self.close_connection = True
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def _send(self, status: int, body: bytes, media: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http request", client=self.client_address[0], line=format % args)


class WebhookServer(ThreadingHTTPServer):
    """HTTPS on ``(host, port)`` (port 0: a free one, see :attr:`port`); a thread per
    connection, its TLS handshake done there, not in the accepting thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, webhook: AdmissionWebhook, cert: str, key: str,
                 host: str = "0.0.0.0", port: int = 8443) -> None:  # noqa: S104 - in a pod
        self.webhook = webhook
        self._cert, self._key = cert, key
        self._context, self._loaded = self._load(), self._stamp()
        self._lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def get_request(self) -> tuple[socket, Any]:
        connection, address = self.socket.accept()
        return self.context().wrap_socket(connection, server_side=True,
                                          do_handshake_on_connect=False), address

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's thread: the TLS handshake (bounded), then the requests."""
        request.settimeout(_Handler.timeout)
        request.do_handshake()
        super().finish_request(request, client_address)

    def context(self) -> ssl.SSLContext:
        """The TLS context, built again when the certificate or key file has changed."""
        stamp = self._stamp()
        if stamp != self._loaded:
            with self._lock:
                try:
                    self._context, self._loaded = self._load(), stamp
                    logger.info("webhook certificate reloaded", cert=self._cert)
                except (OSError, ssl.SSLError) as err:  # half-written: keep the old one
                    logger.warning("webhook certificate not reloaded", cert=self._cert,
                                   error=str(err))
        return self._context

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self._cert, self._key)
        return context

    def _stamp(self) -> tuple[float, float]:
        try:
            return os.stat(self._cert).st_mtime, os.stat(self._key).st_mtime
        except OSError:
            return (0.0, 0.0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that drops the connection or fails the handshake: logged, not printed."""
        error = sys.exc_info()[1]
        logger.warning("webhook connection failed", client=str(client_address[0]),
                       error=type(error).__name__ if error else None)

    def server_close(self) -> None:
        super().server_close()
        self.webhook.close()

    @contextmanager
    def running(self, poll_interval: float = 0.05) -> Iterator[WebhookServer]:
        """Serve from a background thread for the ``with`` block, then stop and close (the
        tests, the benchmark); ``gatekeeper webhook serve`` serves in its own thread."""
        thread = threading.Thread(target=self.serve_forever,
                                  kwargs={"poll_interval": poll_interval}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.shutdown()
            self.server_close()
            thread.join(5)
