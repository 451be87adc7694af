"""OpenVEX documents in the policy bucket, read with the published policy, through the real
handlers against moto: named files and a prefix, a broken document, a changed document."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.on_scan.app import handler as on_scan
from gatekeeper.adapters.policy_source import S3PolicySource
from gatekeeper.domain.policy import PolicyError
from tests.support import World, approved, quarantined, scan_event

POLICY = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0}\n"
DOC_ID = "https://vex.example.com/team-a/web/libwebp"


def statement(digest: str, status: str = "not_affected", **extra: Any) -> dict[str, Any]:
    """CVE-2023-4863 (the basic-critical sample's only CRITICAL, in libwebp) for the image."""
    body = {"vulnerability": {"name": "CVE-2023-4863"},
            "products": [{"@id": f"pkg:oci/web@{digest.replace(':', '%3A')}",
                          "subcomponents": [{"@id": "pkg:deb/debian/libwebp"}]}],
            "status": status}
    if status == "not_affected":
        body["justification"] = "vulnerable_code_not_in_execute_path"
    body.update(extra)
    return body


def document(*statements: dict[str, Any], stamp: str = "2026-11-30T09:00:00Z") -> bytes:
    return json.dumps({"@context": "https://openvex.dev/ns/v0.2.0", "@id": DOC_ID,
                       "author": "Team A <security@example.com>", "timestamp": stamp,
                       "version": 1, "statements": list(statements)}).encode()


def put(world: World, key: str, body: bytes) -> None:
    world.session.client("s3").put_object(Bucket=world.config.policy_bucket, Key=key,
                                          Body=body)


@pytest.fixture
def image(world: World) -> tuple[str, str]:
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    world.scanned(repo, digest, "basic-critical")
    return repo, digest


@pytest.mark.parametrize("where", ["vex: [vex/web.openvex.json]", "vex_prefix: vex/team-a/"])
def test_a_vex_statement_in_the_policy_bucket_approves_the_image(
        world: World, context: Any, image: tuple[str, str], where: str) -> None:
    # Given the image's only CRITICAL finding stated not_affected in a VEX document that the
    # published policy names (a file beside it, or a prefix of the bucket)
    repo, digest = image
    put(world, "vex/web.openvex.json" if "vex:" in where else "vex/team-a/web.json",
        document(statement(digest)))
    world.publish_policy(POLICY + where + "\n")
    # When the scan event arrives
    result = on_scan(scan_event(repo, digest), context)
    # Then the image is approved, and the notice says which document excepted the finding
    assert result["verdict"] == "APPROVED"
    assert world.tags(repo, digest) == sorted(["v1", approved(digest)])
    [note] = world.notifications()
    assert (f"CVE-2023-4863: excepted by VEX {DOC_ID}: not_affected "
            "(vulnerable_code_not_in_execute_path)") in note["Message"]


def test_an_affected_statement_changes_nothing(world: World, context: Any,
                                               image: tuple[str, str]) -> None:
    repo, digest = image
    put(world, "vex/web.openvex.json",
        document(statement(digest, "affected", action_statement="upgrade libwebp")))
    world.publish_policy(POLICY + "vex: [vex/web.openvex.json]\n")
    assert on_scan(scan_event(repo, digest), context)["verdict"] == "QUARANTINED"
    assert quarantined(digest) in world.tags(repo, digest)


def test_a_broken_vex_document_never_approves(world: World, context: Any,
                                              image: tuple[str, str]) -> None:
    # Given a VEX document under the prefix whose not_affected statement has no justification
    repo, digest = image
    broken = statement(digest)
    del broken["justification"]
    put(world, "vex/team-a/web.json", document(broken))
    world.publish_policy(POLICY + "vex_prefix: vex/\n")
    # When the scan event arrives, Then the handler fails naming the document and statement
    with pytest.raises(PolicyError, match=r"vex/team-a/web.json: statements\[0\].justification"):
        on_scan(scan_event(repo, digest), context)
    # and the image is neither tagged nor recorded
    assert world.tags(repo, digest) == ["v1"]
    assert world.gatekeeper().store.get(repo, digest) is None


def test_a_vex_document_the_functions_cannot_read_fails_the_policy(world: World) -> None:
    for where, message in (("vex: [vex/gone.json]", "vex/gone.json does not exist"),
                           ("vex: [elsewhere/web.json]", "under vex/ of the policy bucket only"),
                           ("vex_prefix: team-a/", "under vex/ of the policy bucket only")):
        # Given a published policy naming a VEX document missing, or outside vex/
        world.publish_policy(POLICY + where + "\n")
        # Then the policy is not used: a located error, as for a broken policy
        with pytest.raises(PolicyError, match=message):
            world.gatekeeper().policies.get()


def test_a_changed_vex_document_is_read_again_past_the_cache_age(world: World,
                                                                 image: tuple[str, str]) -> None:
    # Given a policy source whose cache is 60 s old at most, and a VEX document read with it
    _, digest = image
    now = [0.0]
    source = S3PolicySource(world.session.client("s3"), world.config.policy_bucket,
                            world.config.policy_key, clock=lambda: now[0])
    world.publish_policy(POLICY + "vex_prefix: vex/\n")
    put(world, "vex/web.json", document(statement(digest)))
    first = source.get()
    assert first.vex is not None and len(first.vex.documents) == 1
    # When the document changes (and the policy does not)
    put(world, "vex/web.json", document(statement(digest), statement(digest, "fixed")))
    # Then the cached statements hold until the cache's age, then the new ones apply
    assert source.get().vex is first.vex
    now[0] = 61.0
    again = source.get()
    assert source.unchanged == 1  # the policy object itself was not read again
    assert again.vex is not None and len(again.vex.documents[0].statements) == 2
    # and with nothing changed, the same statements are kept
    now[0] = 122.0
    assert source.get().vex is again.vex
