"""Multi-architecture images: an image index follows the verdicts of its platform images."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper import runtime
from tests.support import World, load_event, push_event

INDEX = "application/vnd.oci.image.index.v1+json"


def push_index(world: World, repo: str, tag: str, platforms: dict[str, str]) -> str:
    """Push an OCI image index over the given platform images (plus an attestation)."""
    manifests = [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                  "size": 1024, "platform": {"os": "linux", "architecture": arch}}
                 for arch, digest in platforms.items()]
    attested = next(iter(platforms.values()))
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "digest": "sha256:" + "0" * 64, "size": 840,
                      "platform": {"os": "unknown", "architecture": "unknown"},
                      "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                      "vnd.docker.reference.digest": attested}})
    body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests})
    put = world.ecr.put_image(repositoryName=repo, imageManifest=body,
                              imageManifestMediaType=INDEX, imageTag=tag)
    return str(put["image"]["imageId"]["imageDigest"])


def scan(world: World, context: Any, repo: str, digest: str, findings: str) -> dict[str, Any]:
    world.scanned(repo, digest, findings)
    return on_scan(load_event("ecr-image-scan-complete", repository_name=repo,
                              image_digest=digest, image_tags=[]), context)


def state(world: World, repo: str, digest: str) -> str | None:
    record = world.gatekeeper().store.get(repo, digest)
    return record.state if record else None


def test_an_index_waits_for_its_platforms_then_follows_them(world: World, context: Any) -> None:
    # Given two platform images and the index over them, pushed before any scan
    repo = world.repository("team-a/web")
    amd64 = world.push(repo, "v1-amd64", seed="amd64")
    arm64 = world.push(repo, "v1-arm64", seed="arm64")
    index = push_index(world, repo, "v1", {"amd64": amd64, "arm64": arm64})

    # When the index's push event arrives, Then it waits for both platforms
    pushed = on_push(push_event(repo, index, "v1"), context)
    assert pushed["status"] == "pending"
    assert "linux/amd64" in pushed["reason"] and "linux/arm64" in pushed["reason"]

    # When amd64 is scanned clean, the index still waits for arm64
    scan(world, context, repo, amd64, "basic-clean")
    assert state(world, repo, index) == "PENDING"

    # When arm64 is scanned with a CRITICAL
    scan(world, context, repo, arm64, "basic-critical")

    # Then the index is quarantined with it, marked on its own digest, naming the platform
    assert state(world, repo, index) == "QUARANTINED"
    assert f"quarantined-{index[7:19]}" in world.tags(repo, index)
    record = world.gatekeeper().store.get(repo, index)
    assert record is not None
    assert any(r.startswith("linux/arm64") and "QUARANTINED" in r for r in record.reasons)
    assert record.trigger == "platform"
    subjects = [n["Subject"] for n in world.notifications()]
    assert "[QUARANTINED] team-a/web:v1" in subjects

    # When arm64 is fixed (a clean rescan), Then the index follows it to approved
    scan(world, context, repo, arm64, "basic-clean")
    assert state(world, repo, index) == "APPROVED"
    assert f"approved-{index[7:19]}" in world.tags(repo, index)
    assert f"quarantined-{index[7:19]}" not in world.tags(repo, index)


def test_an_index_pushed_after_its_platforms_were_judged_is_judged_at_once(
        world: World, context: Any) -> None:
    repo = world.repository("team-a/web")
    amd64 = world.push(repo, "v2-amd64", seed="amd64-2")
    arm64 = world.push(repo, "v2-arm64", seed="arm64-2")
    scan(world, context, repo, amd64, "basic-clean")
    scan(world, context, repo, arm64, "basic-clean")
    index = push_index(world, repo, "v2", {"amd64": amd64, "arm64": arm64})

    result = on_push(push_event(repo, index, "v2"), context)

    assert result["verdict"] == "APPROVED"
    assert f"approved-{index[7:19]}" in world.tags(repo, index)


def test_a_single_platform_push_costs_one_manifest_read(world: World, context: Any) -> None:
    # Given a plain image: the push reads its manifest once to see it is no index
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    calls: list[str] = []
    world.session.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
    runtime.gatekeeper.cache_clear()

    on_push(push_event(repo, digest, "v1"), context)

    assert calls.count("BatchGetImage") == 1
    assert calls == ["GetItem", "BatchGetImage", "DescribeImageScanFindings", "GetObject",
                     "PutItem"]


def test_a_failed_index_rejudge_is_finished_by_the_platform_events_retry(
        world: World, context: Any) -> None:
    # Given an index waiting for arm64, and DynamoDB failing the index's next commit once
    repo = world.repository("team-a/web")
    amd64 = world.push(repo, "v3-amd64", seed="amd64-3")
    arm64 = world.push(repo, "v3-arm64", seed="arm64-3")
    index = push_index(world, repo, "v3", {"amd64": amd64, "arm64": arm64})
    on_push(push_event(repo, index, "v3"), context)
    scan(world, context, repo, amd64, "basic-clean")
    failures = {"left": 1}

    def fail_index_commit(params: dict[str, Any], **_: Any) -> None:
        if failures["left"] and index in params["body"].decode():
            failures["left"] -= 1
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "boom"}},
                              "TransactWriteItems")

    world.session.events.register("before-call.dynamodb.TransactWriteItems", fail_index_commit)
    runtime.gatekeeper.cache_clear()

    # When arm64's scan event fails while re-judging the index, and Lambda retries it
    with pytest.raises(ClientError):
        scan(world, context, repo, arm64, "basic-critical")
    assert state(world, repo, index) == "PENDING"
    scan(world, context, repo, arm64, "basic-critical")

    # Then the retry finished the work: the index follows arm64, and arm64 was told once
    assert state(world, repo, index) == "QUARANTINED"
    about_arm64 = [n for n in world.notifications() if f"Digest:       {arm64}" in n["Message"]]
    assert [n["MessageAttributes"]["verdict"]["Value"] for n in about_arm64] == ["QUARANTINED"]
