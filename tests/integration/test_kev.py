"""CISA's KEV catalog against moto: the policy source reads the bucket's copy, the handlers
judge with it (failing closed without it), the daily refresh downloads it from a real HTTP
server on 127.0.0.1, and a new copy re-evaluates images when the policy uses it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws

from functions.on_scan.app import handler as on_scan
from gatekeeper import handling
from gatekeeper.adapters import kev_feed
from gatekeeper.adapters.notifier import OperatorAlerts, SnsNotifier
from gatekeeper.adapters.policy_source import KevCatalogSource, S3PolicySource
from gatekeeper.adapters.queue import ReevaluationQueue
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.config import KevRefreshConfig, SweeperConfig
from gatekeeper.domain.kev import KEV_KEY
from gatekeeper.runtime import SweeperDeps, build_kev_refresh
from gatekeeper.service.kev_refresh import KevRefresh
from tests.domain_support import catalog_document, kev_entry
from tests.support import REGION, ROOT, World, scan_event

# enhanced-medium: CVE-2024-9681 (curl, MEDIUM) and an UNTRIAGED kernel finding
CVE = "CVE-2024-9681"
KEV_POLICY = ("version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n"
              "  block_if_known_exploited: true\n")
PLAIN_POLICY = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n"
BUCKET = "gatekeeper-policy"


def catalog_body(*cves: str, version: str = "2026.11.20") -> bytes:
    entries = [kev_entry(cve, "2024-11-20") for cve in cves]
    return json.dumps(catalog_document(*entries, catalogVersion=version)).encode()


def put_catalog(world: World, body: bytes) -> None:
    world.session.client("s3").put_object(Bucket=BUCKET, Key=KEV_KEY, Body=body)


def judged(world: World, context: Any) -> tuple[str, str, dict[str, Any]]:
    """A new image of team/api with enhanced-medium's findings, and its scan event handled."""
    repo = "team/api"
    if not world.session.client("ecr").describe_repositories()["repositories"]:
        world.repository(repo)
    digest = world.push(repo, f"v{time.monotonic_ns()}")
    world.scanned(repo, digest, "enhanced-medium")
    return repo, digest, on_scan(scan_event(repo, digest), context)


def reasons(world: World, repo: str, digest: str) -> list[str]:
    item = VerdictStore(world.session.client("dynamodb"), "verdicts").get(repo, digest)
    assert item is not None
    return list(item.reasons)


# --- judging with the bucket's copy ------------------------------------------------------------

def test_a_listed_cve_quarantines_and_without_a_catalog_the_rule_fails_closed(
        world: World, context: Any) -> None:
    # Given a policy with block_if_known_exploited and no catalog in the bucket
    world.publish_policy(KEV_POLICY)
    # When an image with a MEDIUM finding is judged
    repo, digest, result = judged(world, context)
    # Then it is quarantined, the reason saying the catalog is missing and where
    assert result["verdict"] == "QUARANTINED"
    assert reasons(world, repo, digest) == [
        f"KEV catalog unavailable: no catalog at s3://{BUCKET}/{KEV_KEY}"]

    # Given a catalog listing the finding's CVE; When another such image is judged
    put_catalog(world, catalog_body(CVE, "CVE-2021-44228"))
    repo, digest, result = judged(world, context)
    # Then it is quarantined for that CVE, named with the day CISA added it
    assert result["verdict"] == "QUARANTINED"
    assert reasons(world, repo, digest) == [
        f"{CVE} is a known exploited vulnerability (CISA KEV, added 2024-11-20)"]

    # Given a catalog that does not list it; Then the next image is approved
    put_catalog(world, catalog_body("CVE-2021-44228", version="2026.11.21"))
    _, _, result = judged(world, context)
    assert result["verdict"] == "APPROVED"


def test_an_unreadable_catalog_fails_closed_with_the_reason(world: World,
                                                            context: Any) -> None:
    # Given the rule on and a catalog copy that is not JSON
    world.publish_policy(KEV_POLICY)
    put_catalog(world, b"<html>maintenance</html>")
    # When an image is judged; Then it is quarantined, saying why the catalog is unusable
    repo, digest, result = judged(world, context)
    assert result["verdict"] == "QUARANTINED"
    [reason] = reasons(world, repo, digest)
    assert reason.startswith(f"KEV catalog unavailable: s3://{BUCKET}/{KEV_KEY}: not JSON")


