"""The operator commands across an organization's accounts, in-process against moto.

The hub is the world's stack (account 123456789012, us-east-1; see test_organization): its
table holds its own images under their original keys and member accounts' images under keys
naming their account and Region. ``status``, ``verify`` and ``reevaluate`` name a member's
image by its URI or by ``--account``/``--region``, and read that account's ECR through the
spoke role (moto's STS hands out credentials of the role's account).
"""

from __future__ import annotations

import json
from typing import Any

from functions.on_reevaluate.app import handler as on_reevaluate
from functions.on_scan.app import handler as on_scan
from gatekeeper.domain.scope import Scope
from tests.integration.test_cli_operator import gatekeeper
from tests.integration.test_organization import (
    A_EAST,
    A_WEST,
    B_EAST,
    HOME,
    Org,
    event_in,
    org,
    sqs_batch,
)
from tests.support import approved, quarantined, scan_event

__all__ = ["gatekeeper", "org"]  # fixtures

REPO = "team/app"


def uri(scope: Scope, reference: str) -> str:
    return f"{scope.account}.dkr.ecr.{scope.region}.amazonaws.com/{reference}"


def judged(org: Org, context: Any, scope: Scope, findings: str, repo: str = REPO,
           tag: str = "v1") -> str:
    """An image pushed to ``scope`` and judged by the hub on its scan event; its digest."""
    digest = org.push(scope, repo, tag, seed=f"{scope}/{repo}:{tag}")
    org.scanned(scope, repo, digest, findings)
    on_scan(event_in(scope, scan_event(repo, digest, tags=(tag,))), context)
    return digest


def judged_at_home(org: Org, context: Any, findings: str = "basic-clean") -> str:
    """An image of the hub's own account and Region, judged as a single-account stack does
    (its record written by the home store: no account or Region on it)."""
    world = org.world
    digest = world.push(world.repository("team-a/web"), "v1")
    world.scanned("team-a/web", digest, findings)
    on_scan(scan_event("team-a/web", digest), context)
    return digest


# --- status and verify, by URI and by --account/--region --------------------------------------

def test_status_and_verify_look_in_the_account_and_region_the_image_names(
        org: Org, context: Any, gatekeeper: Any) -> None:
    # Given the same repository and tag in account A (eu-west-1, clean) and account B
    # (us-east-1, a CRITICAL finding)
    a_digest = judged(org, context, A_WEST, "basic-clean")
    b_digest = judged(org, context, B_EAST, "basic-critical")

    # When account A's image is asked for by its URI (what deploy tooling has)
    status = gatekeeper("status", uri(A_WEST, f"{REPO}:v1"))
    verified = gatekeeper("verify", uri(A_WEST, f"{REPO}@{a_digest}"))

    # Then it is A's verdict, read from A's ECR and A's keys, and the output says where
    assert status.code == 0, status.err
    assert f"{REPO}@{a_digest} in account 111111111111 (eu-west-1)" in status.out
    assert "  account:     111111111111, Region eu-west-1" in status.out
    assert "verdict:     APPROVED, settled" in status.out
    assert f"marker:      {approved(a_digest)} (on the image)" in status.out
    assert verified.code == 0, verified.err
    assert verified.out.startswith(f"approved: {REPO}@{a_digest} in account 111111111111 "
                                   "(eu-west-1)")

    # When account B's image is asked for by --account and --region (same name, other digest)
    status = gatekeeper("status", f"{REPO}:v1", "--account", B_EAST.account, "--region",
                        B_EAST.region, "--format", "json")
    refused = gatekeeper("verify", f"{REPO}:v1", "--account", B_EAST.account)

    # Then it is B's image and verdict (--region defaults to the stack's), refused by verify
    assert status.code == 0, status.err
    document = json.loads(status.out)
    assert (document["account"], document["region"], document["digest"]) == (
        B_EAST.account, B_EAST.region, b_digest)
    assert document["verdict"]["state"] == "QUARANTINED"
    assert document["tags"] == sorted(["v1", quarantined(b_digest)])
    assert refused.code == 1
    assert refused.err.startswith(f"not approved: quarantined: {REPO}@{b_digest} in account "
                                  "222222222222 (us-east-1)")

    # When a name is asked for in an account and Region where it does not exist
    elsewhere = gatekeeper("status", uri(A_EAST, f"{REPO}:v1"))

    # Then it is not found there (never answered from another account's image)
    assert elsewhere.code == 2
    assert "repository team/app not found in account 111111111111 (us-east-1)" in elsewhere.err


