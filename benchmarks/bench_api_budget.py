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
"""

from __future__ import annotations

import argparse
import functools
import json
import os
from pathlib import Path
from typing import Any

from benchmarks.common import LambdaContext, Row, clean_env, run_worker, table

BENCH = "api_budget"
FIXED = 5
PAGE = "DescribeImageScanFindings"
POLICY = "version: 1\ndefault:\n  max_findings: {CRITICAL: 0, HIGH: 0}\n"
FINDINGS = {1: 10, 3: 2_500}  # pages -> findings, 1,000 a page


def measure() -> list[dict[str, Any]]:
    """In this process: moto in-process, the handlers' calls counted path by path."""
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
        world.session.events.register("before-call.*.*",
                                      lambda model, **_: calls.append(model.name))
        runtime.gatekeeper = functools.cache(  # on the hooked session, as the tests do
            lambda: runtime.build(Config.from_env(), world.session))
        runtime.gatekeeper().policies.get()  # the policy in its cache

        def step(path: str, pages: int, invoke: Any) -> None:
            calls.clear()
            result = invoke()
            paths.append({"path": path, "pages": pages, "calls": list(calls),
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
    return paths


def run(verbose: bool = True) -> list[Row]:
    env = clean_env({"POWERTOOLS_TRACE_DISABLED": "true"})
    rows = []
    for item in run_worker("benchmarks.bench_api_budget", env=env):
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
    return rows


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
