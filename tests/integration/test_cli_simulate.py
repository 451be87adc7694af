"""``gatekeeper policy simulate``, ``policy lint`` and ``policy push``'s confirmation, in-process
against moto: images pushed, scanned and judged through the functions, then policies tried."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from gatekeeper.adapters.ecr import EcrImages
from gatekeeper.domain.events import ImageEvent, parse_event
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.simulation import NotJudged
from gatekeeper_tools.cli import main
from gatekeeper_tools.cli.deployment import Deployment
from gatekeeper_tools.cli.simulate import read_each, recorded_images
from tests.integration.test_multiarch import push_index
from tests.support import World, make_world, push_event, scan_event

PUBLISHED = """
    version: 1
    default:
      max_findings: {CRITICAL: 0, HIGH: 0}
      warn_findings: {UNTRIAGED: 0}
    """
STRICTER = """
    version: 1
    default:
      max_findings: {CRITICAL: 0, HIGH: 0, MEDIUM: 0}
    """
LOOSER = """
    version: 1
    default:
      max_findings: {CRITICAL: 0, HIGH: 5}
      warn_findings: {UNTRIAGED: 0}
    """


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Fleet:
    world: World
    digests: dict[str, str]  # "repository:tag" -> digest
    tmp: Path

    def policy(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return str(path)


@pytest.fixture
def gatekeeper(capsys: Any) -> Any:
    def run(*argv: str) -> Run:
        capsys.readouterr()  # only this command's output
        code = main(list(argv))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def test_an_image_index_flips_with_its_platform_images(world: World, context: Any,
                                                       gatekeeper: Any, tmp_path: Path) -> None:
    # Given an image index over two platform images (amd64 with a HIGH finding, arm64 clean),
    # judged by the functions: quarantined with its amd64 image (runs first in this module:
    # its own moto account, before the module's fleet)
    repo = world.repository("team-c/multi")
    amd64 = world.push(repo, "amd64", seed="multi-amd64")
    arm64 = world.push(repo, "arm64", seed="multi-arm64")
    index = push_index(world, repo, "v1", {"amd64": amd64, "arm64": arm64})
    on_push(push_event(repo, index, "v1"), context)
    for digest, findings in ((amd64, "basic-high-only"), (arm64, "basic-clean")):
        world.scanned(repo, digest, findings)
        on_scan(scan_event(repo, digest, tags=()), context)
    candidate = tmp_path / "looser.yaml"
    candidate.write_text(textwrap.dedent(LOOSER).lstrip("\n"))

    # When the looser candidate is simulated
    run = gatekeeper("policy", "simulate", str(candidate), "--format", "json")

    # Then the index would be approved with its amd64 image, its reasons naming the platforms
    assert run.code == 1, run.err
    changes = {c["digest"]: c for c in json.loads(run.out)["changes"]}
    assert set(changes) == {amd64, index}
    assert changes[index]["change"] == "to_approved"
    assert changes[index]["candidate"]["reasons"][0].startswith(
        f"linux/amd64 ({amd64[:19]}): APPROVED")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Given the PUBLISHED policy and five images judged through the gatekeeper under it:
    team-a/web:v1 (a CRITICAL), team-a/web:v2 (a HIGH), team-a/api:v1 (MEDIUM and LOW),
    team-b/app:v1 (MEDIUM and an UNTRIAGED: approved with warnings), and team-b/old:v1
    (clean), deleted from ECR since (its verdict still recorded); the CLI finds them through
    the GATEKEEPER_* environment. Built once for the module: the tests only read it (the push
    tests publish under keys of their own)."""
    with mock_aws(), pytest.MonkeyPatch.context() as env:
        world = make_world(signed=False)
        for name, value in world.environment().items():
            env.setenv(name, value)
        world.publish_policy(textwrap.dedent(PUBLISHED).lstrip("\n"))
        judge = world.gatekeeper()
        images = [("team-a/web", "v1", "basic-critical"),
                  ("team-a/web", "v2", "basic-high-only"), ("team-a/api", "v1", "basic-clean"),
                  ("team-b/app", "v1", "enhanced-medium"), ("team-b/old", "v1", "basic-clean")]
        digests: dict[str, str] = {}
        for repository, tag, findings in images:
            if not any(key.startswith(repository + ":") for key in digests):
                world.repository(repository)
            digest = world.push(repository, tag, seed=f"{repository}:{tag}")
            world.scanned(repository, digest, findings)
            event = parse_event(scan_event(repository, digest, tags=(tag,)))
            assert isinstance(event, ImageEvent)
            judge.handle(event)
            digests[f"{repository}:{tag}"] = digest
        world.ecr.batch_delete_image(repositoryName="team-b/old",
                                     imageIds=[{"imageDigest": digests["team-b/old:v1"]}])
        yield Fleet(world, digests, tmp_path_factory.mktemp("policies"))


