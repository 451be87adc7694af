"""``make sandbox``: the stack in a local moto server that the operator commands reach with the
flags it prints.

The sandbox runs in a subprocess on a free port of 127.0.0.1 (its handlers fill process-wide
caches and point every boto3 client at its server); the operator commands run in this process,
as ``gatekeeper_tools.cli.main`` with the printed flags. It stops at Ctrl-C (SIGINT), or by
itself after ``--seconds``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from gatekeeper_tools.cli import main as gatekeeper
from gatekeeper_tools.local.sandbox import wait
from tests.support import ROOT

READY = "Pass these to gatekeeper status|verify|reevaluate|replay-dlq:"
LAST = "Ctrl-C stops the sandbox (its state is lost)."  # the last line printed once ready
SAFETY_NET_SECONDS = 300  # the sandbox stops by itself then, should the test not stop it


@dataclass
class Running:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)  # end of output

    def until(self, wanted: str, timeout: float) -> list[str]:
        """The lines up to the one equal to ``wanted`` (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {wanted!r} within {timeout} s; saw {self.seen[-5:]}")
            if line is None:
                pytest.fail(f"the sandbox ended before {wanted!r}; saw {self.seen[-20:]}")
            self.seen.append(line)
            if line == wanted:
                return self.seen
            if time.monotonic() > deadline:
                pytest.fail(f"no {wanted!r} within {timeout} s")


@pytest.fixture
def sandbox() -> Iterator[Running]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(ROOT / part) for part in ("layers/gatekeeper", "tools", "."))}
    env.pop("AWS_ENDPOINT_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gatekeeper_tools.local.sandbox", "--port", "0",
         "--seconds", str(SAFETY_NET_SECONDS)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    running = Running(process)
    threading.Thread(target=running.read, daemon=True).start()
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()  # only if the test failed before stopping it
            process.wait(timeout=30)


def test_the_operator_commands_reach_the_sandbox_with_the_flags_it_prints(
        sandbox: Running, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a sandbox started on a free port, ready
    printed = sandbox.until(LAST, timeout=240)
    flags = printed[printed.index(READY) + 1].split()
    assert flags[0::2] == ["--endpoint-url", "--stack", "--region"]
    assert flags[1].startswith("http://127.0.0.1:")  # this machine only
    assert any(line.startswith("  team-b/api:2.0.0") and "QUARANTINED" in line
               for line in printed)
    capsys.readouterr()

    # When an operator asks for the quarantined image's status, and verifies the clean one
    status = gatekeeper(["status", "team-b/api:2.0.0", "--format", "json", *flags])
    document = json.loads(capsys.readouterr().out)
    verified = gatekeeper(["verify", "team-a/web:v1.4.2", *flags])
    approved = capsys.readouterr().out

    # Then the sandbox answers with the verdicts it judged
    assert status == 0
    assert document["verdict"]["state"] == "QUARANTINED"
    assert any("CVE-2023-4863" in reason for reason in document["verdict"]["reasons"])
    assert verified == 0
    assert approved.startswith("approved: team-a/web@sha256:")

    # And its own example command lines use the same flags
    examples = [line for line in printed if line.startswith("  .venv/bin/gatekeeper ")]
    assert len(examples) == 2
    assert all(line.endswith(" ".join(flags)) for line in examples)

    # When it gets Ctrl-C; Then it stops cleanly
    sandbox.process.send_signal(signal.SIGINT)
    sandbox.until("Sandbox stopped.", timeout=60)
    assert sandbox.process.wait(timeout=30) == 0


def test_waiting_ends_by_itself_after_the_given_seconds() -> None:
    # Given no stop request; When the sandbox waits 0.2 s; Then it returns by itself
    started = time.monotonic()
    wait(threading.Event(), 0.2)
    assert 0.15 < time.monotonic() - started < 5


def test_waiting_ends_when_asked_to_stop() -> None:
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    wait(stop, None)
    assert time.monotonic() - started < 5
