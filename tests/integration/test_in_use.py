"""In use or not, on moto: Inspector's inUseCount / lastInUseAt on an image's enhanced findings
reach the record, the notice (subject, ``in_use`` attribute, text), the metrics and
``gatekeeper status``; a basic scan, and a record written before, leave it unknown."""

from __future__ import annotations

import json
from typing import Any

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.domain.findings import InUse
from gatekeeper_tools.cli import main
from tests.integration.test_notifications import attributes, received, subscribe
from tests.support import World, load_findings, push_event, scan_event

REPO = "team-a/web"


def in_use(count: int, last: str = "2026-11-30T12:00:00Z") -> dict[str, Any]:
    """The enhanced scan of a CRITICAL finding on an image ``count`` places run."""
    body = load_findings("enhanced-critical-in-use")
    image = body["imageScanFindings"]["enhancedFindings"][0]["resources"][0]["details"][
        "awsEcrContainerImage"]
    image["inUseCount"], image["lastInUseAt"] = count, last
    return body


def judge(world: World, context: Any, tag: str, findings: str | dict[str, Any]) -> str:
    digest = world.push(REPO, tag, seed=tag)
    on_push(push_event(REPO, digest, tag), context)
    world.scanned(REPO, digest, findings)
    on_scan(scan_event(REPO, digest, tags=(tag,)), context)
    return digest


def store(world: World) -> VerdictStore:
    return VerdictStore(world.session.client("dynamodb"), world.config.table_name)


def test_a_quarantined_image_in_use_is_the_alert_that_matters_most(
        world: World, context: Any, capsys: Any) -> None:
    # Given a subscriber that only wants images in use, and an image three places run
    world.repository(REPO)
    url = subscribe(world, {"in_use": ["true"]})
    capsys.readouterr()

    # When its enhanced scan finds a CRITICAL finding
    digest = judge(world, context, "v1", in_use(3))

    # Then the notice says so in its subject, attribute and text
    [note] = world.notifications()
    assert note["Subject"] == "[QUARANTINED, IN USE] team-a/web:v1"
    assert attributes(note)["in_use"] == "true"
    assert ("In use:       IN USE: running in 3 places, last seen 2026-11-30T12:00:00+00:00"
            in note["Message"])
    assert note["Document"]["in_use"] == {
        "count": 3, "last_at": "2026-11-30T12:00:00+00:00"}
    # And the filtered subscriber got it
    assert [n["Subject"] for n in received(world, url)] == [note["Subject"]]
    # And the record keeps it
    record = store(world).get(REPO, digest)
    assert record is not None and record.in_use is not None and record.in_use.count == 3
    # And it has its own metric
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"]
             for m in d["Metrics"]}
    assert {"ImagesQuarantined", "QuarantinedInUse"} <= names

    # And `gatekeeper status` says where it runs
    capsys.readouterr()
    assert main(["status", f"{REPO}:v1"]) == 0
    assert "in use:      IN USE: running in 3 places" in capsys.readouterr().out


def test_a_basic_scan_leaves_the_use_unknown(world: World, context: Any,
                                             capsys: Any) -> None:
    # Given a subscriber filtering on in_use, and an image only basic-scanned
    world.repository(REPO)
    url = subscribe(world, {"in_use": ["true", "false"]})
    digest = judge(world, context, "v1", "basic-critical")

    # Then the notice has no in_use attribute (the filter never matches), no line, no metric
    [note] = world.notifications()
    assert note["Subject"] == "[QUARANTINED] team-a/web:v1"
    assert "in_use" not in attributes(note)
    assert "In use:" not in note["Message"]
    assert received(world, url) == []
    assert "QuarantinedInUse" not in capsys.readouterr().out
    # And the item holds no in_use attribute: the record reads unknown
    item = world.session.client("dynamodb").get_item(
        TableName=world.config.table_name,
        Key={"pk": {"S": f"IMAGE#{REPO}@{digest}"}, "sk": {"S": "VERDICT"}})["Item"]
    assert "in_use" not in item
    record = store(world).get(REPO, digest)
    assert record is not None and record.in_use is None
    capsys.readouterr()
    main(["status", f"{REPO}:v1"])
    assert "in use:      unknown (only enhanced scanning reports it)" in capsys.readouterr().out


def test_an_image_that_stops_running_updates_its_record_without_a_new_notice(
        world: World, context: Any) -> None:
    # Given a quarantined image running in 2 places
    world.repository(REPO)
    digest = judge(world, context, "v1", in_use(2))
    assert len(world.notifications()) == 1

    # When a later scan reports the same findings, the image no longer running
    world.scanned(REPO, digest, in_use(0, "2026-12-01T00:00:00Z"))
    result = on_scan(scan_event(REPO, digest, tags=("v1",)), context)

    # Then the verdict is unchanged (no notice), and the record says it is not in use
    assert result["status"] == "unchanged"
    assert len(world.notifications()) == 1
    record = store(world).get(REPO, digest)
    assert record is not None
    assert record.in_use == InUse.from_dict({"count": 0, "last_at": "2026-12-01T00:00:00Z"})