# --- simulate -------------------------------------------------------------------------------

def test_a_stricter_candidate_lists_what_it_would_quarantine(fleet: Fleet,
                                                             gatekeeper: Any) -> None:
    # When a candidate that also limits MEDIUM findings is simulated
    run = gatekeeper("policy", "simulate", fleet.policy("stricter.yaml", STRICTER))

    # Then it exits 1 and names the two approved images it would quarantine, with the reason
    assert run.code == 1, run.err
    flips = run.out.split("would be QUARANTINED (approved now): 2\n")[1].split("\n\n")[0]
    api, app = fleet.digests["team-a/api:v1"], fleet.digests["team-b/app:v1"]
    assert f"team-a/api@{api[:19]} (v1): APPROVED -> QUARANTINED [default]" in flips
    assert f"team-b/app@{app[:19]} (v1): APPROVED_WITH_WARNINGS -> QUARANTINED" in flips
    assert "MEDIUM: 1 finding over the limit of 0 (CVE-2019-5188)" in flips
    # And the image gone from ECR is listed apart, never counted as approved
    old = fleet.digests["team-b/old:v1"]
    assert f"not judged (never counted as approved): 1\n  team-b/old@{old[:19]} (v1): " \
           "gone from ECR" in run.out
    assert run.out.rstrip().endswith(
        "2 would be quarantined, 0 would be approved, 0 with warnings changed, "
        "2 unchanged, 1 not judged")
    assert "team-a/web" in run.out.split("REPOSITORY")[1]


def test_a_looser_candidate_as_json(fleet: Fleet, gatekeeper: Any) -> None:
    # When a candidate allowing five HIGH findings is simulated, as JSON
    run = gatekeeper("policy", "simulate", fleet.policy("looser.yaml", LOOSER),
                     "--format", "json")

    # Then the image with one HIGH finding would be approved; the CRITICAL one stays
    assert run.code == 1, run.err
    document = json.loads(run.out)
    assert document["flips"] == 1
    [change] = document["changes"]
    assert change["digest"] == fleet.digests["team-a/web:v2"]
    assert (change["change"], change["recorded"]) == ("to_approved", "QUARANTINED")
    assert change["published"]["reasons"] == [
        "HIGH: 1 finding over the limit of 0 (CVE-2023-38545)"]
    assert change["candidate"]["outcome"] == "APPROVED"
    assert document["repositories"]["team-a/web"] == {
        "to_quarantined": 0, "to_approved": 1, "warnings": 0, "unchanged": 1, "not_judged": 0}
    assert document["not_judged"] == [{"repository": "team-b/old",
                                       "digest": fleet.digests["team-b/old:v1"],
                                       "reason": "gone from ECR"}]
    assert document["published"]["version"] != "builtin-strict"


