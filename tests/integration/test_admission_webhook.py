"""The admission webhook over TLS on 127.0.0.1: AdmissionReviews in, AdmissionReviews out.

One server for the module (a CA and a certificate for 127.0.0.1 made here, the client
verifying both), in front of a fake Gate whose answers each test sets: allowed images, refused
ones, a gate that never answers in time, one that raises (an unreachable verdict store). The
reviews are tests/fixtures/kubernetes (written from the Kubernetes documentation's shapes).
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.domain.admission import Decision
from gatekeeper_tools.webhook import TIMED_OUT, AdmissionWebhook, WebhookServer, api_timeout
from tests.tls_support import Certificates, make_certificates

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kubernetes"
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
WEB = f"{ECR}/team-a/web@sha256:" + "1" * 64
API = f"{ECR}/team-b/api:2.0.0"
MIGRATE = f"{ECR}/team-a/migrate@sha256:" + "2" * 64
DEBUG = "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.2"
DEADLINE = 0.5  # seconds: the server's per-review deadline in these tests
WORKLOADS = {"pod-create": "Pod shop/web-7c9f8d6b5d-*", "deployment-create": "Deployment shop/web",
             "statefulset-create": "StatefulSet shop/db",
             "daemonset-create": "DaemonSet shop/node-agent",
             "replicaset-create": "ReplicaSet shop/web-7c9f8d6b5d",
             "job-create": "Job shop/report", "cronjob-create": "CronJob shop/nightly"}


@dataclass
class FakeGate:
    """A Gate (the protocol of gatekeeper.domain.admission), told what to answer."""

    approved: set[str] = field(default_factory=set)
    slow: set[str] = field(default_factory=set)  # waits for `release` (past any deadline)
    broken: set[str] = field(default_factory=set)  # raises, as an unreachable store would
    release: threading.Event = field(default_factory=threading.Event)
    asked: list[str] = field(default_factory=list)

    def check(self, image: str) -> Decision:
        self.asked.append(image)
        if image in self.slow:
            self.release.wait(10)
        if image in self.broken:
            raise ConnectionError("Could not connect to the endpoint URL: "
                                  "https://dynamodb.us-east-1.amazonaws.com/")
        if image in self.approved:
            return Decision(True, image, "approved", verdict="APPROVED")
        return Decision(False, image, "quarantined: CRITICAL: 1", verdict="QUARANTINED")


@dataclass
class Webhook:
    server: WebhookServer
    certificates: Certificates
    gate: FakeGate

    def post(self, body: bytes | dict[str, Any], path: str = "/validate",
             content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        connection = self.connect()
        try:
            connection.request("POST", path, body=data, headers={"Content-Type": content_type})
            answer = connection.getresponse()
            return answer.status, json.loads(answer.read())
        finally:
            connection.close()

    def connect(self, context: ssl.SSLContext | None = None) -> http.client.HTTPSConnection:
        trusted = context or ssl.create_default_context(cafile=str(self.certificates.ca))
        return http.client.HTTPSConnection("127.0.0.1", self.server.port, context=trusted,
                                           timeout=5)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    certificates = make_certificates(tmp_path_factory.mktemp("tls"))
    gate = FakeGate()
    webhook = AdmissionWebhook(gate, deadline=DEADLINE, exempt_namespaces={"ops"})
    server = WebhookServer(webhook, str(certificates.cert), str(certificates.key),
                           host="127.0.0.1", port=0)
    with server.running():
        try:
            yield Webhook(server, certificates, gate)
        finally:
            gate.release.set()  # a gate call still waiting ends before the server stops


@pytest.fixture
def webhook(running: Webhook) -> Iterator[Webhook]:
    """The module's server, its gate reset: approves nothing until told."""
    gate = running.gate
    gate.approved, gate.slow, gate.broken, gate.asked = set(), set(), set(), []
    gate.release.clear()
    yield running
    gate.release.set()


def review(name: str, **request: Any) -> dict[str, Any]:
    document = json.loads((FIXTURES / f"{name}.json").read_text())
    document["request"].update(request)
    return document


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_kind_is_allowed_when_every_image_is_approved(webhook: Webhook, name: str) -> None:
    # Given a gate approving the init container's and both containers' images
    webhook.gate.approved = {MIGRATE, WEB, API}
    document = review(name)

    # When the API server posts the review
    status, body = webhook.post(document)

    # Then allowed, answered for the same uid, every image asked once
    assert status == 200
    assert body == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": document["request"]["uid"], "allowed": True}}
    assert sorted(webhook.gate.asked) == sorted({MIGRATE, WEB, API})


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_every_kind_is_refused_when_an_image_is_not_approved(webhook: Webhook,
                                                               name: str) -> None:
    # Given a gate that refuses team-b/api
    webhook.gate.approved = {MIGRATE, WEB}
    document = review(name)

    # When the review is posted
    status, body = webhook.post(document)

    # Then refused (403): the message names the workload, the container, its image, the reason
    assert status == 200
    response = body["response"]
    assert (response["uid"], response["allowed"]) == (document["request"]["uid"], False)
    assert response["status"] == {"code": 403, "message": (
        f"image gatekeeper refused {WORKLOADS[name]}: "
        f"container api image {API}: quarantined: CRITICAL: 1")}


def test_an_init_container_is_checked(webhook: Webhook) -> None:
    webhook.gate.approved = {WEB, API}
    _, body = webhook.post(review("deployment-create"))
    assert body["response"]["allowed"] is False
    assert f"init container migrate image {MIGRATE}" in body["response"]["status"]["message"]