def test_without_the_rule_the_catalog_is_never_read(world: World, context: Any) -> None:
    # Given a policy without the rule and no catalog at all
    world.publish_policy(PLAIN_POLICY)
    source = S3PolicySource(world.session.client("s3"), BUCKET, "policy.yaml")
    # When the policy is read; Then no catalog is attached (nor read), and the image approved
    assert source.get().known_exploited is None
    assert source.reads == 1
    assert judged(world, context)[2]["verdict"] == "APPROVED"


def test_the_catalog_is_read_again_only_when_it_changed(world: World) -> None:
    # Given the rule on and a catalog; When the policy source is read three times (no cache)
    world.publish_policy(KEV_POLICY)
    put_catalog(world, catalog_body(CVE))
    source = S3PolicySource(world.session.client("s3"), BUCKET, "policy.yaml",
                            max_age_seconds=0)
    first = source.get().known_exploited
    again = source.get().known_exploited
    put_catalog(world, catalog_body(CVE, "CVE-2021-44228", version="2026.11.21"))
    changed = source.get().known_exploited
    # Then an unchanged copy is the same object (a conditional GET), a new one is read
    assert first is not None and first.available and first is again
    assert changed is not None and changed.version == "2026.11.21" and len(changed) == 2


# --- the daily refresh, from a real HTTP server ------------------------------------------------

class Feed(BaseHTTPRequestHandler):
    """Serves /catalog.json (the body the test sets), /broken, /error (500) and /slow."""

    body = b""

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(0.8)
        if self.path == "/error":
            self.send_error(500, "Internal Server Error")
            return
        body = {"/catalog.json": type(self).body, "/slow": type(self).body}.get(
            self.path, b'{"title": "CISA Catalog", "vulnerabilities": [')
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def feed() -> Iterator[str]:
    """Given CISA's feed, played by an HTTP server on 127.0.0.1: its base URL."""
    Feed.body = catalog_body(CVE, "CVE-2021-44228")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    server.daemon_threads, server.block_on_close = True, False  # a slow reply is not awaited
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def account() -> Iterator[boto3.session.Session]:
    """Given an account in moto with the policy bucket (versioned) only."""
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        session.client("s3").create_bucket(Bucket=BUCKET)
        session.client("s3").put_bucket_versioning(
            Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield session


@pytest.fixture
def operators(account: boto3.session.Session) -> str:
    """The operator topic, with a queue subscribed to read its alerts: the topic's ARN."""
    sns, sqs = account.client("sns"), account.client("sqs")
    topic = sns.create_topic(Name="operators")["TopicArn"]
    url = sqs.create_queue(QueueName="operator-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["Attributes"]["QueueArn"],
                  Attributes={"RawMessageDelivery": "false"})
    return topic


def alerts(account: boto3.session.Session) -> list[dict[str, Any]]:
    sqs = account.client("sqs")
    url = sqs.get_queue_url(QueueName="operator-inbox")["QueueUrl"]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in got]


def refresh(account: boto3.session.Session, url: str, operators: str,
            timeout: float = 5.0) -> KevRefresh:
    return KevRefresh(lambda: kev_feed.download(url, timeout=timeout),
                      KevCatalogSource(account.client("s3"), BUCKET),
                      OperatorAlerts(account.client("sns"), operators),
                      source=url, min_entries=2)


def copies(account: boto3.session.Session) -> list[str]:
    versions = account.client("s3").list_object_versions(Bucket=BUCKET, Prefix=KEV_KEY)
    return [v["VersionId"] for v in versions.get("Versions", [])]


def test_the_refresh_writes_a_good_catalog_once(account: boto3.session.Session, feed: str,
                                                operators: str) -> None:
    # Given the feed serving a catalog and no copy in the bucket; When the refresh runs
    # through the function's own wiring (its configuration read from the environment)
    config = KevRefreshConfig.from_env({
        "GATEKEEPER_POLICY_BUCKET": BUCKET, "GATEKEEPER_KEV_URL": f"{feed}/catalog.json",
        "GATEKEEPER_OPERATOR_TOPIC_ARN": operators, "GATEKEEPER_KEV_MIN_ENTRIES": "2"})
    result = handling.handle_kev_refresh(lambda: build_kev_refresh(config, account))
    # Then the catalog is in the bucket, the new CVEs counted
    assert result["status"] == "updated" and (result["cves"], result["added"]) == (2, 2)
    body = account.client("s3").get_object(Bucket=BUCKET, Key=KEV_KEY)["Body"].read()
    assert body == Feed.body
    # and a second run finds it unchanged: no new S3 version (no re-evaluation), no alert
    again = handling.handle_kev_refresh(lambda: build_kev_refresh(config, account))
    assert again["status"] == "unchanged"
    assert len(copies(account)) == 1
    assert alerts(account) == []


