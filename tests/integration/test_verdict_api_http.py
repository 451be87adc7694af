"""The verdict API over real HTTP: a function URL played on 127.0.0.1 by
gatekeeper_tools.local.function_url in front of the real handler (on moto), asked with
SigV4-signed requests, and ``gatekeeper verify --api`` against it."""

from __future__ import annotations

import base64
import functools
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from functions.verdict_api.app import handler as verdict_api
from gatekeeper import runtime
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.config import VerdictApiConfig
from gatekeeper_tools.cli import main
from gatekeeper_tools.local.function_url import FunctionUrlServer
from tests.integration.test_verdict_api import judged
from tests.integration.test_verdict_gate import judged as judged_as
from tests.support import World


@pytest.fixture
def server(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[FunctionUrlServer]:
    """Given the verdict API function behind a function URL on 127.0.0.1 (a free port),
    stopped after the test."""
    monkeypatch.setattr(runtime, "verdict_api", functools.cache(
        lambda: runtime.build_verdict_api(VerdictApiConfig.from_env(), world.session)))
    with FunctionUrlServer(verdict_api) as running:
        yield running


def get(url: str, *, method: str = "GET", signed: bool = True) -> tuple[int, dict[str, str],
                                                                        bytes]:
    """One HTTP request, SigV4-signed for a function URL (service lambda) unless not."""
    headers: dict[str, str] = {}
    if signed:
        signing = AWSRequest(method=method, url=url)
        credentials = boto3.session.Session().get_credentials()
        assert credentials is not None
        SigV4Auth(credentials.get_frozen_credentials(), "lambda", "us-east-1").add_auth(signing)
        headers = dict(signing.headers.items())
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items()), err.read()


# --- the API over HTTP -----------------------------------------------------------------------

def test_a_signed_get_answers_the_verdict(world: World, context: Any,
                                          server: FunctionUrlServer) -> None:
    # Given an approved image; When a signed GET asks for it by tag over HTTP
    digest = judged(world, context, "team-a/web", "v1", "basic-clean")
    status, headers, body = get(f"{server.url}/v1/verdicts/team-a/web:v1")

    # Then the answer is the handler's: 200, JSON, the verdict
    assert status == 200
    assert headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert (answer["digest"], answer["verdict"]["outcome"]) == (digest, "APPROVED")
    # and the handler received the function URL event of that request, signer included
    [event] = server.events
    assert event["version"] == "2.0" and event["rawPath"] == "/v1/verdicts/team-a/web:v1"
    assert event["requestContext"]["http"]["method"] == "GET"
    signer = boto3.session.Session().get_credentials()
    assert signer is not None
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == signer.access_key


def test_an_unsigned_request_is_refused_before_the_function(server: FunctionUrlServer) -> None:
    status, _, body = get(f"{server.url}/v1/verdicts/team-a/web:v1", signed=False)
    assert (status, json.loads(body)) == (403, {"Message": "Forbidden"})
    assert server.events == []


def test_errors_come_back_over_http_as_json(world: World, server: FunctionUrlServer) -> None:
    for method, path, status in [("POST", "/v1/verdicts/team-a/web:v1", 405),
                                 ("DELETE", "/v1/verdicts/team-a/web:v1", 405),
                                 ("GET", "/v1/verdicts/team-a/web%2540x", 400),
                                 ("GET", "/v1/verdicts/no/such:v1", 404),
                                 ("GET", "/elsewhere", 404)]:
        got, headers, body = get(server.url + path, method=method)
        assert got == status, (method, path)
        assert headers["content-type"] == "application/json"
        assert set(json.loads(body)["error"]) == {"code", "message"}


def test_head_answers_no_body_over_http(world: World, context: Any,
                                        server: FunctionUrlServer) -> None:
    judged(world, context, "team-a/web", "v1", "basic-clean")
    status, _, body = get(f"{server.url}/v1/verdicts/team-a/web:v1", method="HEAD")
    assert (status, body) == (200, b"")


# --- gatekeeper verify --api -------------------------------------------------------------------

def verify(image: str, url: str) -> int:
    return main(["verify", image, "--api", url, "--region", "us-east-1"])


