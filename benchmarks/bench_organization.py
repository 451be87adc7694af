"""Organization scale: images of many member accounts pushed and scanned through the hub, against
the single-account loop in the same run; and the policy sweep's time at growing table sizes,
extrapolated by its measured slope to 100,000 images, against the sweeper's Lambda Timeout.

    .venv/bin/python -m benchmarks --only organization                  # 20 x 20, sweep 2k, 5k
    .venv/bin/python -m benchmarks --only organization --accounts 100 --images 20 \\
        --sweep-sizes 2000,5000,10000          # the README's figures: 9 minutes (100 x 100:
                                               # about 40 minutes on a shared 2-core machine)

Setup (not timed): a ``ThreadedMotoServer`` on a free port of 127.0.0.1 with template.yaml
deployed into it as an organization's hub (:class:`LocalDeployment`, OrganizationId set, as the
sandbox deploys it), policy.yaml published. ACCOUNTS member accounts (moto keeps resources per
account; STS AssumeRole hands out credentials of the role's account) each get IMAGES images in
one repository, and the hub's own account gets as many, in ACCOUNTS repositories of IMAGES.

Measured: every image's push event, then (its scan result set in moto's ECR) its scan event,
through the real handlers (functions/on_push, functions/on_scan) in this process. Two warm
containers, each built from the deployed functions' environment: the hub (organization mode:
each member account's ECR through its spoke role) and the single-account stack (the same
environment without GATEKEEPER_ORGANIZATION_ID). They take turns by chunks of one account's
images, so a busy neighbour slows both alike; between chunks the table is emptied (untimed:
moto copies the whole table on each TransactWriteItems, which DynamoDB does not). AWS calls
are counted on the server (every request, whatever session made it: the spoke sessions are
the hub's own), by service, from each request's SigV4 credential scope.

The sweep: the deployed table filled with N recorded images (one current verdict and two
history rows each, as benchmarks/bench_sweep fills it), the re-evaluation queue purged, then
``sweep.policy_published`` with the sweeper's own store and queue (runtime.sweeper(), from the
SweeperFunction's environment) onto the stack's re-evaluation queue, which is emptied after
each batch, as its consumers drain it (see _draining: moto's SendMessage otherwise slows down
with every message the queue holds, which SQS does not): its Scan pages and SendMessageBatch
calls over HTTP to the server, beside the time its Scan alone takes. The slope between the two
largest sizes extrapolates to FULL_SWEEP images, against the SweeperFunction's Timeout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, LambdaContext, Row, clean_env, run_worker, table

BENCH = "organization"
ORGANIZATION = "o-benchmark00"
ACCOUNTS = 20
IMAGES = 20
SWEEP_SIZES = (2_000, 5_000)
FULL_SWEEP = 100_000
FIRST_MEMBER = 200_000_000_000  # member account ids: 200000000000, 200000000001, ...
REPOSITORY = "team/app"
_SERVICE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


@dataclass
class CallLog:
    """WSGI middleware around the moto server's application: every request it answers,
    counted by (service, operation). The operation is the JSON protocols' X-Amz-Target (ECR,
    DynamoDB, SQS, KMS); the query and REST protocols (STS, SNS, S3) count by method."""

    app: Callable[..., Any]
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        found = _SERVICE.search(environ.get("HTTP_AUTHORIZATION", ""))
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target.rpartition(".")[2] or environ.get("REQUEST_METHOD", "?")
        with self._lock:
            self.calls[(found.group(1) if found else "unsigned", operation)] += 1
        return self.app(environ, start_response)

    def take(self) -> Counter[tuple[str, str]]:
        """The calls counted since the last take."""
        with self._lock:
            taken, self.calls = self.calls, Counter()
        return taken


@contextmanager
def hub_server() -> Iterator[tuple[Any, CallLog]]:
    """A moto server on 127.0.0.1 with template.yaml deployed as an organization's hub and
    policy.yaml published, every boto3 client of this process pointed at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    from gatekeeper_tools.local.demo import publish_policy, use_local_environment
    from gatekeeper_tools.local.sandbox import HOST
    from gatekeeper_tools.local.stack import LocalDeployment

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    try:
        # The request handler reads the server's app per request: wrapped, every call counts.
        log = CallLog(server._server.app)
        server._server.app = log
        _, port = server.get_host_and_port()
        use_local_environment()
        # The sweeps empty the re-evaluation queue after each batch (see _draining).
        os.environ["MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR"] = "false"
        os.environ["AWS_ENDPOINT_URL"] = f"http://{HOST}:{port}"
        deployment = LocalDeployment.create(str(ROOT / "template.yaml"),
                                            parameters={"OrganizationId": ORGANIZATION})
        publish_policy(deployment, boto3.client("s3"))
        yield deployment, log
    finally:
        server.stop()


