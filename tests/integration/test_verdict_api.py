"""The verdict API on moto: the real handler invoked with the function URL event (payload
format 2.0, events/function-url-verdict-request.json) about images the real push and scan
handlers judged; every error answer; and arbitrary paths never answered with a 5xx."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.on_push.app import handler as on_push
from functions.on_scan.app import handler as on_scan
from functions.verdict_api.app import handler as verdict_api
from gatekeeper import runtime
from gatekeeper.config import VerdictApiConfig
from gatekeeper.domain import attestation
from tests.faults import THROTTLING, THROUGHPUT, FaultInjector, no_backoff
from tests.support import World, load_event, push_event, scan_event
from tests.unit.test_verdict_request import MALFORMED

EVENT = "function-url-verdict-request"
UNKNOWN_DIGEST = "sha256:" + "0" * 64

Invoke = Callable[..., dict[str, Any]]


def request_event(path: str, method: str = "GET") -> dict[str, Any]:
    """The recorded function URL event, asking ``path`` (as sent: still %-encoded)."""
    event = copy.deepcopy(load_event(EVENT))
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    return event


@pytest.fixture
def api(world: World, context: Any, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Given the verdict API function, its wiring on the world's session; returns a call that
    invokes its handler and answers (status, headers, parsed body)."""
    monkeypatch.setattr(runtime, "verdict_api", functools.cache(
        lambda: runtime.build_verdict_api(VerdictApiConfig.from_env(), world.session)))

    def invoke(path: str, method: str = "GET") -> dict[str, Any]:
        response = verdict_api(request_event(path, method), context)
        assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
        assert response["isBase64Encoded"] is False
        body = json.loads(response["body"]) if response["body"] else None
        return {"status": response["statusCode"], "headers": response["headers"], "body": body}

    return invoke


def judged(world: World, context: Any, repo: str, tag: str, findings: str) -> str:
    """An image pushed and scanned, judged by the real handlers; its digest."""
    if repo not in {r["repositoryName"] for r in world.ecr.describe_repositories()[
            "repositories"]}:
        world.repository(repo)
    digest = world.push(repo, tag, seed=f"{repo}:{tag}:{findings}")
    on_push(push_event(repo, digest, tag), context)
    world.scanned(repo, digest, findings)
    on_scan(scan_event(repo, digest, tags=(tag,)), context)
    return digest


# --- answers ---------------------------------------------------------------------------------

def test_the_recorded_event_is_a_function_url_request_for_a_verdict() -> None:
    # The fields the AWS Lambda documentation gives a function URL request (payload 2.0)
    event = load_event(EVENT)
    assert (event["version"], event["routeKey"], event["isBase64Encoded"]) == (
        "2.0", "$default", False)
    assert {"rawPath", "rawQueryString", "headers", "requestContext"} <= set(event)
    context = event["requestContext"]
    assert {"accountId", "apiId", "authorizer", "domainName", "http", "requestId", "time",
            "timeEpoch"} <= set(context)
    assert set(context["http"]) == {"method", "path", "protocol", "sourceIp", "userAgent"}
    assert context["authorizer"]["iam"]["userArn"].startswith("arn:aws:sts::")
    assert event["rawPath"] == context["http"]["path"]
    assert event["rawPath"].startswith("/v1/verdicts/")


def test_an_approved_image_by_digest_answers_its_verdict(world: World, context: Any,
                                                          api: Invoke) -> None:
    # Given an image the scan handler approved
    digest = judged(world, context, "team-a/web", "v1", "basic-clean")

    # When the API is asked for it by digest
    answer = api(f"/v1/verdicts/team-a/web@{digest}")

    # Then it answers 200 with the verdict document and the envelope the record holds (the
    # verdict as the stack's key signed it)
    assert answer["status"] == 200
    assert answer["headers"]["content-type"] == "application/json"
    body = answer["body"]
    assert set(body) == {"repository", "digest", "verdict", "status", "envelope"}
    assert (body["repository"], body["digest"]) == ("team-a/web", digest)
    record = world.gatekeeper().store.get("team-a/web", digest)
    assert record is not None and record.envelope is not None
    assert body["envelope"] == record.envelope
    assert body["envelope"]["payloadType"] == "application/vnd.in-toto+json"
    verdict = body["verdict"]
    assert verdict["schema"] == "gatekeeper.verdict/v1"
    assert (verdict["repository"], verdict["digest"]) == ("team-a/web", digest)
    assert verdict["outcome"] == "APPROVED"
    assert body["status"]["settled"] is True and body["status"]["gone"] is False
    assert verdict["verdict_revision"] >= 1
    assert verdict["policy_version"] and verdict["decided_at"]
    assert verdict["reasons"] == list(record.reasons)
    assert verdict["counts"] == record.counts
    # And the verdict is the signed predicate itself, field by field (one document)
    signed = attestation.read_statement(attestation.read_envelope(body["envelope"]))
    assert verdict == signed.predicate
    assert body["status"]["matched_rule"] == "default"
    assert body["status"]["trigger"] == "basic-scan"


