"""The operator commands: status, verify, reevaluate and replay-dlq, in-process against moto.

Most tests use the `world` fixture (the gatekeeper's resources named through the
GATEKEEPER_* environment); one deploys template.yaml into moto and names only the stack;
one talks to a moto server over HTTP through --endpoint-url.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper import runtime
from gatekeeper.adapters.store import VerdictStore
from gatekeeper_tools.cli import main
from gatekeeper_tools.cli.deployment import parse_reference
from gatekeeper_tools.cli.key import pem_public_key
from gatekeeper_tools.local import kms as moto_kms
from gatekeeper_tools.local.ecr import manifest, set_scan_result
from gatekeeper_tools.local.slack import WebhookReceiver
from gatekeeper_tools.local.stack import STACK_NAME, LocalDeployment
from tests.support import (
    REGION,
    ROOT,
    World,
    approved,
    load_event,
    load_findings,
    push_event,
    quarantined,
    scan_event,
    signing_key,
)


@dataclass
class Run:
    code: int
    out: str
    err: str


class FakeTime:
    """A monotonic clock that only moves when slept on; records every sleep asked for."""

    def __init__(self, interrupt_on_sleep: int | None = None) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.interrupt_on_sleep = interrupt_on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.interrupt_on_sleep == len(self.slept):
            raise KeyboardInterrupt
        self.now += seconds


@pytest.fixture
def gatekeeper(capsys: Any) -> Any:
    """Run `gatekeeper ARGS...` in-process; never really sleeps."""
    def run(*argv: str, time: FakeTime | None = None) -> Run:
        time = time or FakeTime()
        capsys.readouterr()  # only this command's output: not the handlers' logs before it
        code = main(list(argv), sleep=time.sleep, clock=time.clock)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def judged(world: World, context: Any, repo: str, digest: str, findings: str) -> str:
    """The image scanned with ``findings`` and its scan event handled; returns the verdict."""
    world.scanned(repo, digest, findings)
    return str(on_scan(scan_event(repo, digest), context)["verdict"])


def store(world: World) -> VerdictStore:
    return VerdictStore(world.session.client("dynamodb"), world.config.table_name)


def items(world: World) -> list[dict[str, Any]]:
    return world.session.client("dynamodb").scan(TableName=world.config.table_name)["Items"]


# --- image references ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("team-a/web", ("team-a/web", "latest", None)),
    ("team-a/web:v1.2", ("team-a/web", "v1.2", None)),
    ("team-a/web@sha256:" + "ab" * 32, ("team-a/web", None, "sha256:" + "ab" * 32)),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/team-a/web:v1", ("team-a/web", "v1", None)),
])
def test_image_references_are_read_as_docker_reads_them(text: str,
                                                        expected: tuple[Any, ...]) -> None:
    ref = parse_reference(text)
    assert (ref.repository, ref.tag, ref.digest) == expected


# --- status ----------------------------------------------------------------------------------

def test_status_shows_the_verdict_by_tag_and_by_digest_with_its_history(
        world: World, context: Any, gatekeeper: Any) -> None:
    # Given an image first quarantined, then approved after a clean re-scan (a flip)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    assert judged(world, context, repo, digest, "basic-critical") == "QUARANTINED"
    assert judged(world, context, repo, digest, "basic-clean") == "APPROVED"

    # When its status is asked by tag
    by_tag = gatekeeper("status", "team-a/web:v1")

    # Then it names the digest, the verdict, the marker on the image now, and the history
    assert by_tag.code == 0, by_tag.err
    assert f"team-a/web@{digest}" in by_tag.out
    assert "verdict:     APPROVED, settled" in by_tag.out
    assert f"marker:      {approved(digest)} (on the image)" in by_tag.out
    assert "policy:      version builtin-strict, rule default" in by_tag.out
    assert "trigger basic-scan" in by_tag.out
    history = by_tag.out.split("history (2, newest first):")[1]
    assert history.index("APPROVED (was QUARANTINED)") < history.index("QUARANTINED (was none)")
    assert "CRITICAL: 1 finding over the limit of 0 (CVE-2023-4863)" in history

    # When it is asked by digest, as JSON
    by_digest = gatekeeper("status", f"team-a/web@{digest}", "--format", "json")

    # Then the document holds the same: the tags now, the verdict, the history newest first
    assert by_digest.code == 0
    document = json.loads(by_digest.out)
    assert document["schema"] == "gatekeeper.status/v1"
    assert document["digest"] == digest
    assert document["tags"] == sorted(["v1", approved(digest)])
    verdict = document["verdict"]
    assert (verdict["state"], verdict["settled"], verdict["marker"]) == (
        "APPROVED", True, approved(digest))
    assert verdict["marker_on_image"] is True
    assert verdict["policy_version"] == "builtin-strict"
    assert verdict["matched_rule"] == "default"
    assert verdict["trigger"] == "basic-scan"
    assert verdict["decided_at"] and "review_at" in verdict
    assert [(h["state"], h["previous"]) for h in document["history"]] == [
        ("APPROVED", "QUARANTINED"), ("QUARANTINED", None)]


def test_status_of_an_unknown_image_or_repository_exits_2(world: World,
                                                          gatekeeper: Any) -> None:
    # Given a repository with one image
    repo = world.repository("team-a/web")
    world.push(repo, "v1")

    # When an absent tag, digest or repository is asked for, Then: one line, exit 2
    for image, message in [("team-a/web:nope", "image team-a/web:nope not found"),
                           ("team-a/web@sha256:" + "0" * 64, "not found"),
                           ("team-z/none:v1", "repository team-z/none not found")]:
        run = gatekeeper("status", image)
        assert run.code == 2, image
        assert message in run.err
        assert len(run.err.strip().splitlines()) == 1
    # and a reference that is not one is a usage error too
    assert gatekeeper("status", "Team-A/Web:v1").code == 2


def test_status_of_an_image_never_judged_exits_1(world: World, gatekeeper: Any) -> None:
    # Given an image pushed while the gatekeeper was not listening
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")

    # When its status is asked
    run = gatekeeper("status", "team-a/web:v1")

    # Then it says no verdict is recorded, exit 1
    assert run.code == 1
    assert digest in run.out
    assert "none recorded" in run.out
    assert json.loads(gatekeeper("status", "team-a/web:v1", "--format", "json").out)[
        "verdict"] is None


# --- verify ----------------------------------------------------------------------------------

def test_verify_passes_an_approved_image_carrying_its_marker(world: World, context: Any,
                                                             gatekeeper: Any) -> None:
    # Given an approved image
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    judged(world, context, repo, digest, "basic-clean")

    # When a pipeline verifies it, by tag or by digest
    by_tag = gatekeeper("verify", "team-a/web:v1")
    by_digest = gatekeeper("verify", f"team-a/web@{digest}")

    # Then it passes with one line naming the digest and the policy version
    assert (by_tag.code, by_digest.code) == (0, 0)
    assert by_tag.out == f"approved: team-a/web@{digest} (policy version builtin-strict)\n"
    assert by_tag.err == ""


def test_verify_refuses_a_quarantined_image_with_the_reason(world: World, context: Any,
                                                            gatekeeper: Any) -> None:
    # Given a quarantined image
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    judged(world, context, repo, digest, "basic-critical")

    # When it is verified
    run = gatekeeper("verify", "team-a/web:v1")

    # Then it fails with one line: quarantined, and the first reason
    assert run.code == 1
    assert run.out == ""
    assert run.err == (f"not approved: quarantined: team-a/web@{digest}: CRITICAL: 1 finding "
                       "over the limit of 0 (CVE-2023-4863)\n")


def test_verify_refuses_a_pending_image(world: World, context: Any, gatekeeper: Any) -> None:
    # Given an image pushed, its scan not finished
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    assert on_push(push_event(repo, digest), context)["status"] == "pending"

    # When it is verified, Then it fails: pending
    run = gatekeeper("verify", "team-a/web:v1")
    assert run.code == 1
    assert run.err.startswith("not approved: pending:")
    assert len(run.err.splitlines()) == 1


def test_verify_refuses_an_image_never_judged_or_not_there(world: World,
                                                            gatekeeper: Any) -> None:
    repo = world.repository("team-a/web")
    world.push(repo, "v1")

    unjudged = gatekeeper("verify", "team-a/web:v1")
    missing = gatekeeper("verify", "team-a/web:v2")

    assert (unjudged.code, missing.code) == (1, 1)
    assert unjudged.err.startswith("not approved: no verdict:")
    assert missing.err == "not approved: image team-a/web:v2 not found\n"


def test_verify_refuses_an_approved_image_whose_marker_was_removed(
        world: World, context: Any, gatekeeper: Any) -> None:
    # Given an approved image, whose approval marker someone deleted since
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    judged(world, context, repo, digest, "basic-clean")
    world.ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": approved(digest)}])
    assert world.tags(repo, digest) == ["v1"]

    # When it is verified
    run = gatekeeper("verify", "team-a/web:v1")

    # Then the recorded verdict alone is not enough: the marker is missing
    assert run.code == 1
    assert run.err.startswith(f"not approved: marker missing: team-a/web@{digest}")
    assert approved(digest) in run.err
    # and status shows it too
    assert "(MISSING from the image)" in gatekeeper("status", "team-a/web:v1").out


# --- reevaluate ------------------------------------------------------------------------------

def test_reevaluate_backfills_and_rejudges_matching_repositories_only(
        world: World, context: Any, gatekeeper: Any) -> None:
    # Given team-a images: one judged already, two never judged (one with a CRITICAL), one
    # never scanned; and an image of team-b never judged
    web, api, new = (world.repository(n) for n in ("team-a/web", "team-a/api", "team-a/new"))
    old = world.push(web, "v1")
    judged(world, context, web, old, "basic-clean")
    fresh = world.push(web, "v2")
    world.scanned(web, fresh, "basic-clean")
    risky = world.push(api, "1.0")
    world.scanned(api, risky, "basic-critical")
    unscanned = world.push(new, "0.1")
    other_repo = world.repository("team-b/web")
    other = world.push(other_repo, "v1", seed="team-b")
    world.scanned(other_repo, other, "basic-clean")
    notified_before = len(world.notifications())

    # When team-a/* is re-evaluated
    run = gatekeeper("reevaluate", "--repository", "team-a/*")

    # Then each team-a image got its verdict (backfill), the judged one is unchanged,
    assert run.code == 0, run.err
    records = store(world)
    assert records.get(web, fresh).state == "APPROVED"
    assert records.get(web, fresh).trigger == "operator"
    assert records.get(api, risky).state == "QUARANTINED"
    assert records.get(new, unscanned).state == "PENDING"
    assert records.get(web, old).revision == 2  # untouched by the re-evaluation
    assert world.tags(api, risky) == sorted(["1.0", quarantined(risky)])
    # the two new verdicts were notified, and team-b was not touched
    assert len(world.notifications()) - notified_before == 2
    assert records.get(other_repo, other) is None
    assert world.tags(other_repo, other) == ["v1"]
    # and the summary table says so, one row per image, after one progress line per image
    rows = {line.split()[0] + "@" + line.split()[1]: line.split()[2:]
            for line in run.out.splitlines()[1:-1]}
    assert rows == {f"team-a/api@{risky[:19]}": ["judged", "QUARANTINED"],
                    f"team-a/new@{unscanned[:19]}": ["pending", "PENDING"],
                    f"team-a/web@{old[:19]}": ["unchanged", "APPROVED"],
                    f"team-a/web@{fresh[:19]}": ["judged", "APPROVED"]}
    assert run.out.splitlines()[0].split() == ["REPOSITORY", "DIGEST", "RESULT", "VERDICT"]
    assert "4 image(s): judged 2, pending 1, unchanged 1" in run.out
    assert sum(line.startswith(("1/4 ", "2/4 ", "3/4 ", "4/4 "))
               for line in run.err.splitlines()) == 4


def test_reevaluate_dry_run_writes_nothing(world: World, gatekeeper: Any) -> None:
    # Given two scanned images never judged, one clean and one with a CRITICAL
    repo = world.repository("team-a/web")
    clean, risky = world.push(repo, "v1"), world.push(repo, "v2")
    world.scanned(repo, clean, "basic-clean")
    world.scanned(repo, risky, "basic-critical")

    # When a dry run re-evaluates them
    run = gatekeeper("reevaluate", "--all", "--dry-run")

    # Then it shows what each would get
    assert run.code == 0, run.err
    assert f"team-a/web  {clean[:19]}  would-judge  APPROVED" in run.out
    assert f"team-a/web  {risky[:19]}  would-judge  QUARANTINED" in run.out
    # and wrote nothing: no verdict, no tag, no notification
    assert items(world) == []
    assert world.tags(repo, clean) == ["v1"]
    assert world.tags(repo, risky) == ["v2"]
    assert world.notifications() == []


def test_reevaluate_resumes_from_its_state_file_after_an_interruption(
        world: World, gatekeeper: Any, tmp_path: Path) -> None:
    # Given five scanned images never judged
    repo = world.repository("team-a/web")
    digests = [world.push(repo, f"v{i}") for i in range(5)]
    for digest in digests:
        world.scanned(repo, digest, "basic-clean")
    state = tmp_path / "reevaluate.state"

    # When the run is interrupted (Ctrl-C while waiting for the third image's slot)
    first = gatekeeper("reevaluate", "--repository", "team-a/*", "--state-file", str(state),
                       time=FakeTime(interrupt_on_sleep=2))

    # Then it exits 130 with the summary so far, having recorded the two it finished
    assert first.code == 130
    done = state.read_text().splitlines()
    assert len(done) == 2
    assert "2 image(s): judged 2" in first.out
    assert "interrupted after 2 of 5" in first.err

    # When it is run again
    second = gatekeeper("reevaluate", "--repository", "team-a/*", "--state-file", str(state))

    # Then it skips the two and judges the other three
    assert second.code == 0, second.err
    assert "3 image(s) to re-evaluate" in second.err and "2 already done" in second.err
    assert "3 image(s): judged 3; 2 skipped (state file)" in second.out
    for key in done:
        assert key.split("@")[1][:19] not in second.out
    assert sorted(state.read_text().splitlines()) == sorted(f"{repo}@{d}" for d in digests)
    # and every image ends judged once, with one notification each
    records = store(world)
    assert all(records.get(repo, d).state == "APPROVED" for d in digests)
    assert all(len(records.history(repo, d)) == 1 for d in digests)
    notified = [n["Message"] for n in world.notifications()]
    assert len(notified) == 5
    assert all(sum(d in message for message in notified) == 1 for d in digests)


def test_reevaluate_respects_its_rate(world: World, gatekeeper: Any) -> None:
    # Given five images
    repo = world.repository("team-a/web")
    for i in range(5):
        world.scanned(repo, world.push(repo, f"v{i}"), "basic-clean")
    time = FakeTime()

    # When they are re-evaluated at two per second
    run = gatekeeper("reevaluate", "--all", "--rate", "2", time=time)

    # Then the pacing asked for 2 s of sleep in all (four waits of half a second)
    assert run.code == 0
    assert sum(time.slept) == pytest.approx(2.0)
    assert time.slept == pytest.approx([0.5] * 4)


def test_reevaluate_draws_a_progress_bar_when_asked(world: World, gatekeeper: Any) -> None:
    repo = world.repository("team-a/web")
    world.scanned(repo, world.push(repo, "v1"), "basic-clean")

    run = gatekeeper("reevaluate", "--all", "--progress")

    assert run.code == 0
    assert "\r[....................] 0/1 team-a/web@sha256:" in run.err
    assert "[####################] done" in run.err


def test_reevaluate_needs_a_repository_choice(world: World, gatekeeper: Any) -> None:
    with pytest.raises(SystemExit) as exited:
        gatekeeper("reevaluate")
    assert exited.value.code == 2


# --- replay-dlq ------------------------------------------------------------------------------

def lambda_failure_record(event: dict[str, Any]) -> dict[str, Any]:
    """What Lambda's on-failure destination sends after the last retry of ``event``."""
    return {
        "version": "1.0",
        "timestamp": "2026-11-20T01:56:02.123Z",
        "requestContext": {
            "requestId": "e4b46cbf-b738-4a85-a5f4-2c4b6c1f4b2e",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:OnPush:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "Rate exceeded", "errorType": "ClientError"},
    }


