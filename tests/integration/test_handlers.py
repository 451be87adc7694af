"""The handlers, called in-process with recorded events, against moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper import runtime
from gatekeeper.domain.events import MalformedEvent, parse_event
from gatekeeper.domain.policy import PolicyError
from gatekeeper.service import ScanNotReady
from tests.support import World, approved, load_event, push_event, quarantined, scan_event

STRICT = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"


# --- the loop, end to end ------------------------------------------------------------------

@pytest.mark.parametrize("mutability", ["MUTABLE", "IMMUTABLE"])
def test_push_then_scan_quarantines_and_notifies(world: World, context: Any,
                                                 mutability: str) -> None:
    # Given an image pushed to a repository, and its scan finding a CRITICAL
    repo = world.repository("team-a/web", mutability)
    digest = world.push(repo, "v1")

    # When the push event and then the scan event arrive
    pushed = on_push(push_event(repo, digest), context)
    world.scanned(repo, digest, "basic-critical")
    judged = on_scan(scan_event(repo, digest), context)

    # Then the push left it pending, the scan quarantined it by its per-digest marker,
    assert pushed["status"] == "pending"
    assert judged["status"] == "judged"
    assert judged["verdict"] == "QUARANTINED"
    assert world.tags(repo, digest) == sorted(["v1", quarantined(digest)])
    # and exactly one notification says so, with filterable attributes and readable reasons
    [note] = world.notifications()
    attrs = {k: v["Value"] for k, v in note["MessageAttributes"].items()}
    assert attrs["verdict"] == "QUARANTINED"
    assert attrs["repository"] == repo
    assert attrs["highest_severity"] == "CRITICAL"
    assert note["Subject"] == "[QUARANTINED] team-a/web:v1"
    assert "CRITICAL: 1 finding over the limit of 0 (CVE-2023-4863)" in note["Message"]
    assert "HIGH: 2 findings over the limit of 0 (CVE-2023-38545, CVE-2023-5363)" in note["Message"]
    assert digest in note["Message"]


def test_immutable_with_exclusion_repository_gets_its_marker(world: World, context: Any) -> None:
    # Given a repository whose tags are immutable except for "latest"
    world.ecr.create_repository(
        repositoryName="team-b/api",
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}],
    )
    digest = world.push("team-b/api", "1.0.0")
    world.scanned("team-b/api", digest, "basic-clean")

    # When the scan event arrives
    result = on_scan(scan_event("team-b/api", digest, tags=("1.0.0",)), context)

    # Then the image is approved and carries its marker beside its own tag
    assert result["verdict"] == "APPROVED"
    assert world.tags("team-b/api", digest) == sorted(["1.0.0", approved(digest)])


def test_enhanced_scan_event_is_judged_from_enhanced_findings(world: World,
                                                              context: Any) -> None:
    # Given an image under enhanced scanning (status ACTIVE) with a CRITICAL, exploitable finding
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "enhanced-critical-exploit")
    event = load_event("inspector2-scan", image_digest=digest,
                       repository_name=f"arn:aws:ecr:us-east-1:123456789012:repository/{repo}")

    # When Inspector's scan event arrives (its repository-name is the repository ARN)
    result = on_scan(event, context)

    # Then the verdict comes from the findings ECR returns, not from the event's counts
    assert result["verdict"] == "QUARANTINED"
    [note] = world.notifications()
    assert "CVE-2021-44228" in note["Message"]


def test_event_counts_are_never_trusted(world: World, context: Any) -> None:
    # Given a clean image whose scan event claims 10 CRITICAL findings
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")
    event = scan_event(repo, digest)
    event["detail"]["finding-severity-counts"] = {"CRITICAL": 10}

    # When it is judged, Then the findings decide
    assert on_scan(event, context)["verdict"] == "APPROVED"


def test_repository_override_applies(world: World, context: Any) -> None:
    # Given a policy where sandbox/* only limits CRITICAL
    world.publish_policy(STRICT + "repositories:\n  - match: 'sandbox/*'\n"
                         "    max_findings: {CRITICAL: 0}\n")
    world.repository("sandbox/tools")
    digest = world.push("sandbox/tools", "v1")
    world.scanned("sandbox/tools", digest, "basic-high-only")

    # When a HIGH-only image there is judged
    result = on_scan(scan_event("sandbox/tools", digest), context)

    # Then it is approved by the override, and the notification names the rule used
    assert result["verdict"] == "APPROVED"
    [note] = world.notifications()
    assert "repositories[match=sandbox/*]" in note["Message"]


def test_verdict_records_the_policy_version(world: World, context: Any) -> None:
    # Given a published policy (a versioned S3 object)
    version = world.publish_policy(STRICT)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")

    # When the image is judged
    on_scan(scan_event(repo, digest), context)

    # Then the stored verdict and the notification name that S3 version
    record = world.gatekeeper().store.get(repo, digest)
    assert record is not None
    assert record.policy_version == version
    assert record.reasons and record.counts == {"MEDIUM": 1, "LOW": 1}
    assert f"version {version}" in world.notifications()[0]["Message"]


# --- flips -----------------------------------------------------------------------------------

def test_verdict_flips_both_ways_moving_only_our_markers(world: World, context: Any) -> None:
    # Given a quarantined image with two user tags
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.ecr.put_image(repositoryName=repo, imageTag="latest",
                        imageManifest=world.ecr.batch_get_image(
                            repositoryName=repo,
                            imageIds=[{"imageDigest": digest}])["images"][0]["imageManifest"])
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest), context)

    # When a rescan comes back clean
    world.scanned(repo, digest, "basic-clean")
    to_approved = on_scan(scan_event(repo, digest), context)

    # Then the quarantine marker is replaced by the approval marker, user tags untouched
    assert (to_approved["previous"], to_approved["verdict"]) == ("QUARANTINED", "APPROVED")
    assert world.tags(repo, digest) == sorted(["latest", "v1", approved(digest)])

    # When the policy tightens so MEDIUM findings are not allowed
    world.publish_policy("version: 1\ndefault:\n  max_findings: {MEDIUM: 0}\n")
    to_quarantined = on_scan(scan_event(repo, digest), context)

    # Then it flips back, and each change was notified exactly once
    assert (to_quarantined["previous"], to_quarantined["verdict"]) == ("APPROVED", "QUARANTINED")
    assert world.tags(repo, digest) == sorted(["latest", "v1", quarantined(digest)])
    verdicts = [n["MessageAttributes"]["verdict"]["Value"] for n in world.notifications()]
    assert verdicts == ["QUARANTINED", "APPROVED", "QUARANTINED"]


def test_image_whose_only_tag_is_our_marker_survives_every_flip(world: World,
                                                                context: Any) -> None:
    # Given an approved image whose user tag was then removed (only our marker is left)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")
    on_scan(scan_event(repo, digest), context)
    world.ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert world.tags(repo, digest) == [approved(digest)]

    # When its verdict flips to quarantined and back
    for findings, marker in (("basic-critical", quarantined(digest)),
                             ("basic-clean", approved(digest))):
        world.scanned(repo, digest, findings)
        on_scan(scan_event(repo, digest), context)

        # Then the image still exists, carrying exactly the current marker
        assert world.image_exists(repo, digest)
        assert world.tags(repo, digest) == [marker]


# --- duplicates, ordering, echoes --------------------------------------------------------------

def test_duplicate_scan_event_changes_nothing_twice(world: World, context: Any) -> None:
    # Given a judged image
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    event = scan_event(repo, digest)
    first = on_scan(event, context)

    # When EventBridge delivers the same event again
    second = on_scan(event, context)

    # Then the second delivery is a no-op: same tags, one notification
    assert (first["status"], second["status"]) == ("judged", "unchanged")
    assert world.tags(repo, digest) == sorted(["v1", quarantined(digest)])
    assert len(world.notifications()) == 1


def test_scan_event_before_push_event(world: World, context: Any) -> None:
    # Given an image whose scan event overtakes its push event
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")
    judged = on_scan(scan_event(repo, digest), context)

    # When the push event arrives afterwards
    late_push = on_push(push_event(repo, digest), context)

    # Then the verdict stands and nobody is notified twice
    assert judged["verdict"] == "APPROVED"
    assert late_push["status"] == "unchanged"
    assert late_push["verdict"] == "APPROVED"
    assert len(world.notifications()) == 1


def test_push_of_an_already_scanned_image_is_judged_at_once(world: World, context: Any) -> None:
    # Given an image whose scan finished but whose scan event was never seen
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")

    # When its push event arrives
    result = on_push(push_event(repo, digest), context)

    # Then it is judged from the finished scan
    assert result["verdict"] == "QUARANTINED"


def test_own_marker_coming_back_as_push_is_ignored(world: World, context: Any) -> None:
    # Given an image the gatekeeper approved (its tag write comes back as a PUSH event)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")
    on_scan(scan_event(repo, digest), context)
    calls: list[str] = []
    world.session.events.register("before-call.*.*",
                                  lambda model, **_: calls.append(model.name))
    runtime.gatekeeper.cache_clear()

    # When the echo arrives
    result = on_push(push_event(repo, digest, tag=approved(digest)), context)

    # Then it is recognised as ours: no scan read, no tag write, no notification
    assert result == {**result, "status": "ignored", "reason": "own marker echo"}
    assert calls == ["GetItem"]
    assert world.tags(repo, digest) == sorted(["v1", approved(digest)])
    assert len(world.notifications()) == 1


def forge(world: World, repo: str, digest: str, tag: str) -> dict[str, Any]:
    """Someone with push rights tags the image themselves; ECR sends the PUSH event."""
    manifest = world.ecr.batch_get_image(repositoryName=repo,
                                         imageIds=[{"imageDigest": digest}])["images"][0]
    world.ecr.put_image(repositoryName=repo, imageTag=tag,
                        imageManifest=manifest["imageManifest"])
    return push_event(repo, digest, tag=tag)


def test_forged_approval_is_undone_and_security_alerted(world: World, context: Any) -> None:
    # Given a pending image (not scanned yet)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    on_push(push_event(repo, digest), context)

    # When someone pushes the approval marker themselves
    result = on_push(forge(world, repo, digest, approved(digest)), context)

    # Then the forged tag is removed, the image is re-evaluated (still pending), and an alert
    # goes out that subscribers can filter on
    assert world.tags(repo, digest) == ["v1"]
    assert result["status"] == "pending"
    [alert] = world.notifications()
    assert alert["Subject"] == f"[FORGED MARKER] {repo}: {approved(digest)}"
    assert alert["MessageAttributes"]["alert"]["Value"] == "forged_marker"
    assert "removed" in alert["Message"]


def test_forged_approval_of_a_quarantined_image_leaves_the_quarantine(world: World,
                                                                       context: Any) -> None:
    # Given a quarantined image
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest), context)

    # When someone adds the approval marker
    on_push(forge(world, repo, digest, approved(digest)), context)

    # Then it is gone again, the quarantine stands, and the history says nothing changed
    assert world.tags(repo, digest) == sorted(["v1", quarantined(digest)])
    record = world.gatekeeper().store.get(repo, digest)
    assert record is not None and record.state == "QUARANTINED"
    subjects = [n["Subject"] for n in world.notifications()]
    assert subjects == ["[QUARANTINED] team-a/web:v1",
                        f"[FORGED MARKER] {repo}: {approved(digest)}"]


def test_forged_marker_that_is_the_only_tag_is_kept_not_deleting_the_image(
        world: World, context: Any) -> None:
    # Given an image pushed with nothing but a forged approval marker as its tag
    repo = world.repository("team-a/web")
    digest = world.push(repo, "approved-000000000000", seed="forged")
    event = push_event(repo, digest, tag="approved-000000000000")

    # When its push event arrives
    on_push(event, context)

    # Then the image still exists (its last tag is never removed) and security is alerted
    assert world.image_exists(repo, digest)
    [alert] = world.notifications()
    assert "KEPT" in alert["Message"]


def test_late_echo_of_a_replaced_marker_is_not_a_forgery(world: World, context: Any) -> None:
    # Given an image approved, then quarantined (the approval marker was replaced)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")
    on_scan(scan_event(repo, digest), context)
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest), context)

    # When the PUSH event of the old approval marker arrives late
    result = on_push(push_event(repo, digest, tag=approved(digest)), context)

    # Then nothing is undone or alerted
    assert result["reason"] == "marker no longer on the image; nothing to undo"
    assert [n["Subject"][:14] for n in world.notifications()] == ["[APPROVED] tea",
                                                                  "[QUARANTINED] "]


def test_every_verdict_change_is_kept_in_the_history(world: World, context: Any) -> None:
    # Given an image judged three times with two changes
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    for findings in ("basic-critical", "basic-clean", "basic-clean"):
        world.scanned(repo, digest, findings)
        on_scan(scan_event(repo, digest), context)

    # Then the history holds both verdicts, newest first, with their cause and policy version
    history = world.gatekeeper().store.history(repo, digest)
    assert [(h.state, h.previous, h.trigger) for h in history] == [
        ("APPROVED", "QUARANTINED", "basic-scan"), ("QUARANTINED", None, "basic-scan")]
    assert all(h.policy_version == "builtin-strict" and h.reasons for h in history)


# --- scan failures ------------------------------------------------------------------------------

def test_failed_scan_follows_on_scan_failure_quarantine(world: World, context: Any) -> None:
    # Given an image ECR could not scan, and the default (fail-closed) policy
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "scan-failed")

    # When the FAILED scan event arrives
    result = on_scan(scan_event(repo, digest, status="FAILED"), context)

    # Then the image is quarantined and the reason says why
    assert result["verdict"] == "QUARANTINED"
    [note] = world.notifications()
    assert "scan FAILED: UnsupportedImageError" in note["Message"]
    assert note["MessageAttributes"]["scan_status"]["Value"] == "FAILED"


def test_failed_scan_follows_on_scan_failure_approve(world: World, context: Any) -> None:
    # Given a policy that approves images that cannot be scanned
    world.publish_policy(STRICT + "  on_scan_failure: approve\n")
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")

    # When a FAILED scan event arrives and ECR has no scan to show
    result = on_scan(scan_event(repo, digest, status="FAILED"), context)

    # Then the policy's choice applies
    assert result["verdict"] == "APPROVED"


def test_complete_event_without_a_scan_in_ecr_is_retried(world: World, context: Any) -> None:
    # Given a scan event that ECR does not (yet) agree with
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")

    # When it is handled, Then the handler fails so Lambda retries it (then the DLQ)
    with pytest.raises(ScanNotReady):
        on_scan(scan_event(repo, digest), context)
    assert world.gatekeeper().store.get(repo, digest) is None


def test_untagged_push_is_pending(world: World, context: Any) -> None:
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    result = on_push(push_event(repo, digest, tag=None), context)
    assert result["status"] == "pending"


# --- missing images -----------------------------------------------------------------------------

def test_image_deleted_before_the_scan_is_read(world: World, context: Any) -> None:
    # Given an image deleted right after its scan event was sent
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")
    world.ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])

    # When the scan event arrives, Then nothing is judged nor notified
    result = on_scan(scan_event(repo, digest), context)
    assert result["status"] == "image-gone"
    assert world.notifications() == []


def test_image_deleted_between_judging_and_tagging(world: World, context: Any) -> None:
    # Given an image that is deleted just before the gatekeeper tags it
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    ecr = world.ecr

    def delete_first(**_: Any) -> None:
        ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])

    world.session.events.register_first("before-call.ecr.BatchGetImage", delete_first)
    gatekeeper = world.gatekeeper()

    # When the scan event is handled
    result = gatekeeper.handle(parse_event(scan_event(repo, digest)))

    # Then it ends cleanly as image-gone, recorded as such, with no notification
    assert result.status == "image-gone"
    record = gatekeeper.store.get(repo, digest)
    assert record is not None and record.gone and record.settled
    assert world.notifications() == []


def test_missing_repository_is_image_gone(world: World, context: Any) -> None:
    digest = "sha256:" + "ab" * 32
    result = on_scan(scan_event("team-z/none", digest), context)
    assert result["status"] == "image-gone"


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mutate", [
    lambda e: e["detail"].pop("image-digest"),
    lambda e: e["detail"].update({"image-digest": "latest"}),
    lambda e: e["detail"].update({"repository-name": "Not A Repo"}),
    lambda e: e.pop("detail"),
    lambda e: e["detail"].update({"image-tags": "v1"}),
])
def test_malformed_scan_event_fails_loudly_and_judges_nothing(world: World, context: Any,
                                                              caplog: Any, mutate: Any) -> None:
    # Given a scan event for a real, clean image, damaged in transit
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")
    event = scan_event(repo, digest)
    mutate(event)

    # When it is handled, Then the handler raises (so the event ends in the DLQ)
    with pytest.raises(MalformedEvent):
        on_scan(event, context)

    # and logs why, and approves nothing
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any(str(r.msg).startswith("malformed event rejected") for r in errors)
    assert world.tags(repo, digest) == ["v1"]
    assert world.notifications() == []


@pytest.mark.parametrize("name", [
    "ecr-image-delete", "ecr-image-push-failed", "ecr-image-action-storage-class",
    "ecr-replication-action", "ecr-referrer-action", "ecr-scan-resource-change",
])
def test_events_not_for_us_are_ignored_with_a_reason(world: World, context: Any,
                                                     name: str) -> None:
    # Given a handler watching its AWS calls
    calls: list[str] = []
    world.session.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
    runtime.gatekeeper.cache_clear()

    # When an event of another kind reaches it
    result = on_push(load_event(name), context)

    # Then it is ignored with a reason, without touching AWS
    assert result["status"] == "ignored"
    assert result["reason"]
    assert calls == []


def test_scan_event_sent_to_push_handler_is_ignored(world: World, context: Any) -> None:
    result = on_push(load_event("ecr-image-scan-complete"), context)
    assert result["status"] == "ignored"
    assert "delivered to a handler for push" in result["reason"]


def test_broken_published_policy_never_approves(world: World, context: Any) -> None:
    # Given a published policy that does not validate
    world.publish_policy("version: 1\ndefault:\n  max_findings: {CRITICAL: lots}\n")
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-clean")

    # When a scan event arrives, Then the handler fails with a located error
    with pytest.raises(PolicyError, match=r"policy.yaml:3: default.max_findings.CRITICAL"):
        on_scan(scan_event(repo, digest), context)

    # and the image is neither tagged nor recorded
    assert world.tags(repo, digest) == ["v1"]
    assert world.gatekeeper().store.get(repo, digest) is None


# --- crash recovery and races -------------------------------------------------------------------

def test_failed_publish_is_completed_by_the_retry(world: World, context: Any) -> None:
    # Given SNS failing once
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    failures = {"left": 1}

    def flaky_publish(**_: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "Publish")

    world.session.events.register("before-call.sns.Publish", flaky_publish)
    gatekeeper = world.gatekeeper()
    event = parse_event(scan_event(repo, digest))

    # When the first delivery fails after tagging, and EventBridge/Lambda retries it
    with pytest.raises(ClientError):
        gatekeeper.handle(event)
    record = gatekeeper.store.get(repo, digest)
    assert record is not None and not record.settled
    retried = gatekeeper.handle(event)

    # Then the retry finishes the work: one notification, the right tags, a settled record
    assert retried.status == "judged"
    assert len(world.notifications()) == 1
    assert world.tags(repo, digest) == sorted(["v1", quarantined(digest)])
    record = gatekeeper.store.get(repo, digest)
    assert record is not None and record.settled


def test_concurrent_writer_is_detected_and_the_work_redone(world: World) -> None:
    # Given another delivery that commits between our read and our write
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    event = parse_event(scan_event(repo, digest))
    racer = world.gatekeeper()
    state = {"raced": False}

    def race(**_: Any) -> None:
        if not state["raced"]:
            state["raced"] = True
            racer.handle(event)

    world.session.events.register("before-call.dynamodb.TransactWriteItems", race)
    ours = world.gatekeeper()

    # When our delivery tries to commit
    result = ours.handle(event)

    # Then it notices, re-reads, and finds nothing left to do: one notification in all
    assert result.status == "unchanged"
    assert len(world.notifications()) == 1


# --- observability ------------------------------------------------------------------------------

def test_each_verdict_is_a_metric_and_logs_carry_the_event_id(world: World, context: Any,
                                                               capsys: Any) -> None:
    # Given a quarantinable image
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    event = scan_event(repo, digest)

    # When its scan event is handled
    on_scan(event, context)

    # Then an EMF metric counts the quarantine, and the correlation id is the event's id
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines()
           if "_aws" in line]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"]
             for m in d["Metrics"]}
    assert {"ImagesQuarantined", "VerdictChanges"} <= names
    assert emf[-1]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EcrScanGatekeeper"
    from gatekeeper.observability import logger
    assert logger.get_correlation_id() == event["id"]


def test_failures_are_counted_and_logged_before_they_reach_the_dlq(world: World, context: Any,
                                                                  caplog: Any) -> None:
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    with pytest.raises(ScanNotReady):
        on_scan(scan_event(repo, digest), context)
    assert any("event failed" in str(r.msg) for r in caplog.records if r.levelname == "ERROR")


# --- enforcement: archive ---------------------------------------------------------------------

def test_archive_enforcement_archives_a_quarantine_and_restores_an_approval(
        world: World, context: Any) -> None:
    # Given a policy that archives quarantined images of team-a, and ECR's storage-class API
    # (which moto does not model) answered by a hook that records each request
    world.publish_policy(STRICT + "  enforcement: archive\n")
    calls: list[dict[str, Any]] = []

    def storage_class(params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        from botocore.awsrequest import AWSResponse
        calls.append(json.loads(params["body"]))
        return AWSResponse("https://ecr", 200, {}, None), {"imageStatus": "ARCHIVED"}

    world.session.events.register("before-call.ecr.UpdateImageStorageClass", storage_class)
    runtime.gatekeeper.cache_clear()
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")

    # When the image is quarantined, Then it is tagged and archived (pulls now fail)
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest), context)
    assert [c["targetStorageClass"] for c in calls] == ["ARCHIVE"]
    assert calls[0]["imageId"] == {"imageDigest": digest}
    assert world.gatekeeper().store.get(repo, digest).archived

    # When a duplicate scan event arrives, Then nothing is archived twice
    on_scan(scan_event(repo, digest), context)
    assert len(calls) == 1

    # When a rescan approves it, Then it is restored and tagged approved
    world.scanned(repo, digest, "basic-clean")
    on_scan(scan_event(repo, digest), context)
    assert [c["targetStorageClass"] for c in calls] == ["ARCHIVE", "STANDARD"]
    assert not world.gatekeeper().store.get(repo, digest).archived
    assert world.tags(repo, digest) == sorted(["v1", approved(digest)])


def test_tag_enforcement_never_touches_the_storage_class(world: World, context: Any) -> None:
    calls: list[str] = []
    world.session.events.register("before-call.ecr.UpdateImageStorageClass",
                                  lambda **_: calls.append("called"))
    runtime.gatekeeper.cache_clear()
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    on_scan(scan_event(repo, digest), context)
    assert calls == []
