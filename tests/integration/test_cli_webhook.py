"""``gatekeeper webhook serve``: its flags, the gate it builds and the server it runs."""

from __future__ import annotations

import http.client
import os
import ssl
import threading
from pathlib import Path

import pytest

from gatekeeper import runtime
from gatekeeper.domain.admission import Decision
from gatekeeper_tools.cli import build_parser, main
from gatekeeper_tools.cli.webhook import build_server, gate_settings, run, verdict_gate
from tests.tls_support import Certificates, make_certificates

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
GATE_ENV = ("GATEKEEPER_TABLE", "GATEKEEPER_SIGNING_KEY_ARN", "GATEKEEPER_OTHER_REGISTRIES",
            "AWS_ENDPOINT_URL")


class AllowAll:
    def check(self, image: str) -> Decision:
        return Decision(True, image, "approved")


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return make_certificates(tmp_path)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The gate's variables unset now, and restored after (verdict_gate sets them)."""
    for name in GATE_ENV:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


def serve_args(certificates: Certificates, *extra: str) -> list[str]:
    return ["webhook", "serve", "--cert", str(certificates.cert), "--key",
            str(certificates.key), "--host", "127.0.0.1", "--port", "0", *extra]


def test_without_a_table_it_does_not_start(certificates: Certificates, clean_env: object,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(serve_args(certificates)) == 2
    assert "which VerdictTableName? pass --stack NAME, or --table" in capsys.readouterr().err


def test_without_a_signing_key_it_does_not_start(certificates: Certificates, clean_env: object,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(serve_args(certificates, "--table", "verdicts")) == 2
    assert ("which signing key? pass --signing-key-arn (or set GATEKEEPER_SIGNING_KEY_ARN)"
            in capsys.readouterr().err)


def test_a_signing_key_that_is_no_key_arn_does_not_start(
        certificates: Certificates, clean_env: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a key named by its alias, not the SigningKeyArn output
    args = serve_args(certificates, "--table", "verdicts", "--signing-key-arn",
                      "alias/gatekeeper")

    # When the webhook starts; Then GateConfig refuses it in one line, before serving
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "GATEKEEPER_SIGNING_KEY_ARN must be" in err and "alias/gatekeeper" in err
    assert "GATEKEEPER_TABLE" not in os.environ  # nothing was set


@pytest.mark.parametrize("timeout", ["0", "30", "soon"])
def test_a_deadline_kubernetes_would_not_wait_for_is_refused(
        certificates: Certificates, timeout: str) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(serve_args(certificates, "--timeout", timeout))
    assert exited.value.code == 2


def test_the_flags_name_the_gates_settings(certificates: Certificates,
                                           clean_env: pytest.MonkeyPatch) -> None:
    # Given the flags of a webhook serving a table, a key, other registries allowed
    args = build_parser().parse_args(serve_args(
        certificates, "--table", "verdicts", "--signing-key-arn", KEY_ARN,
        "--other-registries", "allow", "--region", "eu-west-1",
        "--endpoint-url", "http://127.0.0.1:5000"))

    # When the gate's settings are resolved, then they are the flags'
    assert gate_settings(args, {}) == {
        "GATEKEEPER_TABLE": "verdicts", "GATEKEEPER_SIGNING_KEY_ARN": KEY_ARN,
        "GATEKEEPER_OTHER_REGISTRIES": "allow", "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}

    # And, without flags, the environment's; other registries denied by default
    bare = build_parser().parse_args(serve_args(certificates))
    settings = gate_settings(bare, {"GATEKEEPER_TABLE": "t-env",
                                    "GATEKEEPER_SIGNING_KEY_ARN": KEY_ARN})
    assert (settings["GATEKEEPER_TABLE"], settings["GATEKEEPER_OTHER_REGISTRIES"]) == (
        "t-env", "deny")


def test_the_gate_is_the_runtimes_built_from_those_settings(
        certificates: Certificates, clean_env: pytest.MonkeyPatch) -> None:
    # Given the runtime's verdict gate factory, which reads the environment
    seen: dict[str, str | None] = {}

    def factory() -> AllowAll:
        seen.update({name: os.environ.get(name) for name in GATE_ENV})
        return AllowAll()

    clean_env.setattr(runtime, "verdict_gate", factory, raising=False)
    args = build_parser().parse_args(serve_args(
        certificates, "--table", "verdicts", "--signing-key-arn", KEY_ARN))

    # When the command builds its gate, then the factory saw the flags' settings
    assert isinstance(verdict_gate(args), AllowAll)
    assert seen == {"GATEKEEPER_TABLE": "verdicts", "GATEKEEPER_SIGNING_KEY_ARN": KEY_ARN,
                    "GATEKEEPER_OTHER_REGISTRIES": "deny", "AWS_ENDPOINT_URL": None}


def test_it_serves_until_stopped(certificates: Certificates) -> None:
    # Given the server the command builds from its flags
    args = build_parser().parse_args(serve_args(
        certificates, "--timeout", "2", "--exempt-namespace", "ops",
        "--exempt-namespace", "monitoring"))
    server = build_server(args, AllowAll())
    assert server.webhook.deadline == 2.0
    assert server.webhook.exempt_namespaces == {"ops", "monitoring"}
    ready = threading.Event()
    thread = threading.Thread(target=run, args=(server, lambda _: ready.set()), daemon=True)

    # When it runs
    thread.start()
    assert ready.wait(5)
    try:
        context = ssl.create_default_context(cafile=str(certificates.ca))
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context,
                                                 timeout=5)
        connection.request("GET", "/healthz")
        # Then it answers its readiness probe over TLS
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.shutdown()
        thread.join(5)
    # And stops when told
    assert not thread.is_alive()


def test_a_port_in_use_is_a_one_line_error(certificates: Certificates) -> None:
    first = build_server(build_parser().parse_args(serve_args(certificates)), AllowAll())
    try:
        args = build_parser().parse_args([*serve_args(certificates)[:-1], str(first.port)])
        with pytest.raises(Exception, match=r"cannot serve on 127\.0\.0\.1:\d+"):
            build_server(args, AllowAll())
    finally:
        first.server_close()


def test_a_renewed_certificate_is_served_without_a_restart(certificates: Certificates,
                                                           tmp_path: Path) -> None:
    # Given a running server, and its certificate renewed in place by another CA
    server = build_server(build_parser().parse_args(serve_args(certificates)), AllowAll())
    with server.running():
        (tmp_path / "renewed").mkdir()
        renewed = make_certificates(tmp_path / "renewed")
        for source, target in ((renewed.cert, certificates.cert),
                               (renewed.key, certificates.key)):
            target.write_bytes(source.read_bytes())
            later = os.stat(target).st_mtime + 5
            os.utime(target, (later, later))

        # When a client trusting only the new CA connects
        context = ssl.create_default_context(cafile=str(renewed.ca))
        connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context,
                                                 timeout=5)
        connection.request("GET", "/healthz")

        # Then the server presents the renewed certificate
        assert connection.getresponse().status == 200
        connection.close()