@dataclass
class Loop:
    """One container's share of the run: its handlers' time, results and AWS calls."""

    name: str
    gatekeeper: Any
    hub: Any
    seconds: float = 0.0
    events: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def verdicts(self) -> int:
        return self.statuses["judged"]

    def per_verdict(self, service: str | None = None) -> float:
        total = sum(n for (s, _), n in self.calls.items() if service in (None, s))
        return total / max(1, self.verdicts)

    def by_service(self) -> dict[str, float]:
        services = sorted({s for s, _ in self.calls})
        return {s: round(self.per_verdict(s), 2) for s in services}


def _container(environment: dict[str, str], organization: str) -> tuple[Any, Any]:
    """A warm container's gatekeeper and hub, built from ``environment`` as in Lambda."""
    from gatekeeper import runtime
    from gatekeeper.config import Config

    os.environ.update(environment, GATEKEEPER_ORGANIZATION_ID=organization)
    config = Config.from_env()
    home = runtime.build(config)
    return home, runtime.build_hub(config, home=lambda: home)


def _home_account() -> str:
    """The hub's own account (the deployed functions' GATEKEEPER_ACCOUNT_ID)."""
    return os.environ["GATEKEEPER_ACCOUNT_ID"]


def _judge_chunk(loop: Loop, log: CallLog, images: list[tuple[str, str, str | None]],
                 scan_result: Callable[[int], dict[str, Any]]) -> None:
    """Each image's push event, then (``scan_result`` of its number set in moto's ECR) its
    scan event, through the real handlers, in ``loop``'s container; only the handler calls
    are timed."""
    from functions.on_push.app import handler as on_push
    from functions.on_scan.app import handler as on_scan
    from gatekeeper import runtime
    from gatekeeper_tools.local.ecr import set_scan_result
    from tests.domain_support import push_event, scan_event

    runtime.gatekeeper = lambda: loop.gatekeeper  # type: ignore[assignment]
    runtime.hub = lambda: loop.hub  # type: ignore[assignment]
    context = LambdaContext()
    log.take()
    for number, (repository, digest, account) in enumerate(images):
        where = {"account": account, "region": os.environ["AWS_REGION"]} if account else {}
        push = {**push_event(repository, digest), **where}
        began = time.perf_counter()
        loop.statuses[on_push(push, context)["status"]] += 1
        loop.seconds += time.perf_counter() - began
        set_scan_result(repository, digest, scan_result(number), account or _home_account(),
                 os.environ["AWS_REGION"])
        scan = {**scan_event(repository, digest), **where}
        began = time.perf_counter()
        loop.statuses[on_scan(scan, context)["status"]] += 1
        loop.seconds += time.perf_counter() - began
        loop.events += 2
    loop.calls += log.take()


def _empty_table(name: str) -> None:
    """The verdict table emptied (moto's backend, untimed), so every chunk starts alike."""
    from moto.dynamodb.models import dynamodb_backends

    dynamodb_backends[_home_account()][os.environ["AWS_REGION"]].tables[name].items.clear()


def _push_images(accounts: int, images: int) -> tuple[list[list], list[list]]:
    """ACCOUNTS x IMAGES images in member accounts, as many in the hub's own account: per
    account (or hub repository), a list of (repository, digest, account or None)."""
    import boto3

    from gatekeeper.adapters.spoke import SpokeSessions
    from gatekeeper.domain.scope import Scope
    from gatekeeper_tools.local.ecr import push_image

    region = os.environ["AWS_REGION"]
    pusher = SpokeSessions(boto3.client("sts"), os.environ["GATEKEEPER_SPOKE_ROLE_NAME"])
    hub_ecr = boto3.client("ecr")
    members, single = [], []
    for a in range(accounts):
        account = str(FIRST_MEMBER + a)
        ecr = pusher.client("ecr", Scope(account, region))
        ecr.create_repository(repositoryName=REPOSITORY)
        members.append([(REPOSITORY, push_image(ecr, REPOSITORY, f"v{i}", f"{account}/{i}"),
                         account) for i in range(images)])
        repository = f"team-{a}/app"
        hub_ecr.create_repository(repositoryName=repository)
        single.append([(repository, push_image(hub_ecr, repository, f"v{i}", f"hub/{a}/{i}"),
                        None) for i in range(images)])
    return members, single


