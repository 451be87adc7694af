"""``make sandbox``: the gatekeeper deployed into a local moto server that stays up, to try the
operator commands (``gatekeeper status|verify|reevaluate|replay-dlq``) on it.

It starts moto's ThreadedMotoServer on 127.0.0.1 only (a free port, or ``--port`` /
``SANDBOX_PORT``), deploys template.yaml into it (:class:`LocalDeployment`, every AWS call
through the server's endpoint), publishes policy.yaml, pushes and judges the demo's five
images (their handlers run in this process, as in the demo), then prints the flags that reach
it and serves until Ctrl-C, or for ``--seconds``. Nothing outside this machine is involved:
no AWS account, no Docker.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gatekeeper_tools.local.demo import (
    REGION,
    ROOT,
    SCENARIOS,
    Demo,
    publish_policy,
    summary_table,
    use_local_environment,
)

HOST = "127.0.0.1"  # the server is reachable from this machine only


@dataclass(frozen=True)
class Sandbox:
    """A running sandbox: the server, where it is, and what was judged in it."""

    server: Any  # moto.server.ThreadedMotoServer
    endpoint_url: str
    stack: str
    region: str
    demo: Demo

    @property
    def flags(self) -> str:
        """What to pass to the operator commands to reach this sandbox."""
        return f"--endpoint-url {self.endpoint_url} --stack {self.stack} --region {self.region}"

    def stop(self) -> None:
        self.server.stop()


def start(port: int = 0, region: str = REGION) -> Sandbox:
    """Start the server, deploy the stack into it and judge the demo's images."""
    import boto3
    from moto.server import ThreadedMotoServer

    from gatekeeper_tools.local.ecr import push_image, set_scan_result
    from gatekeeper_tools.local.stack import LocalDeployment

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    try:
        _, bound = server.get_host_and_port()
        endpoint_url = f"http://{HOST}:{bound}"
        use_local_environment()
        # Every boto3 client of this process (the deployment's, the handlers') uses it.
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
        deployment = LocalDeployment.create(str(ROOT / "template.yaml"), region=region)
        publish_policy(deployment, boto3.client("s3", region_name=region))
        demo = Demo(deployment, boto3.client("ecr", region_name=region),
                    boto3.client("sqs", region_name=region), deployment.subscribe_queue(),
                    out=None)
        # The server runs in this process: the scan results go straight into its ECR.
        for scenario in SCENARIOS:
            demo.run(scenario, set_scan_result, push_image)
    except BaseException:
        server.stop()
        raise
    return Sandbox(server, endpoint_url, deployment.stack_name, region, demo)


def instructions(sandbox: Sandbox) -> list[str]:
    """What the sandbox prints once it is ready."""
    example = next(s for s in SCENARIOS if s.repository == "team-b/api")
    clean = next(s for s in SCENARIOS if s.repository == "team-a/web")
    return [
        f"Sandbox ready: template.yaml deployed into a moto server on {sandbox.endpoint_url},",
        "policy.yaml published, five images pushed and judged:",
        *summary_table(sandbox.demo.standings()),
        "",
        "Pass these to gatekeeper status|verify|reevaluate|replay-dlq:",
        f"  {sandbox.flags}",
        "",
        "For example, in another shell (the server takes any credentials):",
        "  export AWS_ACCESS_KEY_ID=sandbox AWS_SECRET_ACCESS_KEY=sandbox",
        f"  .venv/bin/gatekeeper status {example.image} {sandbox.flags}",
        f"  .venv/bin/gatekeeper verify {clean.image} {sandbox.flags}",
        "",
        "Ctrl-C stops the sandbox (its state is lost).",
    ]


def wait(stop: threading.Event, seconds: float | None) -> None:
    """Until ``stop`` is set, Ctrl-C, or ``seconds`` have passed (None: no limit)."""
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while not stop.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            stop.wait(0.5 if left is None else min(0.5, left))
    except KeyboardInterrupt:
        return


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0 (any free one) to 65535")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make sandbox",
        description="The gatekeeper in a local moto server that stays up, for the operator "
                    "commands.")
    parser.add_argument("--port", type=_port, default=_port(os.environ.get("SANDBOX_PORT") or "0"),
                        help="the server's port on 127.0.0.1 (default: SANDBOX_PORT, else a "
                             "free one)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="stop after this many seconds once ready (default: at Ctrl-C)")
    parser.add_argument("--region", default=REGION)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    args = parse_args(argv)
    if not (ROOT / "template.yaml").exists():
        print("run the sandbox from the repository root (where template.yaml is)",
              file=sys.stderr)
        return 2
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"Starting a moto server on {HOST} and deploying the stack into it...", flush=True)
    sandbox = start(args.port, args.region)
    try:
        print("\n".join(instructions(sandbox)), flush=True)
        wait(stop, args.seconds)
    finally:
        sandbox.stop()
    print("Sandbox stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
