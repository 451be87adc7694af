"""Deploy-time checks: how long the gate makes a deployment wait, against one DynamoDB read.

    .venv/bin/python -m benchmarks --only gate [--runs 200]

Setup (not timed): a ``ThreadedMotoServer`` on a free port of 127.0.0.1, every client
pointed at it (AWS_ENDPOINT_URL), so each call crosses a socket; the stack's table, topic,
policy and signing key (ECC_NIST_P256, moto's KMS signing digests as AWS KMS does); three
images pushed, scanned clean and approved by the real handlers (signed verdicts); the verdict
gate built as the stack builds it (``runtime.build_gate``); an ECS cluster and service in moto
running one task definition of the three images; the admission webhook server
(:mod:`gatekeeper_tools.webhook`) on 127.0.0.1 with a certificate made here, and one HTTPS
connection to it kept open (the API server keeps its connections to a webhook open).

Measured, N times each, in turn within every run (a busy neighbour slows them alike):

- baseline: a direct DynamoDB GetItem of one image's verdict record (the floor of any check);
- ``gatekeeper verify``: the VerdictGate's check of a signed approved image by digest (GetItem,
  then kms:Verify of the envelope);
- the ECS hook: one lifecycle-hook payload for the service (DescribeServices,
  DescribeTaskDefinition, then the gate for each of the 3 images, pinned by digest as ECS
  resolves them); moto has no service revisions, so the payload names none and the hook
  reads the service's primary deployment: the same number of calls as DescribeServiceRevisions;
- the admission webhook: one AdmissionReview v1 for a Deployment with 3 containers (an init
  container and two), POSTed over TLS; the webhook asks the gate for the 3 images at once.

Reported: median and p99 of each, as a ratio to the GetItem's median and p99 (no target:
moto's latency is not AWS's; the ratio says how many round trips' worth a check costs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, LambdaContext, Row, clean_env, run_worker, table

BENCH = "gate"
POLICY = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"
IMAGES = ("team-a/web", "team-a/worker", "team-b/api")
REVIEW = ROOT / "tests" / "fixtures" / "kubernetes" / "deployment-create.json"
HOOK = ROOT / "events" / "ecs-lifecycle-hook-pre-scale-up.json"
TARGETS = ("getitem", "verify", "ecs_hook", "webhook")


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0.99: p99), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def measure(runs: int) -> dict[str, Any]:
    """In this process: a moto server, the gate, the hook and the webhook, timed in turn."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    try:
        with tempfile.TemporaryDirectory(prefix="gatekeeper-bench-tls-") as folder:
            return _measure(runs, Path(folder))
    finally:
        server.stop()