def test_the_repository_filter_and_nothing_to_flip(fleet: Fleet, gatekeeper: Any) -> None:
    # When the stricter candidate is simulated on team-a's web repository only
    run = gatekeeper("policy", "simulate", fleet.policy("stricter.yaml", STRICTER),
                     "--repository", "team-a/w*", "--progress")

    # Then nothing would flip there (exit 0), other repositories are not read
    assert run.code == 0, run.err
    assert "team-a/api" not in run.out and "team-b" not in run.out
    assert run.out.rstrip().endswith("0 would be quarantined, 0 would be approved, "
                                     "0 with warnings changed, 2 unchanged, 0 not judged")
    # And the progress line went to stderr
    assert "simulate: 2/2 image(s) read" in run.err


def test_a_broken_candidate_is_a_located_error(fleet: Fleet, gatekeeper: Any) -> None:
    broken = fleet.policy("broken.yaml", "version: 1\ndefault:\n  max_findings: {HUGE: 1}\n")
    run = gatekeeper("policy", "simulate", broken)
    assert (run.code, run.out) == (2, "")
    assert f"{broken}:3: default.max_findings" in run.err


def test_findings_that_cannot_be_read_are_listed_never_approved(fleet: Fleet) -> None:
    # Given ECR refusing to give one image's findings (moto cannot refuse: an event hook does)
    ecr = fleet.world.session.client("ecr")
    refused = fleet.digests["team-a/api:v1"]

    def refuse(params: dict[str, Any], **_: Any) -> None:
        if params.get("imageId", {}).get("imageDigest") == refused:
            raise ClientError({"Error": {"Code": "AccessDeniedException",
                                         "Message": "not allowed"}}, "DescribeImageScanFindings")

    ecr.meta.events.register("before-parameter-build.ecr.DescribeImageScanFindings", refuse)
    records = recorded_images(Deployment(
        session=fleet.world.session, table=fleet.world.config.table_name, topic_arn=None,
        policy_bucket=None, policy_key="policy.yaml", dlq_url=None, markers=MarkerScheme()),
        ["team-a/*"])

    # When the recorded images of team-a are read and judged (two at a time)
    results = read_each(lambda _record: EcrImages(ecr), records,
                        lambda record, scan: scan.status, workers=2)

    # Then the refused one is not judged, with ECR's reason; the others are read
    assert sorted(r for r in results if isinstance(r, str)) == ["COMPLETE", "COMPLETE"]
    [missing] = [r for r in results if isinstance(r, NotJudged)]
    assert (missing.digest, missing.tags) == (refused, ("v1",))
    assert missing.reason.startswith("findings unreadable: ClientError: An error occurred "
                                     "(AccessDeniedException)")


# --- push asks first ------------------------------------------------------------------------

class Terminal(io.StringIO):
    """Standard input on a terminal, where the operator types ``answer``."""

    def isatty(self) -> bool:
        return True


def versions(fleet: Fleet, key: str) -> int:
    world = fleet.world
    listed = world.session.client("s3").list_object_versions(
        Bucket=world.config.policy_bucket, Prefix=key)
    return len(listed.get("Versions", []))