def _loops(deployment: Any, log: CallLog, accounts: int, images: int
           ) -> tuple[Loop, Loop, float]:
    """The hub and the single-account stack taking turns; the seconds setup took."""
    import boto3

    from gatekeeper_tools.local.ecr import push_image
    from tests.domain_support import load_findings

    began = time.perf_counter()
    environment = deployment.environment("OnScanFunction")
    os.environ.update(environment)
    samples = [load_findings("basic-clean"), load_findings("basic-critical")]
    members, single = _push_images(accounts, images)
    org = Loop("hub", *_container(environment, ORGANIZATION))
    alone = Loop("single", *_container(environment, ""))
    # Warm-up (uncounted): one image of the hub's own account through each container, so
    # both have their clients made and the policy in its cache.
    ecr = boto3.client("ecr")
    ecr.create_repository(repositoryName="warm/up")
    for loop in (org, alone):
        digest = push_image(ecr, "warm/up", loop.name)
        _judge_chunk(Loop("warm-up", loop.gatekeeper, loop.hub), log,
                     [("warm/up", digest, None)], samples.__getitem__)
    setup = time.perf_counter() - began
    table_name = environment["GATEKEEPER_TABLE"]
    for number, (member, own) in enumerate(zip(members, single, strict=True)):
        turns = [(org, member), (alone, own)]
        for loop, chunk in turns if number % 2 == 0 else reversed(turns):
            _empty_table(table_name)
            _judge_chunk(loop, log, chunk, lambda i: samples[i % 2])
    return org, alone, setup


def _draining(sqs: Any, url: str) -> Counter[str]:
    """Count what SendMessageBatch puts on the queue at ``url``, and empty the queue after
    each call (in moto's backend, no request), as the consumers drain it: moto's SendMessage
    reads the queue's attributes, counting every message it holds, for each message sent,
    so a queue left to fill makes each batch slower than the last (a sweep of 2,000 images:
    52 s; of 5,000: 284 s), which SQS does not."""
    from moto.sqs.models import sqs_backends

    sent = Counter[str]()
    account, name = url.rstrip("/").split("/")[-2:]
    backend = sqs_backends[account][os.environ["AWS_REGION"]]

    def after(parsed: dict[str, Any], **_: Any) -> None:
        sent["messages"] += len(parsed.get("Successful") or [])
        backend.purge_queue(name)

    sqs.meta.events.register("after-call.sqs.SendMessageBatch", after)
    return sent