def _measure(runs: int, folder: Path) -> dict[str, Any]:
    from functions.on_push.app import handler as on_push
    from functions.on_scan.app import handler as on_scan
    from gatekeeper import runtime
    from gatekeeper.config import EcsHookConfig, GateConfig
    from gatekeeper_tools.webhook import AdmissionWebhook, WebhookServer
    from tests.support import ACCOUNT, REGION, make_world, push_event, scan_event
    from tests.tls_support import make_certificates

    registry = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    world = make_world()  # with the stack's signing key
    os.environ.update(world.environment())
    world.publish_policy(POLICY)
    context = LambdaContext()
    images = []
    for repository in IMAGES:
        world.repository(repository)
        digest = world.push(repository, "v1", seed=repository)
        on_push(push_event(repository, digest), context)
        world.scanned(repository, digest, "basic-clean")
        result = on_scan(scan_event(repository, digest), context)
        assert result.get("verdict") == "APPROVED", result
        images.append(f"{registry}/{repository}@{digest}")
    assert world.config.signing_key_arn
    gate = runtime.build_gate(GateConfig.for_key(world.config.table_name,
                                                 world.config.signing_key_arn),
                              world.session)

    # The baseline: the first image's record, read directly.
    ddb = world.session.client("dynamodb", config=runtime.BOTO_CONFIG)
    first_repository, first_digest = IMAGES[0], images[0].rsplit("@", 1)[1]
    key = {"pk": {"S": f"IMAGE#{first_repository}@{first_digest}"}, "sk": {"S": "VERDICT"}}

    def getitem() -> None:
        assert "Item" in ddb.get_item(TableName=world.config.table_name, Key=key)

    def verify() -> None:
        assert gate.check(images[0]).allowed

    # The ECS side: a service running one task definition of the three images.
    ecs = world.session.client("ecs")
    ecs.create_cluster(clusterName="prod")
    definition = ecs.register_task_definition(family="web", containerDefinitions=[
        {"name": f"c{i}", "image": image, "memory": 128, "essential": True}
        for i, image in enumerate(images)])["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition=definition,
                       desiredCount=1)
    hook = runtime.build_ecs_hook(EcsHookConfig(world.config.topic_arn), world.session,
                                  gate=lambda: gate)
    payload = json.loads(HOOK.read_text())
    del payload["executionDetails"]["targetServiceRevisionArn"]  # moto has no revisions

    def ecs_hook() -> None:
        outcome = hook.handle(payload)
        assert outcome.status == "SUCCEEDED", outcome.reason

    # The Kubernetes side: the webhook server over TLS, a Deployment of the three images.
    certificates = make_certificates(folder)
    webhook_server = WebhookServer(AdmissionWebhook(gate), str(certificates.cert),
                                   str(certificates.key), host="127.0.0.1", port=0)
    review = json.loads(REVIEW.read_text())
    spec = review["request"]["object"]["spec"]["template"]["spec"]
    for container, image in zip([*spec["initContainers"], *spec["containers"]], images,
                                strict=True):
        container["image"] = image
    body = json.dumps(review).encode()
    connection = http.client.HTTPSConnection(
        "127.0.0.1", webhook_server.port, timeout=10,
        context=ssl.create_default_context(cafile=str(certificates.ca)))

    def webhook() -> None:
        connection.request("POST", "/validate?timeout=10s", body=body,
                           headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        reply = json.loads(answer.read())
        assert answer.status == 200 and reply["response"]["allowed"], reply

    steps: dict[str, Callable[[], None]] = {"getitem": getitem, "verify": verify,
                                            "ecs_hook": ecs_hook, "webhook": webhook}
    with webhook_server.running():
        try:
            for step in steps.values():  # warm-up: clients, connections, the TLS session
                step()
            samples: dict[str, list[float]] = {name: [] for name in steps}
            for run in range(runs):
                names = list(steps)
                shift = run % len(names)  # each takes every place in the order in turn
                for name in names[shift:] + names[:shift]:
                    began = time.perf_counter()
                    steps[name]()
                    samples[name].append((time.perf_counter() - began) * 1e3)
        finally:
            connection.close()
    return {"runs": runs, "samples": samples}


def run(runs: int = 200, verbose: bool = True) -> list[Row]:
    env = clean_env({"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"})
    if verbose:
        print(f"  gate: {runs} runs of each check on a local moto server ...", flush=True)
    out = run_worker("benchmarks.bench_gate", "--runs", str(runs), env=env)
    samples: dict[str, list[float]] = out["samples"]
    n = out["runs"]
    floor = samples["getitem"]
    floor_median, floor_p99 = statistics.median(floor), percentile(floor, 0.99)
    described = {
        "verify": ("gatekeeper verify (VerdictGate, by digest)",
                   "GetItem + kms:Verify"),
        "ecs_hook": ("ECS hook, task definition of 3 ECR images",
                     "DescribeServices, DescribeTaskDefinition, 3 x (GetItem + kms:Verify)"),
        "webhook": ("admission webhook, AdmissionReview of 3 containers",
                    "HTTPS POST on a kept-open connection; 3 x (GetItem + kms:Verify) at once"),
    }
    rows = []
    for name, (what, calls) in described.items():
        values = samples[name]
        rows.append(Row(BENCH, f"{what}: median", statistics.median(values), "ms",
                        floor_median, "GetItem median",
                        note=f"{n} runs; {calls}; min {min(values):.2f} ms"))
        rows.append(Row(BENCH, f"{what}: p99", percentile(values, 0.99), "ms",
                        floor_p99, "GetItem p99"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.out.write_text(json.dumps(measure(args.runs)))
        return
    print(table(run(args.runs)))


if __name__ == "__main__":
    main()
