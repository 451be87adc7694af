"""Adversarial test harness: the properties every image must end in, read from moto's state
(the image's tags, the verdict item, the subscriber's notices), and a moto server that many
simulated Lambda containers can hit at once.

Everything here reads or drives public behaviour only: the handlers' entry
(``Gatekeeper.handle(parse_event(...))``), AWS state and the SNS notices a subscriber gets.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from gatekeeper.config import Config
from gatekeeper.domain.events import parse_event
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.verdict import Outcome
from gatekeeper.runtime import build
from tests.support import ACCOUNT, REGION, World, push_event, signing_key

PENDING = "PENDING"
_DESERIALIZER = TypeDeserializer()

if TYPE_CHECKING:
    from gatekeeper.service import Gatekeeper


# --- what the gatekeeper left behind ------------------------------------------------------------

def verdict_item(session: boto3.session.Session, table: str, repository: str,
                 digest: str) -> dict[str, Any] | None:
    """The image's verdict item as stored (``pk = IMAGE#<repo>@<digest>``, ``sk = VERDICT``)."""
    item = session.client("dynamodb").get_item(
        TableName=table, ConsistentRead=True,
        Key={"pk": {"S": f"IMAGE#{repository}@{digest}"}, "sk": {"S": "VERDICT"}}).get("Item")
    if not item:
        return None
    return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}


def stored_state(world: World, repository: str, digest: str) -> str | None:
    """The stored verdict (APPROVED, APPROVED_WITH_WARNINGS, QUARANTINED, PENDING) or None."""
    item = verdict_item(world.session, world.config.table_name, repository, digest)
    return None if item is None else str(item.get("state", PENDING))


def image_tags(world: World, repository: str, digest: str) -> list[str] | None:
    """The image's tags now; None when the image does not exist."""
    found = world.ecr.batch_get_image(repositoryName=repository,
                                      imageIds=[{"imageDigest": digest}])
    if not found["images"]:
        return None
    details = world.ecr.describe_images(repositoryName=repository,
                                        imageIds=[{"imageDigest": digest}])["imageDetails"]
    return sorted(details[0].get("imageTags", []))


def existing(world: World, repository: str) -> set[str]:
    """Every image digest in the repository."""
    pages = world.ecr.get_paginator("list_images").paginate(repositoryName=repository)
    return {i["imageDigest"] for page in pages for i in page.get("imageIds", [])}


def markers(scheme: MarkerScheme, tags: Iterable[str]) -> list[str]:
    """The marker-shaped tags among ``tags`` (whoever wrote them)."""
    return sorted(t for t in tags if scheme.parse(t) is not None)


def notices(world: World, kind: str | None = None,
            digest: str | None = None) -> list[dict[str, Any]]:
    """The notices the subscriber received so far (receipt order), filtered."""
    found = []
    for note in world.notifications():
        attrs = {k: v["Value"] for k, v in note.get("MessageAttributes", {}).items()}
        document = note["Document"]
        if kind is not None and attrs.get("kind", document.get("kind")) != kind:
            continue
        if digest is not None and (document.get("image") or {}).get("digest") != digest:
            continue
        found.append(note)
    return found


def revision_of(note: Mapping[str, Any]) -> int:
    """The revision inside a verdict notice's ``verdict_id`` (``<digest12>-<revision>``)."""
    verdict_id = str(note["Document"].get("verdict_id") or "")
    return int(verdict_id.rsplit("-", 1)[-1]) if verdict_id[-1:].isdigit() else -1


def last_verdict_notice(world: World, digest: str) -> dict[str, Any] | None:
    """The verdict notice subscribers must act on: the highest revision (receipt order breaks
    ties, so a redelivered notice counts as the same verdict)."""
    found = notices(world, "verdict", digest)
    if not found:
        return None
    return max(enumerate(found), key=lambda pair: (revision_of(pair[1]), pair[0]))[1]


def notice_verdict(note: Mapping[str, Any]) -> str:
    return str(note["MessageAttributes"]["verdict"]["Value"])


