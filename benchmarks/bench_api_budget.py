"""API budget: the AWS calls one event costs on the happy path, counted on moto.

    .venv/bin/python -m benchmarks --only api_budget

Each handler is called in-process with a recorded event, its AWS calls counted by a botocore
``before-call`` hook on its session (as the tests do), with ECR paging findings 1,000 at a
time as it does (tests/moto_paging.py) and the policy in its cache (read at most once a
minute per container: one GetObject more when the cache is cold), and the template's defaults
(StartScanIfNotOnPush). The paths: a push before the scan (in a repository that scans on
push, and in one that does not: the handler starts the scan), the first verdict on
scan-complete, the push event of our own marker coming back,
a duplicate delivery of the scan event, and a flip (a new scan with a CRITICAL after an
approval), each with findings on 1 page and on 3 pages.

Budget: the pages of findings read + 5 (a push that finds no scan reads no page, but its
look for one is counted as a page). Counts are deterministic, so the budget is also asserted
by tests/integration/test_api_budget.py; this prints them.

Signing: the KMS calls of those paths (exactly one Sign per verdict change, none on the
others), and what signing adds to a verdict change: first verdicts of fresh images (a
page of findings each) timed with the stack's key and as many without a key (unsigned
verdicts), taking turns, on the same moto; the Sign call itself timed by botocore's
``before-call``/``after-call`` hooks. Reported as the median with the key against the median
without (no target: moto's KMS answers in microseconds, AWS KMS in milliseconds).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.common import LambdaContext, Row, clean_env, run_worker, table

BENCH = "api_budget"
FIXED = 5
PAGE = "DescribeImageScanFindings"
POLICY = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"
FINDINGS = {1: 10, 3: 2_500}  # pages -> findings, 1,000 a page
SIGNED = 40  # verdict changes timed with the key, and as many without


def measure() -> dict[str, Any]:
    """In this process: moto in-process, the handlers' calls counted path by path, then
    verdict changes timed with and without the signing key."""
    from moto import mock_aws

    from functions.on_push.app import handler as on_push
    from functions.on_scan.app import handler as on_scan
    from gatekeeper import runtime
    from gatekeeper.config import Config
    from tests.moto_paging import basic_scan, paged_scan_findings
    from tests.support import approved, make_world, push_event, scan_event

    context = LambdaContext()
    paths: list[dict[str, Any]] = []
    with mock_aws(), paged_scan_findings():
        world = make_world()
        os.environ.update({
            **world.environment(),
            "GATEKEEPER_POLICY_CACHE_SECONDS": "60",  # the default
            "GATEKEEPER_START_SCANS": "true",  # the template's default (StartScanIfNotOnPush)
        })
        world.publish_policy(POLICY)
        calls: list[str] = []
        kms: list[str] = []

        def count(model: Any, **_: Any) -> None:
            calls.append(model.name)
            if model.service_model.service_name == "kms":
                kms.append(model.name)

        world.session.events.register("before-call.*.*", count)
        runtime.gatekeeper = functools.cache(  # on the hooked session, as the tests do
            lambda: runtime.build(Config.from_env(), world.session))
        runtime.gatekeeper().policies.get()  # the policy in its cache

        def step(path: str, pages: int, invoke: Any) -> None:
            calls.clear()
            kms.clear()
            result = invoke()
            paths.append({"path": path, "pages": pages, "calls": list(calls), "kms": list(kms),
                          "status": result.get("status"), "verdict": result.get("verdict")})

        for pages, count in FINDINGS.items():
            repo = world.repository(f"team-a/web-{pages}")
            digest = world.push(repo, "v1")
            if pages == 1:
                step("push, scan not done yet (scan started)", 0,
                     lambda r=repo, d=digest: on_push(push_event(r, d), context))
                world.ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[{
                    "scanFrequency": "SCAN_ON_PUSH",
                    "repositoryFilters": [{"filter": "team-b/*", "filterType": "WILDCARD"}]}])
                scanned = world.repository("team-b/web")
                other = world.push(scanned, "v1")
                step("push, scan not done yet (scan on push)", 0,
                     lambda r=scanned, d=other: on_push(push_event(r, d), context))
            else:
                on_push(push_event(repo, digest), context)
            world.scanned(repo, digest, basic_scan(count))
            step("scan-complete, first verdict", pages,
                 lambda r=repo, d=digest: on_scan(scan_event(r, d), context))
            if pages == 1:
                step("push of our own marker (echo)", 0, lambda r=repo, d=digest: on_push(
                    push_event(r, d, tag=approved(d)), context))
            step("scan-complete, duplicate delivery", pages,
                 lambda r=repo, d=digest: on_scan(scan_event(r, d), context))
            world.scanned(repo, digest, basic_scan(count, critical=True))
            step("scan-complete, flip (new CRITICAL)", pages,
                 lambda r=repo, d=digest: on_scan(scan_event(r, d), context))
        signing = time_signing(world, context)
    return {"paths": paths, "signing": signing}


def time_signing(world: Any, context: Any) -> dict[str, list[float]]:
    """First verdicts of fresh pending images by a Gatekeeper with the stack's key and by one
    without, in turn (ms each), and the Sign calls' own durations (ms)."""
    from functions.on_push.app import handler as on_push
    from functions.on_scan.app import handler as on_scan
    from gatekeeper import runtime
    from gatekeeper.config import Config
    from tests.moto_paging import basic_scan
    from tests.support import push_event, scan_event

    started: list[float] = []
    sign_ms: list[float] = []

    def sign_done(**_: Any) -> None:
        sign_ms.append((time.perf_counter() - started[-1]) * 1e3)

    # Before the clients are built: they copy the session's handlers.
    world.session.events.register("before-call.kms.Sign",
                                  lambda **_: started.append(time.perf_counter()))
    world.session.events.register("after-call.kms.Sign", sign_done)
    config = Config.from_env()
    assert config.signing_key_arn, "the world has a signing key"
    sides = {"signed": runtime.build(config, world.session),
             "unsigned": runtime.build(replace(config, signing_key_arn=None), world.session)}
    for gatekeeper in sides.values():
        gatekeeper.policies.get()  # in its cache, as between reads
    spent: dict[str, list[float]] = {side: [] for side in sides}
    repo = world.repository("team-s/signing")
    for i in range(2 * SIGNED + 2):  # the first of each side: a warm-up, not counted
        order = ("signed", "unsigned") if (i // 2) % 2 == 0 else ("unsigned", "signed")
        side = order[i % 2]  # in pairs, each side first in turn
        runtime.gatekeeper = lambda g=sides[side]: g  # type: ignore[assignment]
        digest = world.push(repo, f"s{i}", seed=f"signing-{i}")
        on_push(push_event(repo, digest), context)
        world.scanned(repo, digest, basic_scan(FINDINGS[1]))
        began = time.perf_counter()
        result = on_scan(scan_event(repo, digest, tags=(f"s{i}",)), context)
        elapsed = (time.perf_counter() - began) * 1e3
        assert result.get("status") == "judged", result
        if i >= 2:
            spent[side].append(elapsed)
    return {**spent, "sign_call": sign_ms[1:]}


def run(verbose: bool = True) -> list[Row]:
    env = clean_env({"POWERTOOLS_TRACE_DISABLED": "true"})
    out = run_worker("benchmarks.bench_api_budget", env=env)
    rows = []
    for item in out["paths"]:
        calls: list[str] = item["calls"]
        reads = calls.count(PAGE)
        others = [c for c in calls if c != PAGE]
        what = item["path"]
        if item["pages"]:
            what += f", {item['pages']} page{'s' if item['pages'] != 1 else ''}"
        outcome = item["status"]
        if item.get("verdict") and item["verdict"].lower() != outcome:
            outcome += f" {item['verdict']}"
        rows.append(Row(BENCH, what, len(calls), "calls",
                        reads + FIXED, "pages + 5", 1.0,
                        note=f"{outcome}; {reads} x {PAGE} + {', '.join(others) or 'nothing'}"))
    return rows + signing_rows(out["paths"], out["signing"])


def signing_rows(paths: list[dict[str, Any]], signing: dict[str, list[float]]) -> list[Row]:
    """The KMS calls of the paths (one Sign per verdict change, none otherwise) and the time
    signing adds to a verdict change."""
    changes = [p for p in paths if p["status"] == "judged"]
    others = [p for p in paths if p["status"] != "judged"]
    signs = sum(p["kms"].count("Sign") for p in changes)
    extra = sum(len(p["kms"]) for p in changes) - signs
    signed, unsigned = statistics.median(signing["signed"]), statistics.median(signing["unsigned"])
    sign_call = statistics.median(signing["sign_call"])
    return [
        Row(BENCH, f"KMS calls, {len(changes)} verdict changes", signs + extra, "calls",
            len(changes), "one Sign each", 1.0,
            note=f"{signs} x Sign" + (f" + {extra} other KMS calls" if extra else "")),
        Row(BENCH, f"KMS calls, {len(others)} paths that change no verdict",
            sum(len(p["kms"]) for p in others), "calls", baseline_what="none", target=0,
            absolute=True, note=", ".join(sorted({c for p in others for c in p["kms"]}))
            or "no KMS call"),
        Row(BENCH, "signing, per verdict change (first verdict, 1 page)", signed, "ms",
            unsigned, "without a key",
            note=f"median of {len(signing['signed'])} each, taking turns, moto in-process: "
                 f"+{signed - unsigned:.2f} ms; the Sign call itself {sign_call:.2f} ms "
                 "median (AWS KMS: a network round trip instead)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.out.write_text(json.dumps(measure()))
        return
    print(table(run()))


if __name__ == "__main__":
    main()