def dead_letter_queue(world: World, monkeypatch: pytest.MonkeyPatch) -> str:
    url = world.session.client("sqs").create_queue(QueueName="dead-letters")["QueueUrl"]
    monkeypatch.setenv("GATEKEEPER_DLQ_URL", url)
    return url


def queued(sqs: Any, url: str) -> list[str]:
    """The bodies in the queue, all visible (replay-dlq releases what it keeps), left visible."""
    messages: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                  VisibilityTimeout=30).get("Messages", [])
        if not got:
            break
        messages += got
    for message in messages:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                      VisibilityTimeout=0)
    return [m["Body"] for m in messages]


def test_replay_dlq_handles_both_shapes_and_keeps_what_it_cannot_read(
        world: World, monkeypatch: pytest.MonkeyPatch, gatekeeper: Any) -> None:
    # Given in the dead-letter queue: a scan event EventBridge could not deliver, a push
    # event whose handler failed every retry (Lambda's failure record), and garbage
    url = dead_letter_queue(world, monkeypatch)
    repo = world.repository("team-a/web")
    scanned, pushed = world.push(repo, "v1"), world.push(repo, "v2")
    world.scanned(repo, scanned, "basic-critical")
    world.scanned(repo, pushed, "basic-clean")
    sqs = world.session.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(scan_event(repo, scanned)),
                     MessageAttributes={"ERROR_CODE": {"DataType": "String",
                                                       "StringValue": "SDKClientException"}})
    sqs.send_message(QueueUrl=url,
                     MessageBody=json.dumps(lambda_failure_record(push_event(repo, pushed, "v2"))))
    sqs.send_message(QueueUrl=url, MessageBody="this is not an event")

    # When the queue is replayed
    run = gatekeeper("replay-dlq")

    # Then both events were handled by the handlers' code: verdicts recorded, images tagged
    assert store(world).get(repo, scanned).state == "QUARANTINED"
    assert store(world).get(repo, pushed).state == "APPROVED"
    assert store(world).get(repo, pushed).trigger == "push"
    assert world.tags(repo, pushed) == sorted(["v2", approved(pushed)])
    # and deleted from the queue; the garbage stays, reported
    assert queued(sqs, url) == ["this is not an event"]
    assert run.code == 1
    assert "replayed: ECR Image Scan team-a/web@" in run.out
    assert "-> judged QUARANTINED" in run.out
    assert "replayed: ECR Image Action team-a/web@" in run.out
    assert "kept: unknown message (not JSON); left in the queue" in run.out
    assert run.out.splitlines()[-1] == "3 message(s): replayed 2, still failing 0, kept 1"