def test_the_home_scope_reads_and_queues_items_written_before_organization_mode(
        org: Org, context: Any, gatekeeper: Any) -> None:
    # Given an image judged by the home store: its item has the original key and no scope
    digest = judged_at_home(org, context)
    item = org.world.session.client("dynamodb").get_item(
        TableName=org.world.config.table_name,
        Key={"pk": {"S": f"IMAGE#team-a/web@{digest}"}, "sk": {"S": "VERDICT"}})["Item"]
    assert "account" not in item and "region" not in item

    # When it is asked for with the hub's account and Region named, by flags and by URI, and
    # the hub's account is listed
    status = gatekeeper("status", f"team-a/web@{digest}", "--account", HOME.account,
                        "--region", HOME.region, "--format", "json")
    verified = gatekeeper("verify", uri(HOME, f"team-a/web@{digest}"))
    listed = gatekeeper("status", "--account", HOME.account)

    # Then the old item is the home scope's, as without any of these options
    assert status.code == 0, status.err
    document = json.loads(status.out)
    assert (document["account"], document["region"]) == (None, None)  # the stack's own
    assert document["verdict"]["state"] == "APPROVED"
    assert verified.code == 0, verified.err
    assert verified.out.startswith(f"approved: team-a/web@{digest} (policy")
    assert listed.code == 0, listed.err
    assert f"123456789012  us-east-1       team-a/web@{digest}  APPROVED" in listed.out

    # When the hub's own account is backfilled
    run = gatekeeper("reevaluate", "--account", HOME.account, "--region", HOME.region)

    # Then its request names no account (the home scope), as the sweeper's do
    assert run.code == 0, run.err
    [request] = org.queued()
    assert (request["repository"], request["digest"]) == ("team-a/web", digest)
    assert "account" not in request and "region" not in request


# --- status --account: an account's verdicts ---------------------------------------------------

def test_status_account_lists_that_account_s_verdicts_in_each_region(
        org: Org, context: Any, gatekeeper: Any) -> None:
    # Given account A's images in two Regions and account B's image
    east = judged(org, context, A_EAST, "basic-clean", repo="team/api")
    west = judged(org, context, A_WEST, "basic-critical")
    judged(org, context, B_EAST, "basic-clean")

    # When account A's verdicts are listed, then those of one of its Regions (the hub's own
    # Region named too, as when the environment's is another)
    every = gatekeeper("status", "--account", A_EAST.account)
    one = gatekeeper("status", "--account", A_WEST.account, "--region", A_WEST.region,
                     "--hub-region", HOME.region, "--format", "json")

    # Then each names its account and Region, and no other account's appears
    assert every.code == 0, every.err
    lines = every.out.splitlines()
    assert sorted(lines[:-1]) == sorted([
        f"111111111111  us-east-1       team/api@{east}  APPROVED  " + _decided(lines, east),
        f"111111111111  eu-west-1       team/app@{west}  QUARANTINED  " + _decided(lines, west),
    ])
    assert lines[-1] == "2 verdict(s) recorded in account 111111111111 (every Region)"
    document = json.loads(one.out)
    assert [(r["account"], r["region"], r["digest"], r["verdict"]["state"])
            for r in document["records"]] == [
        (A_WEST.account, A_WEST.region, west, "QUARANTINED")]

    # When an account with no verdicts is listed, Then it says so, exit 1
    none = gatekeeper("status", "--account", "444444444444")
    assert none.code == 1
    assert "0 verdict(s) recorded in account 444444444444" in none.out


def _decided(lines: list[str], digest: str) -> str:
    [line] = [line for line in lines if digest in line]
    return line.rsplit("  ", 1)[1]


# --- reevaluate --account: backfilling one account ----------------------------------------------