def _sweeps(deployment: Any, log: CallLog, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """``policy_published`` over tables of each size, with the sweeper's store (runtime.sweeper(),
    from the SweeperFunction's environment) onto the stack's re-evaluation queue."""
    import boto3

    from benchmarks.bench_sweep import fill
    from gatekeeper import runtime
    from gatekeeper.adapters.queue import ReevaluationQueue
    from gatekeeper.service import sweep

    os.environ.update(deployment.environment("SweeperFunction"))
    runtime.sweeper.cache_clear()
    deps = runtime.sweeper()
    url = deps.config.reevaluation_queue_url
    sqs = boto3.client("sqs", config=runtime.BOTO_CONFIG)  # the sweeper's, and a hook
    queued = _draining(sqs, url)
    queue = ReevaluationQueue(sqs, url)
    ddb = boto3.client("dynamodb")
    out = []
    for size in sizes:
        _empty_table(deps.config.table_name)
        fill(ddb, deps.config.table_name, size)
        began = time.perf_counter()
        assert sum(1 for _ in deps.store.records(judged=True)) == size
        scan_seconds = time.perf_counter() - began
        queued.clear()
        log.take()
        began = time.perf_counter()
        sent = sweep.policy_published(deps.store, queue)
        seconds = time.perf_counter() - began
        calls = log.take()
        assert sent == queued["messages"] == size, (sent, queued, size)
        out.append({"images": size, "seconds": seconds, "scan_seconds": scan_seconds,
                    "calls": {f"{s} {o}": n for (s, o), n in sorted(calls.items())}})
    return out


def measure(accounts: int = ACCOUNTS, images: int = IMAGES,
            sweep_sizes: tuple[int, ...] = SWEEP_SIZES) -> dict[str, Any]:
    """In this process: the hub deployed on a moto server, both loops, then the sweeps."""
    with hub_server() as (deployment, log):
        org, alone, setup = _loops(deployment, log, accounts, images)
        sweeps = _sweeps(deployment, log, sweep_sizes)
        timeout = deployment.context("SweeperFunction").timeout_seconds
    return {"accounts": accounts, "images": images, "setup_s": setup, "sweeps": sweeps,
            "sweeper_timeout_s": timeout,
            **{loop.name: {"seconds": loop.seconds, "events": loop.events,
                           "verdicts": loop.verdicts, "statuses": dict(loop.statuses),
                           "per_verdict": loop.per_verdict(), "by_service": loop.by_service(),
                           "assume_role": loop.calls[("sts", "POST")]}
               for loop in (org, alone)}}


def slope(sweeps: list[dict[str, Any]]) -> tuple[float, float]:
    """Seconds per image between the two largest sizes, and the time at FULL_SWEEP images
    extrapolated along it from the largest."""
    points = sorted((s["images"], s["seconds"]) for s in sweeps)
    (n1, t1), (n2, t2) = points[-2] if len(points) > 1 else (0, 0.0), points[-1]
    per_image = (t2 - t1) / (n2 - n1)
    return per_image, t2 + per_image * (FULL_SWEEP - n2)


def rows(out: dict[str, Any]) -> list[Row]:
    org, alone = out["hub"], out["single"]
    accounts, images = out["accounts"], out["images"]
    shape = f"{accounts} accounts x {images} images"
    org_rate, alone_rate = org["events"] / org["seconds"], alone["events"] / alone["seconds"]
    found = [
        Row(BENCH, f"hub, {shape}: events per second", org_rate, "events/s", alone_rate,
            "single account",
            note=f"{org['events']:,} events ({org['verdicts']:,} verdicts) through on_push and "
                 f"on_scan in {org['seconds']:.1f} s vs {alone['seconds']:.1f} s in the hub's "
                 f"own account; results {org['statuses']} vs {alone['statuses']}"),
        Row(BENCH, f"hub, {shape}: AWS calls per verdict", org["per_verdict"], "calls/verdict",
            alone["per_verdict"], "single account",
            note=f"per service {org['by_service']} vs {alone['by_service']} (push and scan "
                 f"events both counted)"),
        Row(BENCH, f"hub, {shape}: STS AssumeRole calls", org["assume_role"], "calls",
            accounts, "member accounts", target=1.0,
            note="one container: at most one AssumeRole per member account (credentials kept "
                 "and renewed before expiry), not one per event"),
    ]
    for sweep in out["sweeps"]:
        pages = sum(n for call, n in sweep["calls"].items() if call.endswith("Scan"))
        batches = sum(n for call, n in sweep["calls"].items() if call.endswith("SendMessageBatch"))
        found.append(Row(BENCH, f"policy sweep, {sweep['images']:,} recorded images",
                         sweep["seconds"], "s", sweep["scan_seconds"], "its Scan alone",
                         note=f"{pages} Scan pages, {batches:,} SendMessageBatch calls"))
    if len(out["sweeps"]) > 1:
        per_image, full = slope(out["sweeps"])
        found.append(Row(
            BENCH, f"policy sweep, {FULL_SWEEP:,} images (extrapolated)", full, "s",
            target=out["sweeper_timeout_s"], absolute=True, baseline_what="sweeper Timeout "
            f"{out['sweeper_timeout_s']} s",
            note=f"measured slope {per_image * 1e3:.2f} ms per image between the two largest "
                 f"sizes, from the largest; moto on this machine, over HTTP on 127.0.0.1"))
    return found


def run(accounts: int = ACCOUNTS, images: int = IMAGES,
        sweep_sizes: tuple[int, ...] = SWEEP_SIZES, verbose: bool = True) -> list[Row]:
    env = clean_env({"POWERTOOLS_TRACE_DISABLED": "true"})
    if verbose:
        print(f"  organization: {accounts} accounts x {images} images through the hub and "
              f"as many in one account; policy sweeps of {sweep_sizes} ...", flush=True)
    out = run_worker("benchmarks.bench_organization", "--accounts", str(accounts),
                     "--images", str(images),
                     "--sweep-sizes", ",".join(str(n) for n in sweep_sizes), env=env)
    return rows(out)


def main() -> None:
    from benchmarks.__main__ import _sizes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=ACCOUNTS)
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument("--sweep-sizes", type=_sizes, default=list(SWEEP_SIZES))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.out.write_text(json.dumps(measure(args.accounts, args.images,
                                               tuple(args.sweep_sizes))))
        return
    print(table(run(args.accounts, args.images, tuple(args.sweep_sizes))))


if __name__ == "__main__":
    main()