def test_replay_dlq_keeps_an_event_that_fails_again(world: World, context: Any,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    gatekeeper: Any) -> None:
    # Given a scan event in the queue for an image ECR still has no scan of, and an event
    # of a kind this command does not replay (the sweeper's schedule)
    url = dead_letter_queue(world, monkeypatch)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    sqs = world.session.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(scan_event(repo, digest)))
    schedule = {"version": "0", "id": "1", "detail-type": "Scheduled Event",
                "source": "aws.events", "detail": {}}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(schedule))

    # When a dry run looks, Then it would replay the scan event and touches nothing
    dry = gatekeeper("replay-dlq", "--dry-run")
    assert "would replay: ECR Image Scan team-a/web@" in dry.out
    assert dry.out.splitlines()[-1] == "2 message(s): would replay 1, still failing 0, kept 1"
    assert len(queued(sqs, url)) == 2

    # When it is replayed
    run = gatekeeper("replay-dlq")

    # Then it fails again and stays, reported with its error; the schedule stays too
    assert run.code == 1
    assert "still failing: ECR Image Scan team-a/web@" in run.out
    assert "ScanNotReady" in run.out
    assert "kept: Scheduled Event from the event itself is not an ECR push or scan" in run.out
    assert run.out.splitlines()[-1] == "2 message(s): replayed 0, still failing 1, kept 1"
    assert len(queued(sqs, url)) == 2
    assert store(world).get(repo, digest) is None