@pytest.mark.parametrize(("path", "expected"), [
    pytest.param("/broken", "not a usable catalog", id="broken-body"),
    pytest.param("/error", "HTTP 500", id="server-error"),
    pytest.param("/slow", "download failed", id="timeout"),
    pytest.param("/catalog.json?short", "not plausible", id="implausibly-short"),
])
def test_a_failed_refresh_keeps_the_last_copy_and_alerts_the_operators(
        account: boto3.session.Session, feed: str, operators: str, path: str,
        expected: str) -> None:
    # Given a good copy in the bucket
    good = catalog_body(CVE, "CVE-2021-44228", "CVE-2023-4863", version="2026.11.19")
    account.client("s3").put_object(Bucket=BUCKET, Key=KEV_KEY, Body=good)
    if path.endswith("?short"):
        Feed.body = catalog_body(CVE)  # one CVE where 3 are expected
        path = "/catalog.json"
    # When the refresh reads a broken body, a 500, a server too slow, or a short catalog
    result = refresh(account, f"{feed}{path}", operators, timeout=0.3)()
    # Then nothing is written: the good copy stays the current (and only) version
    assert result.status == "failed" and expected in (result.reason or "")
    assert len(copies(account)) == 1
    body = account.client("s3").get_object(Bucket=BUCKET, Key=KEV_KEY)["Body"].read()
    assert body == good
    # and the operator topic is told why, and that the last copy was kept
    [alert] = alerts(account)
    assert alert["Subject"] == "ECR scan gatekeeper: KEV catalog refresh failed"
    assert expected in alert["Message"]
    assert "was kept (version 2026.11.19" in alert["Message"]


def test_a_body_over_the_size_cap_is_refused(feed: str) -> None:
    # Given the feed's catalog; When it is downloaded with a cap below its size
    with pytest.raises(kev_feed.FeedError, match="allowed"):
        kev_feed.download(f"{feed}/catalog.json", max_bytes=100)


# --- a new copy re-evaluates the images, if a rule uses it ---------------------------------------

def sweeper(world: World) -> SweeperDeps:
    sqs = world.session.client("sqs")
    queue = sqs.create_queue(QueueName="reevaluations")["QueueUrl"]
    config = SweeperConfig(table_name="verdicts", topic_arn=world.config.topic_arn,
                           policy_bucket=BUCKET, policy_key="policy.yaml",
                           reevaluation_queue_url=queue)
    return SweeperDeps(VerdictStore(world.session.client("dynamodb"), "verdicts"),
                       ReevaluationQueue(sqs, queue), config,
                       SnsNotifier(world.session.client("sns"), world.config.topic_arn),
                       S3PolicySource(world.session.client("s3"), BUCKET, "policy.yaml",
                                      max_age_seconds=0, with_catalog=False))


def kev_written_event() -> dict[str, Any]:
    text = (ROOT / "events" / "s3-kev-catalog-object-created.json").read_text()
    return json.loads(text.replace("POLICY_BUCKET", BUCKET))


@pytest.mark.parametrize(("policy", "expected"), [
    pytest.param(KEV_POLICY, "queued", id="rule-used"),
    pytest.param(PLAIN_POLICY, "ignored", id="rule-unused")])
def test_a_new_catalog_requeues_every_image_only_where_the_rule_is_used(
        world: World, context: Any, policy: str, expected: str) -> None:
    # Given a judged image and a published policy with or without the rule
    world.publish_policy(policy)
    put_catalog(world, catalog_body("CVE-2021-44228"))
    judged(world, context)
    deps = sweeper(world)
    # When the sweeper gets the S3 event of a new catalog copy
    result = handling.handle_sweep(kev_written_event(), lambda: deps)
    # Then with the rule, every judged image is queued; without it, none
    assert result["status"] == expected
    assert result.get("count", 0) == (1 if expected == "queued" else 0)