def convergence_problems(world: World, scheme: MarkerScheme, repository: str,
                         digest: str) -> list[str]:
    """What is wrong with this image, by the properties every judgement must leave:

    - the image exists (the gatekeeper never deletes one);
    - once judged: its marker-shaped tags are exactly the stored verdict's marker (no forged
      approval, no marker of another outcome, no marker naming another digest), and the last
      verdict notice announced that same verdict;
    - still pending: no marker at all, except a forged marker that is the image's only tag
      (removing it would delete the image; it goes once the verdict's marker is on).
    """
    label = f"{repository}@{digest[7:19]}"
    tags = image_tags(world, repository, digest)
    if tags is None:
        return [f"{label}: image lost"]
    state = stored_state(world, repository, digest)
    found = markers(scheme, tags)
    if state is None or state == PENDING:
        if found and not (len(tags) == 1 and found == tags):
            return [f"{label}: pending ({state}) but carries markers {found} (tags {tags})"]
        return []
    problems = []
    wanted = scheme.tag_for(Outcome(state), digest)
    if found != [wanted]:
        problems.append(f"{label}: stored {state} wants [{wanted}], image has markers {found} "
                        f"(tags {tags})")
    item = verdict_item(world.session, world.config.table_name, repository, digest) or {}
    if item.get("marker") not in (None, wanted):
        problems.append(f"{label}: stored verdict {state} records marker {item.get('marker')}")
    last = last_verdict_notice(world, digest)
    if last is None:
        problems.append(f"{label}: stored {state} but no verdict notice was published")
    elif notice_verdict(last) != state:
        problems.append(f"{label}: stored {state} but the last notice "
                        f"({last['Document'].get('verdict_id')}) says {notice_verdict(last)}")
    return problems


# --- what an attacker with ecr:PutImage does ----------------------------------------------------

def add_tag(world: World, repository: str, digest: str, tag: str) -> dict[str, Any]:
    """Tag the image as anyone with push rights can (re-put its manifest under ``tag``) and
    return the PUSH event ECR sends for it."""
    image = world.ecr.batch_get_image(repositoryName=repository,
                                      imageIds=[{"imageDigest": digest}])["images"][0]
    world.ecr.put_image(repositoryName=repository, imageTag=tag,
                        imageManifest=image["imageManifest"])
    return push_event(repository, digest, tag=tag)


def untag(world: World, repository: str, tag: str) -> None:
    world.ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageTag": tag}])


# --- a moto server for simulated containers ---------------------------------------------------

class SerializedDynamoDB:
    """WSGI middleware: DynamoDB requests one at a time, every other service concurrent.

    moto's DynamoDB evaluates a ConditionExpression and then writes, without a lock: two
    concurrent conditional puts can both pass the same check, which real DynamoDB never allows
    (a conditional write is atomic per item). Serializing DynamoDB requests gives the race
    tests DynamoDB's atomicity; ECR, SNS, SQS and S3 requests still interleave freely.

    ``ecr_latency`` (min, max seconds) delays each ECR request by a random amount before moto
    serves it: moto answers in a few milliseconds where ECR takes tens, and the windows
    between reading an image's tags and writing them are what concurrent writers race in.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]],
                 ecr_latency: tuple[float, float] = (0.0, 0.0)) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.serialized = 0
        self.ecr_latency = ecr_latency
        self._jitter = random.Random(7)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith("DynamoDB_"):
            with self.lock:
                self.serialized += 1
                # the whole response is produced under the lock
                return list(self.app(environ, start_response))
        if target.startswith("AmazonEC2ContainerRegistry") and self.ecr_latency[1] > 0:
            time.sleep(self._jitter.uniform(*self.ecr_latency))
        return self.app(environ, start_response)


class ServerSession(boto3.session.Session):
    """A boto3 session whose every client talks to one endpoint (a container's own session).
    Clients are made once per service and configuration, as a container keeps its own."""

    def __init__(self, endpoint_url: str, **kwargs: Any) -> None:
        super().__init__(region_name=REGION, **kwargs)
        self.endpoint_url = endpoint_url
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def client(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("endpoint_url", self.endpoint_url)
        key = (args, tuple(sorted((k, id(v)) for k, v in kwargs.items())))
        with self._lock:
            if key not in self._clients:
                self._clients[key] = super().client(*args, **kwargs)
            return self._clients[key]


@dataclass
class MotoServer:
    url: str
    dynamodb: SerializedDynamoDB

    def reset(self) -> None:
        self._post("/moto-api/reset", None)

    def seed_findings(self, repository: str, digest: str, body: Mapping[str, Any]) -> None:
        """Make ``body`` (a DescribeImageScanFindings response) the image's scan result.

        moto hands a seeded result to the first query of that exact imageId and keeps it: an
        image's findings are seeded once, so a different scan result means another image."""
        result = json.loads(json.dumps(body))
        result.update(registryId=ACCOUNT, repositoryName=repository,
                      imageId={"imageDigest": digest})
        result.setdefault("imageScanFindings", {}).setdefault("imageScanCompletedAt",
                                                              time.time())
        self._post("/moto-api/static/ecr/scan-finding-results",
                   {"results": [result], "region": REGION})

    def _post(self, path: str, body: Any) -> None:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", method="POST", data=data,
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request).close()  # the local moto server


@dataclass
class ServerHandle:
    """The running ThreadedMotoServer and its serialized-DynamoDB front."""

    server: Any
    moto: MotoServer


