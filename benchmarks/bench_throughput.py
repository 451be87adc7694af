"""Throughput: scan-complete events through the on_scan handler, in-process as the tests call
it, against a local moto server, as a ratio to the floor of making the same API calls
directly with boto3 against the same server.

    .venv/bin/python -m benchmarks --only throughput [--events 1000]

Setup (not timed): a ``ThreadedMotoServer`` on a free port of 127.0.0.1, every client pointed
at it (AWS_ENDPOINT_URL); the gatekeeper's table, topic (with a queue subscribed), policy
bucket with the repository's policy.yaml; 2 x N images pushed, 50 to a repository, each
with a finished basic scan (clean and CRITICAL in turn). Warm-up: one event through a
Gatekeeper whose session records every call's parameters, then the floor's replay of them
on another image, then one event through the handler.

Measured: N images judged by ``on_scan`` (their first verdict: 8 calls each, the policy in
its cache) against N other images given the same calls made directly: the recorded
parameters with the image's repository, digest and tag put in, and the manifest the floor's
own BatchGetImage returned. Handler and floor take turns by chunks of 25 images, so a busy
neighbour slows both alike; between chunks the table is emptied (moto copies the whole table
on each TransactWriteItems, which would make every call slower as the run goes on).
Wall-clock time (the server runs in this process), and the CPU time of the calling thread
alone (the client side: the handler's own work against boto3's for the same calls).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, LambdaContext, Row, clean_env, run_worker, table

BENCH = "throughput"
TARGET = 1.5
CHUNK = 25
PER_REPOSITORY = 50


def measure(events: int) -> dict[str, Any]:
    """In this process: a moto server, the handler and the floor taking turns."""
    import boto3
    from botocore import xform_name
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    try:
        from functions.on_scan.app import handler as on_scan
        from gatekeeper import runtime
        from gatekeeper.config import Config
        from tests.support import ACCOUNT, REGION, load_findings, make_world, scan_event

        world = make_world()
        os.environ.update(world.environment())
        world.publish_policy((ROOT / "policy.yaml").read_text(encoding="utf-8"))
        samples = [load_findings("basic-clean"), load_findings("basic-critical")]
        images: list[tuple[str, str, str]] = []  # repository, digest, tag
        for i in range(2 * events + 3):
            if i % PER_REPOSITORY == 0:
                repo = world.repository(f"team-{i // PER_REPOSITORY}/web")
            digest = world.push(repo, f"v{i}")  # a tag of its own: moto drops untagged images
            world.scanned(repo, digest, samples[i % 2])
            images.append((repo, digest, f"v{i}"))
        context = LambdaContext()

        # Every call's parameters, on a session of its own (clients copy its hooks).
        recorded: list[tuple[str, str, dict[str, Any]]] = []
        recording = [False]

        def record(params: dict[str, Any], model: Any, **_: Any) -> None:
            if recording[0]:
                recorded.append((model.service_model.service_name, model.name,
                                 copy.deepcopy(params)))

        calls = Counter[str]()

        def hooked_session(side: str) -> boto3.session.Session:
            session = boto3.session.Session()
            session.events.register("before-call.*.*",
                                    lambda **_: calls.update([side]))
            return session

        capture = hooked_session("capture")
        capture.events.register("provide-client-params.*.*", record)
        captured_gatekeeper = runtime.build(Config.from_env(), capture)
        captured_gatekeeper.policies.get()  # in its cache, as between reads
        recording[0] = True
        runtime.gatekeeper = lambda: captured_gatekeeper  # type: ignore[assignment]
        warm_repo, warm_digest, warm_tag = images.pop()
        assert on_scan(scan_event(warm_repo, warm_digest, tags=(warm_tag,)),
                       context)["status"] == "judged"
        recording[0] = False

        # The floor: the same operations, each image's own repository and digest put in.
        floor_session = hooked_session("floor")
        clients = {service: floor_session.client(service, config=runtime.BOTO_CONFIG)
                   for service in {service for service, _, _ in recorded}}
        template = json.dumps([[s, o, p] for s, o, p in recorded], default=str)

        def floor(repo: str, digest: str, tag: str) -> None:
            text = (template.replace(warm_digest, digest).replace(warm_digest[7:19], digest[7:19])
                    .replace(json.dumps(warm_repo)[1:-1], json.dumps(repo)[1:-1])
                    .replace(f'"{warm_tag}"', f'"{tag}"'))
            manifest: dict[str, Any] = {}
            for service, operation, params in json.loads(text):
                if operation == "PutImage":
                    params["imageManifest"] = manifest["imageManifest"]
                response = getattr(clients[service], xform_name(operation))(**params)
                if operation == "BatchGetImage":
                    manifest = response["images"][0]
        floor(*images.pop())

        # The handler: the container's Gatekeeper, built from the environment as in Lambda
        # (on a session that counts calls, as the floor's does).
        handler_session = hooked_session("handler")
        runtime.gatekeeper = functools.cache(  # type: ignore[assignment]
            lambda: runtime.build(Config.from_env(), handler_session))
        repo, digest, tag = images.pop()
        assert on_scan(scan_event(repo, digest, tags=(tag,)), context)["status"] == "judged"

        def empty_table() -> None:
            """moto copies the whole table on every TransactWriteItems (its rollback copy),
            which DynamoDB does not: emptied between chunks (untimed), the table stays the
            size a chunk makes it, and time per event does not grow with the run."""
            from moto.dynamodb.models import dynamodb_backends

            dynamodb_backends[ACCOUNT][REGION].tables[world.config.table_name].items.clear()

        calls.clear()
        handler_images, floor_images = images[:events], images[events:2 * events]
        spent = {"handler": 0.0, "floor": 0.0}
        cpu = {"handler": 0.0, "floor": 0.0}  # this thread's CPU: the client side only
        statuses = Counter[str]()
        for start in range(0, events, CHUNK):
            empty_table()
            sides = ["handler", "floor"] if (start // CHUNK) % 2 == 0 else ["floor", "handler"]
            for side in sides:
                began, began_cpu = time.perf_counter(), time.thread_time()
                if side == "floor":
                    for repo, digest, tag in floor_images[start:start + CHUNK]:
                        floor(repo, digest, tag)
                else:
                    for repo, digest, tag in handler_images[start:start + CHUNK]:
                        event = scan_event(repo, digest, tags=(tag,))
                        statuses[on_scan(event, context)["status"]] += 1
                spent[side] += time.perf_counter() - began
                cpu[side] += time.thread_time() - began_cpu
        return {"events": events, "handler_s": spent["handler"], "floor_s": spent["floor"],
                "handler_cpu_s": cpu["handler"], "floor_cpu_s": cpu["floor"],
                "handler_calls": calls["handler"], "floor_calls": calls["floor"],
                "operations": [o for _, o, _ in recorded], "statuses": dict(statuses)}
    finally:
        server.stop()


def run(events: int = 200, verbose: bool = True) -> list[Row]:
    env = clean_env({"POWERTOOLS_TRACE_DISABLED": "true"})
    if verbose:
        print(f"  throughput: {events} events through on_scan and the floor ...", flush=True)
    out = run_worker("benchmarks.bench_throughput", "--events", str(events), env=env)
    n = out["events"]
    handler_ms, floor_ms = out["handler_s"] / n * 1e3, out["floor_s"] / n * 1e3
    return [Row(
        BENCH, f"on_scan, {n:,} scan-complete events (per event)", handler_ms, "ms", floor_ms,
        "same calls, direct", TARGET,
        note=f"{n / out['handler_s']:.0f} events/s vs {n / out['floor_s']:.0f} images/s direct; "
             f"calls per event {out['handler_calls'] / n:.2f} vs {out['floor_calls'] / n:.2f} "
             f"direct ({', '.join(out['operations'])}); results {out['statuses']}"),
        Row(BENCH, f"on_scan, {n:,} events: client-side CPU per event",
            out["handler_cpu_s"] / n * 1e3, "ms", out["floor_cpu_s"] / n * 1e3,
            "same calls, direct",
            note="CPU time of the calling thread only (the moto server's thread excluded): "
                 "the handler's own work (parsing, judging, Powertools logs and metrics, "
                 "boto3 serialisation) against boto3's for the same calls")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.out.write_text(json.dumps(measure(args.events)))
        return
    print(table(run(args.events)))


if __name__ == "__main__":
    main()