def test_replay_dlq_needs_the_queue(world: World, gatekeeper: Any) -> None:
    run = gatekeeper("replay-dlq")
    assert run.code == 2
    assert run.err == ("gatekeeper replay-dlq: which DeadLetterQueueUrl? pass --stack NAME, "
                       "or --dlq-url (or set GATEKEEPER_DLQ_URL)\n")


# --- against the deployed template: everything from --stack ------------------------------------

@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalDeployment]:
    """Given template.yaml deployed into moto, and no GATEKEEPER_* in the environment."""
    for name in ("GATEKEEPER_TABLE", "GATEKEEPER_TOPIC_ARN", "GATEKEEPER_POLICY_BUCKET",
                 "GATEKEEPER_DLQ_URL"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        runtime.gatekeeper.cache_clear()
        yield LocalDeployment.create(str(ROOT / "template.yaml"))
        runtime.gatekeeper.cache_clear()


def test_the_stack_outputs_name_everything(deployment: LocalDeployment,
                                           gatekeeper: Any) -> None:
    # Given an image in ECR, and its push event in the stack's dead-letter queue
    ecr = boto3.client("ecr", region_name=REGION)
    ecr.create_repository(repositoryName="team-a/web")
    digest = ecr.put_image(repositoryName="team-a/web", imageManifest=manifest("v1"),
                           imageTag="v1")["image"]["imageId"]["imageDigest"]
    set_scan_result("team-a/web", digest, load_findings("basic-clean"))
    boto3.client("sqs", region_name=REGION).send_message(
        QueueUrl=deployment.dlq_url,
        MessageBody=json.dumps(lambda_failure_record(push_event("team-a/web", digest))))

    # When the queue is replayed and the image verified, naming only the stack
    replay = gatekeeper("replay-dlq", "--stack", STACK_NAME)
    verify = gatekeeper("verify", "--stack", STACK_NAME, "team-a/web:v1")
    status = gatekeeper("status", "--stack", STACK_NAME, "team-a/web:v1", "--format", "json")

    # Then the stack's queue, table, topic and bucket were the ones used
    assert replay.code == 0, replay.out + replay.err
    assert verify.code == 0, verify.err
    assert verify.out.startswith(f"approved: team-a/web@{digest}")
    assert json.loads(status.out)["verdict"]["state"] == "APPROVED"
    record = VerdictStore(boto3.client("dynamodb", region_name=REGION),
                          deployment.table_name).get("team-a/web", digest)
    assert record is not None and record.state == "APPROVED"
    # and an unknown stack is a one-line usage error
    missing = gatekeeper("status", "--stack", "no-such-stack", "team-a/web:v1")
    assert missing.code == 2
    assert missing.err.startswith("gatekeeper status: stack no-such-stack:")


# --- over HTTP: --endpoint-url to a moto server ------------------------------------------------

@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def remote(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The gatekeeper's resources created over HTTP in the moto server (its state is reset
    by every in-process mock, so each test makes its own)."""
    for name in ("GATEKEEPER_TABLE", "GATEKEEPER_TOPIC_ARN", "GATEKEEPER_POLICY_BUCKET",
                 "GATEKEEPER_SIGNING_KEY_ARN"):
        monkeypatch.delenv(name, raising=False)
    urllib.request.urlopen(  # the local moto server
        urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).close()
    session = boto3.session.Session(region_name=REGION)

    def client(name: str) -> Any:
        return session.client(name, endpoint_url=moto_server)

    client("dynamodb").create_table(
        TableName="verdicts",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST")
    topic = client("sns").create_topic(Name="verdicts")["TopicArn"]
    client("s3").create_bucket(Bucket="gatekeeper-policy")
    moto_kms.install()  # the server runs in this process
    key = client("kms").create_key(KeySpec="ECC_NIST_P256",
                                   KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    yield {"client": client, "url": moto_server, "key": key,
           "flags": ["--endpoint-url", moto_server, "--table", "verdicts", "--topic-arn", topic,
                     "--policy-bucket", "gatekeeper-policy", "--signing-key-arn", key]}


def seed_image(remote: dict[str, Any], repo: str, tag: str, findings: str) -> str:
    """An image pushed and scanned, its findings set through the moto API."""
    ecr = remote["client"]("ecr")
    ecr.create_repository(repositoryName=repo)
    digest = ecr.put_image(repositoryName=repo, imageManifest=manifest(f"{repo}:{tag}"),
                           imageTag=tag)["image"]["imageId"]["imageDigest"]
    ecr.start_image_scan(repositoryName=repo, imageId={"imageDigest": digest})
    result = {**load_findings(findings), "registryId": "123456789012", "repositoryName": repo,
              "imageId": {"imageDigest": digest}}  # the gatekeeper asks by digest
    result["imageScanFindings"]["imageScanCompletedAt"] = 1_790_000_000
    request = urllib.request.Request(
        f"{remote['url']}/moto-api/static/ecr/scan-finding-results", method="POST",
        data=json.dumps({"results": [result], "region": REGION}).encode(),
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).close()  # the local moto server
    return str(digest)


def test_endpoint_url_reaches_a_moto_server(remote: dict[str, Any], gatekeeper: Any) -> None:
    # Given a clean image and a risky one in a moto server, known only by its URL
    clean = seed_image(remote, "srv/web", "v1", "basic-clean")
    risky = seed_image(remote, "srv/api", "v1", "basic-critical")

    # When they are backfilled, then verified and shown, every call through --endpoint-url
    backfill = gatekeeper("reevaluate", "--repository", "srv/*", *remote["flags"])
    good = gatekeeper("verify", "srv/web:v1", *remote["flags"])
    bad = gatekeeper("verify", f"srv/api@{risky}", *remote["flags"])
    status = gatekeeper("status", "srv/web:v1", "--format", "json", *remote["flags"])

    # Then the server holds the verdicts and the markers
    assert backfill.code == 0, backfill.err
    assert good.code == 0, good.err
    assert good.out.startswith(f"approved: srv/web@{clean}")
    assert bad.code == 1
    assert "quarantined" in bad.err and "CVE-2023-4863" in bad.err
    document = json.loads(status.out)
    assert document["verdict"]["state"] == "APPROVED"
    assert approved(clean) in document["tags"]
    tags = remote["client"]("ecr").describe_images(
        repositoryName="srv/api", imageIds=[{"imageDigest": risky}])["imageDetails"][0]
    assert quarantined(risky) in tags["imageTags"]


def test_replay_dlq_reevaluates_requests_redriven_from_the_reevaluation_queue(
        world: World, monkeypatch: pytest.MonkeyPatch, gatekeeper: Any) -> None:
    # Given a sweeper request that failed five times on the re-evaluation queue (SQS moved it
    # to the dead-letter queue) and an hourly schedule event EventBridge could not deliver
    from gatekeeper.domain.events import Trigger, reevaluation_request

    url = dead_letter_queue(world, monkeypatch)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    sqs = world.session.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        reevaluation_request(repo, digest, Trigger.EXPIRY)))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(load_event("scheduled-event")))

    # When the queue is replayed
    run = gatekeeper("replay-dlq")

    # Then the request is re-evaluated and deleted; the schedule is kept for a person
    assert store(world).get(repo, digest).state == "QUARANTINED"
    assert store(world).get(repo, digest).trigger == "expiry"
    assert "re-evaluated (expiry): team-a/web@" in run.out
    assert len(queued(sqs, url)) == 1
    assert run.out.splitlines()[-1] == "2 message(s): replayed 1, still failing 0, kept 1"


def test_replay_dlq_reposts_a_failed_slack_notification(
        world: World, monkeypatch: pytest.MonkeyPatch, gatekeeper: Any) -> None:
    # Given a Slack notification whose invocation failed every retry (the webhook was down)
    # in the dead-letter queue, the webhook secret in Secrets Manager, and Slack up again
    url = dead_letter_queue(world, monkeypatch)
    event = load_event("sns-verdict-notification")
    record = lambda_failure_record(event)
    record["responsePayload"] = {"errorType": "WebhookError", "errorMessage": "HTTP 503"}
    sqs = world.session.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
    with WebhookReceiver() as receiver:
        secret = world.session.client("secretsmanager").create_secret(
            Name="gatekeeper/slack-webhook", SecretString=receiver.url)["ARN"]

        # When the queue is replayed without knowing the secret, Then the letter is kept
        kept = gatekeeper("replay-dlq")
        assert "kept: Slack notification [QUARANTINED] team-b/api:2.0.0: no " \
               "SlackWebhookSecretArn" in kept.out
        assert len(queued(sqs, url)) == 1 and receiver.messages() == []

        # When it is replayed knowing the secret (as --stack reads it from the stack)
        monkeypatch.setenv("GATEKEEPER_SLACK_SECRET_ARN", secret)
        run = gatekeeper("replay-dlq")

        # Then the notification is posted to Slack and leaves the queue
        assert "re-posted: Slack notification [QUARANTINED] team-b/api:2.0.0" in run.out
        assert run.out.splitlines()[-1] == "1 message(s): replayed 1, still failing 0, kept 0"
        assert queued(sqs, url) == []
        [posted] = receiver.messages()
        assert "QUARANTINED" in json.dumps(posted)
        # and the webhook URL was never printed
        assert receiver.url not in run.out + run.err


def test_replay_dlq_reevaluates_an_inspector_finding_event_as_the_queue_function_does(
        world: World, monkeypatch: pytest.MonkeyPatch, gatekeeper: Any) -> None:
    # Given an Inspector2 Finding event about a scanned image, redriven from the
    # re-evaluation queue (it is not for on_push nor on_scan)
    url = dead_letter_queue(world, monkeypatch)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    event = load_event("inspector2-finding")
    event["resources"] = [f"arn:aws:ecr:{REGION}:123456789012:repository/{repo}/{digest}"]
    sqs = world.session.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))

    # When a dry run looks, and then the queue is replayed
    dry = gatekeeper("replay-dlq", "--dry-run")
    run = gatekeeper("replay-dlq")

    # Then it was re-evaluated as the re-evaluation function would (trigger finding), and
    # deleted
    assert f"would re-evaluate: {repo}@{digest[:19]}" in dry.out
    assert run.code == 0, run.out + run.err
    assert f"re-evaluated (finding): {repo}@{digest[:19]} -> judged QUARANTINED" in run.out
    assert store(world).get(repo, digest).trigger == "finding"
    assert queued(sqs, url) == []


def test_replay_dlq_says_why_a_redriven_request_fails_again(
        world: World, monkeypatch: pytest.MonkeyPatch, gatekeeper: Any) -> None:
    # Given a sweeper request in the dead-letter queue, and a verdict table that is not there
    from gatekeeper.domain.events import Trigger, reevaluation_request

    url = dead_letter_queue(world, monkeypatch)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")
    sqs = world.session.client("sqs")
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        reevaluation_request(repo, digest, Trigger.EXPIRY)))
    monkeypatch.setenv("GATEKEEPER_TABLE", "no-such-table")

    # When the queue is replayed
    run = gatekeeper("replay-dlq")

    # Then it stays, and the line says why (the batch entry logs the error; it is shown too)
    assert run.code == 1
    assert f"still failing: re-evaluation request {repo}@{digest[:19]}: " in run.out
    assert "ResourceNotFoundException" in run.out
    assert run.out.splitlines()[-1] == "1 message(s): replayed 0, still failing 1, kept 0"
    assert len(queued(sqs, url)) == 1


# --- signed verdicts: status shows them, verify checks them, key export ------------------------

def test_status_shows_the_signed_envelope(world: World, context: Any, gatekeeper: Any) -> None:
    # Given an approved image, its verdict signed by the stack's key
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    judged(world, context, repo, digest, "basic-clean")

    # When its status is shown as JSON and as text
    document = json.loads(gatekeeper("status", "team-a/web:v1", "--format", "json").out)
    text = gatekeeper("status", "team-a/web:v1").out

    # Then the envelope and the key it names are there
    envelope = document["verdict"]["envelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert document["verdict"]["signed_by"] == world.config.signing_key_arn
    assert document["history"][0]["envelope"] == envelope
    assert f"signature:   signed by {world.config.signing_key_arn}" in text


def test_verify_refuses_an_approval_written_by_anyone_but_the_gatekeeper(
        world: World, context: Any, gatekeeper: Any) -> None:
    # Given a quarantined image, whose record someone with table write turned into an approval
    # (state, reasons, the approved marker written on the image too), keeping its envelope
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    judged(world, context, repo, digest, "basic-critical")
    store = VerdictStore(world.session.client("dynamodb"), world.config.table_name)
    record = store.get(repo, digest)
    assert record is not None
    store.put(replace(record, state="APPROVED", reasons=(), marker=approved(digest)),
              record.revision)
    world.ecr.put_image(repositoryName=repo, imageTag=approved(digest), imageManifest=(
        world.ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])[
            "images"][0]["imageManifest"]))

    # When it is verified (tag-only trust would have passed it)
    run = gatekeeper("verify", "team-a/web:v1")

    # Then the signed verdict is not the record's: refused, in one line
    assert run.code == 1
    assert run.err.startswith(f"not approved: not signed by the stack's key: {repo}@{digest}")
    assert "is not the current one" in run.err
    assert len(run.err.splitlines()) == 1


def test_key_export_then_verify_offline_with_the_public_key(
        world: World, context: Any, gatekeeper: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an approved image, and the stack key's public key exported to a file
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    judged(world, context, repo, digest, "basic-clean")
    pem = tmp_path / "verdicts.pem"
    exported = gatekeeper("key", "export", "--out", str(pem))
    assert exported.code == 0, exported.err
    assert pem.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")

    # When it is verified offline: no KMS call at all
    kms_calls: list[str] = []
    world.session.events.register("before-call.kms.*",
                                  lambda model, **_: kms_calls.append(model.name))
    monkeypatch.setattr(boto3.session.Session, "client", _recording_client(kms_calls))
    run = gatekeeper("verify", "team-a/web:v1", "--public-key", str(pem))

    # Then it passes, and KMS was not asked
    assert run.code == 0, run.err
    assert run.out == f"approved: team-a/web@{digest} (policy version builtin-strict)\n"
    assert kms_calls == []

    # and with another key's public key it is refused
    other = tmp_path / "other.pem"
    other_key = signing_key(world.session)
    other.write_text(pem_public_key(world.session.client("kms").get_public_key(
        KeyId=other_key)["PublicKey"]))
    refused = gatekeeper("verify", "team-a/web:v1", "--public-key", str(other),
                         "--signing-key-arn", other_key)
    assert refused.code == 1
    assert "signed by another key" in refused.err


def _recording_client(calls: list[str]) -> Any:
    """boto3 sessions whose KMS clients record their calls (the CLI makes its own session)."""
    original = boto3.session.Session.client

    def client(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        made = original(self, service, *args, **kwargs)
        if service == "kms":
            made.meta.events.register("before-call.kms.*",
                                      lambda model, **_: calls.append(model.name))
        return made

    return client