def test_a_tag_is_resolved_to_the_digest_it_names_now(world: World, context: Any,
                                                      api: Invoke) -> None:
    # Given a quarantined image tagged v1
    digest = judged(world, context, "team-a/web", "v1", "basic-critical")

    # When the API is asked for team-a/web:v1
    answer = api("/v1/verdicts/team-a/web:v1")

    # Then it names the tag and the digest it resolved to, with the verdict's reasons
    assert answer["status"] == 200
    body = answer["body"]
    assert (body["repository"], body["tag"], body["digest"]) == ("team-a/web", "v1", digest)
    assert body["verdict"]["outcome"] == "QUARANTINED"
    assert "CRITICAL: 1 finding over the limit of 0 (CVE-2023-4863)" in body["verdict"][
        "reasons"]

    # and when v1 moves to another image, the same request answers that image
    other = judged(world, context, "team-a/web", "v1", "basic-clean")
    moved = api("/v1/verdicts/team-a/web:v1")["body"]
    assert (moved["digest"], moved["verdict"]["outcome"]) == (other, "APPROVED")


@pytest.mark.parametrize("path", [
    "/v1/verdicts/team-a/web%40{digest}",        # @ encoded
    "/v1/verdicts/team-a%2Fweb@{digest}",        # / encoded
    "/v1/verdicts/team-a%2fweb%40sha256%3a{hex}",  # everything encoded, lower-case escapes
])
def test_encoded_separators_name_the_same_image(world: World, context: Any, api: Invoke,
                                                path: str) -> None:
    digest = judged(world, context, "team-a/web", "v1", "basic-clean")
    answer = api(path.format(digest=digest, hex=digest.removeprefix("sha256:")))
    assert (answer["status"], answer["body"]["digest"]) == (200, digest)


def test_an_encoded_colon_names_a_tag(world: World, context: Any, api: Invoke) -> None:
    digest = judged(world, context, "team-a/web", "v1", "basic-clean")
    answer = api("/v1/verdicts/team-a/web%3Av1")
    assert (answer["status"], answer["body"]["tag"], answer["body"]["digest"]) == (
        200, "v1", digest)


def test_head_answers_the_status_without_a_body(world: World, context: Any,
                                                api: Invoke) -> None:
    digest = judged(world, context, "team-a/web", "v1", "basic-clean")
    assert api(f"/v1/verdicts/team-a/web@{digest}", "HEAD")["status"] == 200
    missing = api(f"/v1/verdicts/team-a/web@{UNKNOWN_DIGEST}", "HEAD")
    assert (missing["status"], missing["body"]) == (404, None)


# --- errors ----------------------------------------------------------------------------------

def assert_error(answer: dict[str, Any], status: int, code: str, *words: str) -> None:
    assert answer["status"] == status, answer
    assert answer["headers"]["content-type"] == "application/json"
    assert set(answer["body"]) == {"error"}
    error = answer["body"]["error"]
    assert set(error) == {"code", "message"}
    assert error["code"] == code
    assert "\n" not in error["message"]
    for word in words:
        assert word in error["message"], error["message"]


def test_an_unknown_repository_is_a_404(world: World, api: Invoke) -> None:
    assert_error(api("/v1/verdicts/no/such-repo:v1"), 404, "repository-not-found",
                 "no/such-repo")


def test_a_tag_that_does_not_exist_is_a_404(world: World, context: Any, api: Invoke) -> None:
    judged(world, context, "team-a/web", "v1", "basic-clean")
    assert_error(api("/v1/verdicts/team-a/web:v9"), 404, "tag-not-found", "team-a/web:v9")


def test_a_digest_without_a_verdict_is_a_404(world: World, context: Any, api: Invoke) -> None:
    assert_error(api(f"/v1/verdicts/team-a/web@{UNKNOWN_DIGEST}"), 404, "no-verdict",
                 UNKNOWN_DIGEST)


def test_an_image_waiting_for_its_scan_has_no_verdict_yet(world: World, context: Any,
                                                          api: Invoke) -> None:
    # Given an image pushed, not scanned yet (the push handler recorded it as pending)
    repo = world.repository("team-a/web")
    digest = world.push(repo, "v1")
    assert on_push(push_event(repo, digest), context)["status"] == "pending"

    # Then the API says it has no verdict yet
    assert_error(api(f"/v1/verdicts/team-a/web@{digest}"), 404, "verdict-pending",
                 "waiting for its scan")