def start_server(ecr_latency: tuple[float, float] = (0.0, 0.0)) -> ServerHandle:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    # ThreadedMotoServer takes no middleware: wrap the WSGI app werkzeug's server dispatches
    # every request to (the request handler reads ``server.app`` per request).
    wsgi = server._server
    serialized = SerializedDynamoDB(wsgi.app, ecr_latency)
    wsgi.app = serialized
    host, port = server.get_host_and_port()
    return ServerHandle(server, MotoServer(f"http://{host}:{port}", serialized))


def deploy(session: boto3.session.Session, markers: MarkerScheme | None = None) -> World:
    """The gatekeeper's table, topic, versioned policy bucket, signing key and an SQS
    subscriber, created through ``session`` (the same resources as tests.support.make_world)."""
    session.client("dynamodb").create_table(
        TableName="verdicts",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST")
    sns = session.client("sns")
    topic = sns.create_topic(Name="verdicts")["TopicArn"]
    s3 = session.client("s3")
    s3.create_bucket(Bucket="gatekeeper-policy")
    s3.put_bucket_versioning(Bucket="gatekeeper-policy",
                             VersioningConfiguration={"Status": "Enabled"})
    sqs = session.client("sqs")
    queue_url = sqs.create_queue(QueueName="subscriber")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url,
                                         AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    config = Config(table_name="verdicts", topic_arn=topic, policy_bucket="gatekeeper-policy",
                    policy_key="policy.yaml", markers=markers or MarkerScheme(),
                    policy_cache_seconds=0, signing_key_arn=signing_key(session))
    return World(config=config, queue_url=queue_url, session=session)


def container_config(world: World, **env: str) -> Config:
    """A container's configuration as Lambda gives it: the template's variables plus ``env``
    (e.g. GATEKEEPER_POLICY_CACHE_SECONDS, GATEKEEPER_LEASE_WAIT_SECONDS), parsed by
    Config.from_env, so variables a version does not read yet are simply ignored."""
    return Config.from_env({**world.environment(), **env})


def container(world: World, session: boto3.session.Session, **env: str) -> Gatekeeper:
    """One simulated Lambda container: its own configuration, clients and policy cache."""
    return build(container_config(world, **env), session)


# --- Lambda's retries ---------------------------------------------------------------------------

@dataclass
class Delivery:
    """One event delivered to one container, with Lambda's retries."""

    attempts: int = 0
    errors: tuple[str, ...] = ()
    result: Any = None

    @property
    def dead_lettered(self) -> bool:
        return self.result is None


def deliver(gatekeeper: Gatekeeper, event: Any, *, retries: int, pause: Callable[[int], float],
            parse: Callable[[Any], Any] = parse_event) -> Delivery:
    """Call the entry below the Powertools decorators, as Lambda would: an invocation that
    raises is retried up to ``retries`` times after ``pause(attempt)`` seconds; one that
    still fails is dead-lettered (result None)."""
    delivery = Delivery()
    for attempt in range(retries + 1):
        delivery.attempts += 1
        try:
            delivery.result = gatekeeper.handle(parse(event))
            return delivery
        except Exception as err:  # any failure: Lambda retries the invocation
            delivery.errors += (f"{type(err).__name__}: {err}"[:200],)
            if attempt < retries:
                time.sleep(pause(attempt))
    return delivery


# --- policies -----------------------------------------------------------------------------------

def policy_text(max_findings: Mapping[str, int]) -> str:
    limits = ", ".join(f"{k}: {v}" for k, v in max_findings.items())
    return (f"version: 1\ndefault:\n  max_findings: {{{limits}}}\n"
            "  on_scan_failure: quarantine\n")


def allows(max_findings: Mapping[str, int], findings: Mapping[str, Any]) -> bool:
    """The oracle: an image is approvable when no severity exceeds its limit."""
    counts: dict[str, int] = {}
    for finding in findings["imageScanFindings"]["findings"]:
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    return all(counts.get(sev, 0) <= limit for sev, limit in max_findings.items())


def publish_newer(world: World, publish: Callable[[], object]) -> str:
    """Run ``publish`` (one S3 put of the policy object, as ``gatekeeper policy push`` does)
    so that the new version is strictly the newest, and return its version id. S3's
    LastModified has one-second resolution and orders policy versions: when the current
    object was written this very second, wait for the next one first."""
    s3 = world.session.client("s3")
    bucket, key = world.config.policy_bucket, world.config.policy_key
    try:
        written: int | None = int(s3.head_object(Bucket=bucket, Key=key)["LastModified"]
                                  .timestamp())
    except ClientError:
        written = None
    while written is not None and time.time() < written + 1:
        time.sleep(written + 1.02 - time.time())
    publish()
    return str(s3.head_object(Bucket=bucket, Key=key)["VersionId"])


def notice_policy_version(note: Mapping[str, Any]) -> str | None:
    """The policy version a verdict notice says judged the image."""
    verdict = note["Document"].get("verdict") or {}
    return (verdict.get("policy") or {}).get("version")