def test_an_ephemeral_container_is_checked(webhook: Webhook) -> None:
    # Given kubectl debug adding a container whose image the gate refuses
    webhook.gate.approved = {MIGRATE, WEB, API}

    # When its review is posted
    _, body = webhook.post(review("pod-ephemeral-containers"))

    # Then refused, naming the ephemeral container
    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["message"] == (
        "image gatekeeper refused Pod shop/web-7c9f8d6b5d-x2x9z: "
        f"ephemeral container debugger-x7k2q image {DEBUG}: quarantined: CRITICAL: 1")


def test_a_gate_slower_than_the_deadline_is_a_denial_within_the_deadline(
        webhook: Webhook) -> None:
    # Given a gate whose verdict store does not answer for team-b/api
    webhook.gate.approved = {MIGRATE, WEB, API}
    webhook.gate.slow = {API}

    # When a review is posted
    started = time.monotonic()
    _, body = webhook.post(review("deployment-create"))
    elapsed = time.monotonic() - started

    # Then refused for that image once the deadline passed, well inside the API server's wait
    assert body["response"]["allowed"] is False
    assert body["response"]["status"]["message"].endswith(f"image {API}: {TIMED_OUT}")
    assert DEADLINE <= elapsed < DEADLINE + 1.5


def test_an_unreachable_verdict_store_is_a_denial(webhook: Webhook) -> None:
    # Given a gate that raises (it should not; an unreachable store is what would do it)
    webhook.gate.approved = {MIGRATE, WEB, API}
    webhook.gate.broken = {WEB}

    # When a review is posted, then refused with the error, never allowed
    _, body = webhook.post(review("statefulset-create"))
    assert body["response"]["allowed"] is False
    assert (f"container web image {WEB}: the verdict could not be checked: Could not connect"
            in body["response"]["status"]["message"])


def test_an_exempt_namespace_is_allowed_without_asking_the_gate(webhook: Webhook) -> None:
    # Given a review in the namespace the server was told to exempt (--exempt-namespace ops)
    document = review("deployment-create", namespace="ops")

    # When posted, then allowed with a warning, and the gate was not asked
    _, body = webhook.post(document)
    assert body["response"]["allowed"] is True
    assert body["response"]["warnings"] == ["namespace ops is exempt from the image gatekeeper"]
    assert webhook.gate.asked == []


def test_a_malformed_review_with_a_uid_is_a_denial(webhook: Webhook) -> None:
    document = review("job-create")
    del document["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"]
    status, body = webhook.post(document)
    assert status == 200
    assert body["response"]["allowed"] is False
    assert "(web) names no image" in body["response"]["status"]["message"]
    assert webhook.gate.asked == []


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b"{not json", "application/json", 400),
    (b"\xff\xfe", "application/json", 400),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
     "application/json", 400),
    (b"{}", "text/plain", 415),
    (b"{}", "application/x-www-form-urlencoded", 415),
])
def test_a_body_that_is_no_review_is_a_client_error(webhook: Webhook, body: bytes,
                                                    content_type: str, status: int) -> None:
    answered, error = webhook.post(body, content_type=content_type)
    assert answered == status
    assert error["error"]


def test_a_body_over_the_limit_is_refused_unread(webhook: Webhook) -> None:
    connection = webhook.connect()
    try:
        connection.putrequest("POST", "/validate")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(4 * 1024 * 1024))
        connection.endheaders()
        answer = connection.getresponse()
        assert answer.status == 413
    finally:
        connection.close()


def test_health_and_unknown_paths(webhook: Webhook) -> None:
    connection = webhook.connect()
    try:
        connection.request("GET", "/healthz")
        health = connection.getresponse()
        assert (health.status, health.read()) == (200, b"ok\n")
        connection.request("GET", "/metrics")
        missing = connection.getresponse()
        assert missing.status == 404
        missing.read()
    finally:
        connection.close()
    assert webhook.post(review("pod-create"), path="/mutate")[0] == 404


def test_the_api_servers_timeout_parameter_is_honoured(webhook: Webhook) -> None:
    # Given the API server's URL with ?timeout=1s (its wait), and a gate that never answers
    webhook.gate.slow = {MIGRATE, WEB, API}

    # When posted, then refused at once: 1 s less the margin for the answer is below 0.5 s
    started = time.monotonic()
    _, body = webhook.post(review("pod-create"), path="/validate?timeout=1s")
    assert body["response"]["allowed"] is False
    assert time.monotonic() - started < DEADLINE


@pytest.mark.parametrize(("query", "seconds"), [
    ("timeout=10s", 10.0), ("timeout=500ms", 0.5), ("timeout=1m", 60.0), ("timeout=7", 7.0),
    ("", None), ("timeout=soon", None)])
def test_the_timeout_parameter_is_read(query: str, seconds: float | None) -> None:
    assert api_timeout(query) == seconds


def test_a_client_that_does_not_trust_the_ca_is_refused(webhook: Webhook) -> None:
    # Given a client trusting only the system's CAs
    connection = webhook.connect(ssl.create_default_context())

    # When it connects, then the certificate does not verify; and the server keeps serving
    with pytest.raises(ssl.SSLCertVerificationError):
        connection.request("GET", "/healthz")
    connection.close()
    webhook.gate.approved = {MIGRATE, WEB, API}
    assert webhook.post(review("pod-create"))[1]["response"]["allowed"] is True