def test_there_is_no_write_path(world: World, context: Any, api: Invoke) -> None:
    digest = judged(world, context, "team-a/web", "v1", "basic-clean")
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        answer = api(f"/v1/verdicts/team-a/web@{digest}", method)
        assert_error(answer, 405, "method-not-allowed", "read-only")
        assert answer["headers"]["allow"] == "GET, HEAD"


def test_a_malformed_path_is_a_4xx_with_a_json_error(api: Invoke) -> None:
    # Every refusal of the path parser's table (tests/unit/test_verdict_request.py), through
    # the handler: the same status and code, as the JSON error
    for path, status, code in MALFORMED:
        assert_error(api(path), status, code)


def test_an_event_that_is_not_a_function_url_request_is_a_400(context: Any,
                                                              api: Invoke) -> None:
    response = verdict_api(load_event("ecr-image-push"), context)
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "bad-request"


# --- the table or ECR failing ------------------------------------------------------------------

@pytest.fixture
def faults(world: World, monkeypatch: pytest.MonkeyPatch) -> FaultInjector:
    """Given the world's AWS calls going through a fault injector (no random faults; retries
    without waiting); the API rebuilt on top of it."""
    no_backoff(monkeypatch)
    injector = FaultInjector(world.session, rate=0.0).install()
    injector.active = True
    runtime.verdict_api.cache_clear()
    return injector


def test_a_throttled_table_answers_503_and_logs_why(world: World, context: Any, api: Invoke,
                                                    faults: FaultInjector,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    # Given a judged image, and the table throttling every read
    with faults.paused():
        digest = judged(world, context, "team-a/web", "v1", "basic-clean")
    faults.fail(lambda call: call.operation == "GetItem", THROUGHPUT)
    before = len(faults.calls)

    # When the API is asked; Then it answers 503 with a clear message, after retrying
    answer = api(f"/v1/verdicts/team-a/web@{digest}")
    assert_error(answer, 503, "unavailable", "could not be read now", "retry later")
    assert [c.operation for c in faults.calls[before:]] == ["GetItem"] * 4  # 1 + 3 retries
    # and its log says why
    [failure] = [r for r in caplog.records if r.msg == "verdict table read failed"]
    assert failure.levelname == "WARNING"
    assert "ProvisionedThroughputExceededException" in failure.reason  # type: ignore[attr-defined]
    [answered] = [r for r in caplog.records if r.msg == "verdict request answered"]
    assert (answered.status, answered.code) == (503, "unavailable")  # type: ignore[attr-defined]


def test_a_throttled_ecr_answers_503(world: World, context: Any, api: Invoke,
                                     faults: FaultInjector) -> None:
    with faults.paused():
        judged(world, context, "team-a/web", "v1", "basic-clean")
    faults.fail(lambda call: call.operation == "DescribeImages", THROTTLING)
    assert_error(api("/v1/verdicts/team-a/web:v1"), 503, "unavailable")


def test_a_missing_table_answers_503(world: World, context: Any, api: Invoke,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the function pointed at a table that does not exist (a deployment error)
    monkeypatch.setenv("GATEKEEPER_TABLE", "no-such-table")
    runtime.verdict_api.cache_clear()
    assert_error(api(f"/v1/verdicts/team-a/web@{UNKNOWN_DIGEST}"), 503, "unavailable")


def test_an_unconfigured_function_answers_500_without_raising(api: Invoke,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setenv("GATEKEEPER_TABLE", "")
    runtime.verdict_api.cache_clear()
    assert_error(api(f"/v1/verdicts/team-a/web@{UNKNOWN_DIGEST}"), 500, "misconfigured")


# --- anything at all -------------------------------------------------------------------------

PATH_CHARS = st.sampled_from([*"abz09-_./:@%2FAa3", "%40", "%3A", "%2F", "%FF", "%", "é",
                              "\x00", " ", "sha256:", "//"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "HEAD", "POST", "get", "", "TRACE"]),
       tail=st.one_of(st.text(max_size=80), st.lists(PATH_CHARS, max_size=30).map("".join)),
       prefix=st.sampled_from(["/v1/verdicts/", "/v1/verdicts", "/", "", "/v1/verdicts/team-a/"]))
def test_no_path_is_ever_answered_with_a_5xx(api: Invoke, method: str, tail: str,
                                             prefix: str) -> None:
    # Given any method and path at all; When the handler answers; Then it never raises and
    # never answers 5xx, and every error is the JSON error shape
    answer = api(prefix + tail, method)
    assert answer["status"] < 500, answer
    if answer["status"] >= 400 and method.upper() != "HEAD":
        assert set(answer["body"]["error"]) == {"code", "message"}