def test_verify_api_passes_an_approved_image(world: World, context: Any,
                                             server: FunctionUrlServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Given an approved image
    digest = judged(world, context, "team-a/web", "v1", "basic-clean")

    # When the deploy gate asks the API, by tag and by digest (registry host in front)
    by_tag = verify("team-a/web:v1", server.url)
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    by_digest = verify(f"{host}/team-a/web@{digest}", server.url)

    # Then both pass, saying so on stdout, with signed requests
    assert (by_tag, by_digest) == (0, 0)
    out = [line for line in capsys.readouterr().out.splitlines()
           if not line.startswith("{")]  # the functions' metrics (EMF) share stdout here
    assert out == [f"approved: team-a/web@{digest} (policy version builtin-strict; from the "
                   "verdict API)"] * 2
    assert all(e["requestContext"].get("authorizer") for e in server.events)


def test_verify_api_refuses_a_quarantined_image_with_its_reason(
        world: World, context: Any, server: FunctionUrlServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    digest = judged(world, context, "team-a/web", "v1", "basic-critical")
    assert verify("team-a/web:v1", server.url) == 1
    err = capsys.readouterr().err
    assert err == (f"not approved: quarantined: team-a/web@{digest}: CRITICAL: 1 finding over "
                   "the limit of 0 (CVE-2023-4863)\n")


def test_verify_api_refuses_what_has_no_verdict(world: World, context: Any,
                                                server: FunctionUrlServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    judged(world, context, "team-a/web", "v1", "basic-clean")
    for image, says in [
            ("team-a/web:v9", "no image team-a/web:v9"),
            ("no/such:v1", "repository no/such not found"),
            ("team-a/web@sha256:" + "0" * 64, "no verdict recorded for team-a/web@sha256:")]:
        assert verify(image, server.url) == 1, image
        err = capsys.readouterr().err
        assert err.startswith("not approved: ") and says in err, err
        assert err.count("\n") == 1


def test_verify_api_cannot_run_without_the_api(world: World,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # Given a port nothing listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    # Then the check could not run: exit 2, one line saying why
    assert verify("team-a/web:v1", f"http://127.0.0.1:{port}") == 2
    err = capsys.readouterr().err
    assert err.startswith("gatekeeper verify: the verdict API at http://127.0.0.1:")
    assert "could not be reached" in err and err.count("\n") == 1


def test_verify_api_refused_by_iam_cannot_run(world: World, server: FunctionUrlServer,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Given a caller with no credentials at all: nothing to sign with
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert verify("team-a/web:v1", server.url) == 2
    assert "no AWS credentials" in capsys.readouterr().err


# --- gatekeeper verify --api: the answer is trusted only as far as its signature goes ---------

def rewrite(world: World, repo: str, digest: str, **changes: Any) -> None:
    """Someone with write access to the table changes the image's record (the API then
    answers it as it is)."""
    store = VerdictStore(world.session.client("dynamodb"), world.config.table_name)
    record = store.get(repo, digest)
    assert record is not None
    store.put(replace(record, **changes), record.revision)


def flipped(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope with one byte of its payload changed (QUARANTINED signed, APPROVED
    claimed... here: one character of the statement)."""
    payload = bytearray(base64.b64decode(envelope["payload"]))
    payload[payload.index(b'"decided_at":"') + 15] ^= 0x01
    return {**envelope, "payload": base64.b64encode(bytes(payload)).decode("ascii")}


def test_verify_api_refuses_what_the_stack_key_did_not_sign(
        world: World, context: Any, server: FunctionUrlServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given two approved images, web and api, both signed by the stack's key
    web = judged(world, context, "team-a/web", "v1", "basic-clean")
    api = judged_as(world, context, "team-a/api", "v1", "basic-clean", seed="api")
    store = VerdictStore(world.session.client("dynamodb"), world.config.table_name)
    web_record, api_record = store.get("team-a/web", web), store.get("team-a/api", api)
    assert web_record is not None and api_record is not None
    assert web_record.envelope is not None and api_record.envelope is not None
    assert verify("team-a/web:v1", server.url) == 0  # the API answers web's own envelope
    capsys.readouterr()

    for change, says in [
            # api's envelope copied onto web's record: a valid signature about another image
            ({"envelope": api_record.envelope},
             f"signed for team-a/api@{api}, not team-a/web@{web}"),
            # one byte of web's signed payload changed: the signature no longer matches
            ({"envelope": flipped(web_record.envelope)}, "signed verdict refused"),
            # the envelope removed: an approval nobody signed
            ({"envelope": None}, "unsigned verdict: the verdict API answered no envelope"),
            # the envelope kept, the answered reasons changed: not the verdict signed
            ({"envelope": web_record.envelope, "reasons": ("waived by someone",)},
             "differs from the signed one in reasons")]:
        rewrite(world, "team-a/web", web, **change)

        # When the deploy gate asks the API about web
        code = verify("team-a/web:v1", server.url)

        # Then it is refused: exit 1, one line saying why
        err = capsys.readouterr().err
        assert code == 1, change
        assert err.startswith("not approved: ") and err.count("\n") == 1, err
        assert says in err, err


def test_verify_api_checks_offline_with_the_exported_public_key(
        world: World, context: Any, server: FunctionUrlServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given an approved image, and the stack key's public key exported to a file
    judged(world, context, "team-a/web", "v1", "basic-clean")
    assert world.config.signing_key_arn
    public = world.session.client("kms").get_public_key(KeyId=world.config.signing_key_arn)
    key_file = tmp_path / "verdicts.der"
    key_file.write_bytes(public["PublicKey"])

    # When verify --api checks the answer with that key; Then it passes
    assert main(["verify", "team-a/web:v1", "--api", server.url, "--region", "us-east-1",
                 "--public-key", str(key_file)]) == 0

    # And with another key (not the stack's), the same answer is refused
    other = world.session.client("kms").create_key(KeySpec="ECC_NIST_P256",
                                                   KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    key_file.write_bytes(world.session.client("kms").get_public_key(
        KeyId=other["Arn"])["PublicKey"])
    assert main(["verify", "team-a/web:v1", "--api", server.url, "--region", "us-east-1",
                 "--public-key", str(key_file)]) == 1
    assert "signed verdict refused" in capsys.readouterr().err