def test_reevaluate_account_queues_exactly_that_account_s_images_with_their_scope(
        org: Org, context: Any, gatekeeper: Any) -> None:
    # Given account A with judged images in two Regions and one image pushed before its
    # spoke existed (never seen by the hub), and account B's image
    east = judged(org, context, A_EAST, "basic-clean")
    west = judged(org, context, A_WEST, "basic-clean")
    unseen = org.push(A_WEST, "team/old", "v0", seed="pushed before the spoke")
    org.scanned(A_WEST, "team/old", unseen, "basic-critical")
    judged(org, context, B_EAST, "basic-clean")

    # When account A is backfilled (a dry run first)
    dry = gatekeeper("reevaluate", "--account", A_EAST.account, "--dry-run")
    assert dry.code == 0, dry.err
    assert org.queued() == []
    assert "dry run: 3 image(s)" in dry.out
    run = gatekeeper("reevaluate", "--account", A_EAST.account)

    # Then one request per image of account A, in either Region, names its account and Region
    assert run.code == 0, run.err
    queued = org.queued()
    assert sorted((r["account"], r["region"], r["repository"], r["digest"], r["trigger"])
                  for r in queued) == sorted([
        (A_EAST.account, A_EAST.region, REPO, east, "operator"),
        (A_WEST.account, A_WEST.region, REPO, west, "operator"),
        (A_WEST.account, A_WEST.region, "team/old", unseen, "operator"),
    ])
    assert f"team/old ({A_WEST.account} {A_WEST.region})" in run.out
    assert "never judged" in run.out

    # When the hub's re-evaluation function takes them
    outcome = on_reevaluate(sqs_batch(queued), context)

    # Then the image it never saw is judged and marked in its own account
    assert outcome["batchItemFailures"] == []
    assert quarantined(unseen) in org.tags(A_WEST, "team/old", unseen)
    record = org.store().scoped(A_WEST).get("team/old", unseen)
    assert record is not None and record.state == "QUARANTINED"

    # When only account A's eu-west-1 is backfilled, Then only its images are queued
    assert gatekeeper("reevaluate", "--account", A_WEST.account, "--region",
                      A_WEST.region).code == 0
    assert sorted(r["digest"] for r in org.queued()) == sorted([west, unseen])


# --- malformed choices ------------------------------------------------------------------------

IMAGE = f"{REPO}:v1"


MALFORMED = [
    (["status", IMAGE, "--account", "12345"], "--account '12345': not an AWS account id"),
    (["verify", IMAGE, "--account", "1111111111112"], "not an AWS account id (12 digits)"),
    (["status", IMAGE, "--account", A_WEST.account, "--region", "Europe"],
     "--region 'Europe': not an AWS Region name"),
    (["verify", IMAGE, "--hub-region", "us_east_1"], "--hub-region 'us_east_1': not an AWS"),
    (["status", "12345.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1"],
     "'12345.dkr.ecr.eu-west-1.amazonaws.com' is not an Amazon ECR registry host"),
    (["verify", "111111111111.dkr.ecr.moon.amazonaws.com/team/app:v1"],
     "'moon' is not an AWS Region name"),
    (["status", uri(A_WEST, IMAGE), "--account", B_EAST.account],
     "the image URI names account 111111111111, --account 222222222222: which one?"),
    (["verify", uri(A_WEST, IMAGE), "--region", "us-east-1"],
     "the image URI names Region eu-west-1, --region us-east-1: which one?"),
    (["reevaluate", "--account", "abc"], "--account 'abc': not an AWS account id"),
    (["reevaluate", "--account", A_WEST.account, "--region", "west"], "--region 'west'"),
    (["status"], "name an IMAGE, or --account ID to list an account's verdicts"),
    (["status", IMAGE, "--spoke-role-name", "no spaces"], "not an IAM role name prefix"),
    (["verify", uri(A_WEST, IMAGE), "--api", "http://127.0.0.1:9/"],
     "the verdict API answers for the stack's own account and Region only"),
]


def test_a_malformed_account_region_or_uri_exits_2_with_the_reason(
        org: Org, gatekeeper: Any) -> None:
    for argv, message in MALFORMED:
        # Given the hub, When a command names an account, Region or URI that is not one (or
        # asks the verdict API about another account's image)
        run = gatekeeper(*argv)

        # Then: exit 2, one line saying what is wrong
        assert (run.code, message in run.err) == (2, True), (argv, run.err)
        assert len(run.err.strip().splitlines()) == 1, argv
    # and nothing was queued
    assert org.queued() == []