def test_push_shows_the_simulation_and_asks_on_a_terminal(
        fleet: Fleet, gatekeeper: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a policy key nothing is published under yet (the built-in strict policy applies)
    stricter, key = fleet.policy("stricter.yaml", STRICTER), "asked/policy.yaml"

    # When the stricter policy is pushed on a terminal and the operator says no
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    declined = gatekeeper("policy", "push", stricter, "--key", key)

    # Then the summary and the question were shown, and nothing was published
    assert (declined.code, declined.out) == (1, "")
    assert "2 would be quarantined, 0 would be approved" in declined.err
    assert "most flips: team-a/api (1 to quarantined, 0 to approved); team-b/app" in declined.err
    assert f"publish {stricter} to s3://gatekeeper-policy/{key}? [y/N] " in declined.err
    assert declined.err.endswith("not published\n") and versions(fleet, key) == 0

    # When the operator says yes
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    accepted = gatekeeper("policy", "push", stricter, "--key", key)

    # Then it is published
    assert accepted.code == 0, accepted.err
    assert accepted.out.startswith(f"published {stricter} to s3://gatekeeper-policy/{key} ")
    assert versions(fleet, key) == 1


def test_push_without_a_terminal_needs_yes(fleet: Fleet, gatekeeper: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    stricter, key = fleet.policy("stricter.yaml", STRICTER), "pipeline/policy.yaml"

    # When pushed from a pipeline (no terminal) without --yes, Then it is refused
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    refused = gatekeeper("policy", "push", stricter, "--key", key)
    assert (refused.code, refused.out) == (2, "")
    assert refused.err == ("gatekeeper policy push: not published: no terminal to confirm on; "
                           "pass --yes to publish without asking (pipelines)\n")
    assert versions(fleet, key) == 0

    # When pushed with --yes, Then the summary is still shown (the pipeline's log) and it is
    # published
    run = gatekeeper("policy", "push", stricter, "--key", key, "--yes")
    assert run.code == 0, run.err
    assert run.err.startswith(f"tried {stricter} against the published policy")
    assert versions(fleet, key) == 1

    # When no verdict table is named, Then it says how to name one, or to skip the simulation
    monkeypatch.delenv("GATEKEEPER_TABLE")
    no_table = gatekeeper("policy", "push", stricter, "--key", key, "--yes")
    assert no_table.code == 2 and no_table.err.endswith(
        "or --no-simulate to publish without trying the file on the recorded images\n")
    skipped = gatekeeper("policy", "push", stricter, "--key", key, "--yes", "--no-simulate")
    assert (skipped.code, skipped.err) == (0, "") and versions(fleet, key) == 2


# --- lint -----------------------------------------------------------------------------------

def test_lint_lists_expired_expiring_and_unused_exceptions(fleet: Fleet,
                                                           gatekeeper: Any) -> None:
    # Given a policy whose exceptions: one used (team-a/web:v1's CRITICAL), one expiring in
    # three days (used: team-a/web:v2's HIGH), one matching no finding, one for a finding
    # only in repositories it does not cover, one expired
    today = datetime.now(UTC).date()

    def day(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    path = fleet.policy("exceptions.yaml", f"""
        version: 1
        default:
          max_findings: {{CRITICAL: 0, HIGH: 0}}
        exceptions:
          - {{id: CVE-2023-4863, expires: {day(90)}, reason: r, owner: a@example.com}}
          - {{id: CVE-2023-38545, expires: {day(3)}, reason: r, owner: a@example.com}}
          - {{id: CVE-2099-0001, expires: {day(90)}, reason: r, owner: b@example.com}}
          - {{id: CVE-2019-5188, expires: {day(90)}, reason: r, owner: c@example.com,
              repositories: ["team-z/*"]}}
          - {{id: CVE-2023-5363, expires: {day(-10)}, reason: r, owner: d@example.com}}
        """)

    # When linted
    run = gatekeeper("policy", "lint", path)

    # Then each problem is listed once, and exit 0 (without --strict)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == (f"{path}: 5 exception(s); 1 expired, 1 expiring within 14 day(s), "
                        "2 matching no finding of the 5 recorded image(s)")
    assert lines[1].split()[:2] == ["expiring", "CVE-2023-38545"]
    assert lines[2].split()[:2] == ["unused", "CVE-2099-0001"]
    assert lines[3].split()[:5] == ["unused", "CVE-2019-5188", "for", "team-z/*",
                                    "(exceptions[3],"]
    assert lines[4].split()[:2] == ["expired", "CVE-2023-5363"] and "ago)" in lines[4]
    assert "gone from ECR" in run.out  # the deleted image could not be judged: said

    # When linted strictly, as JSON
    strict = gatekeeper("policy", "lint", path, "--strict", "--format", "json")
    assert strict.code == 1
    document = json.loads(strict.out)
    assert [e["problems"] for e in document["exceptions"]] == [
        [], ["expiring"], ["unused"], ["unused"], ["expired"]]

    # When linted offline with a wider window: dates only
    offline = gatekeeper("policy", "lint", path, "--offline", "--within", "2w", "--strict")
    assert offline.code == 1 and "unused" not in offline.out
    assert "usage not checked (--offline)" in offline.out
