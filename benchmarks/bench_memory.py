"""Memory: the peak RSS of a fresh process judging one image with 10,000 (then 50,000)
enhanced findings through the real path, against a fresh process that only imports boto3 and
the handler.

    .venv/bin/python -m benchmarks --only memory [--findings 10000[,50000]]
    .venv/bin/python -m benchmarks.bench_memory [--findings 10000 50000]

A worker process runs a ``ThreadedMotoServer`` (ECR paging findings 1,000 at a time, as it
does: tests/moto_paging.py) holding the gatekeeper's table, topic and policy bucket (the
repository's policy.yaml) and an image whose enhanced scan has N findings shaped like
ECR's (about 2 kB each, with their resources, CVSS and references: ~22 MB of JSON for
10,000). Two fresh interpreters, laid out as Lambda lays out the on_scan function, point at
it (AWS_ENDPOINT_URL):

* baseline: ``import boto3`` and the handler, nothing else;
* measured: the same, then one Inspector2 Scan event through ``app.handler``: every page
  read and parsed, the policy evaluated, the verdict committed, the marker written, the
  notification published, the record settled.

Each reports ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (and VmHWM, to cross-check).
Each is started by a small interpreter of its own, not by the worker nor the benchmark: on
Linux a child's ru_maxrss starts at the RSS its parent had when it forked. The targets bound
the peak itself: 96 MB at 10,000 findings, 256 MB at 50,000 (the findings are held compactly,
page by page: their growth, not the JSON's, sets the functions' memory); 128 MB, the smallest
Lambda memory size, for one finding and any other size. Each size runs its own worker and its
own baseline, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import FUNCTIONS, LAYER, PYTHON, ROOT, Row, clean_env, run_json, table

BENCH = "memory"
LIMIT_MB = 128
# The sizes of record and their targets (peak RSS, MB).
SIZES = (10_000, 50_000)
TARGETS_MB = {10_000: 96, 50_000: 256}
SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "MEDIUM", "LOW", "LOW", "INFORMATIONAL", "UNTRIAGED"]
NOW = datetime(2026, 11, 27, tzinfo=UTC)

PROBE = r"""
import json, resource, sys, time
import boto3
import app
out = {}
if sys.argv[1] == "handle":
    class Context:
        function_name = "gatekeeper-bench"
        memory_limit_in_mb = 128
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:gatekeeper-bench"
        aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    with open(sys.argv[2], encoding="utf-8") as handle:
        event = json.load(handle)
    start, cpu = time.perf_counter(), time.process_time()
    out["result"] = app.handler(event, Context())
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu
out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open("/proc/self/status", encoding="ascii") as status:
    out["hwm_kb"] = next((int(line.split()[1]) for line in status
                          if line.startswith("VmHWM:")), None)
print(json.dumps(out))
"""


def enhanced_scan(count: int, repository: str, digest: str, seed: int = 7) -> dict[str, Any]:
    """A finished enhanced scan (a DescribeImageScanFindings body) with ``count`` findings in
    ECR's EnhancedImageScanFinding shape."""
    rng = random.Random(seed)
    findings = []
    for i in range(count):
        cve = f"CVE-2024-{i:05d}"
        severity = rng.choice(SEVERITIES)
        score = round(rng.uniform(0.1, 10), 1)
        fixed = rng.random() < 0.6
        seen = (NOW - timedelta(days=rng.randint(0, 400))).timestamp()
        package = f"org.example:component-{i % 700}"
        findings.append({
            "awsAccountId": "123456789012",
            "description": f"A flaw in {package} lets a remote attacker cause a denial of service "
                           "or run code through crafted input to a parser it exposes; versions "
                           "before the fixed release are affected.",
            "findingArn": f"arn:aws:inspector2:us-east-1:123456789012:finding/{i:032x}",
            "firstObservedAt": seen,
            "lastObservedAt": NOW.timestamp(),
            "updatedAt": NOW.timestamp(),
            "packageVulnerabilityDetails": {
                "cvss": [{"baseScore": score, "scoringVector":
                          "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                          "source": "NVD", "version": "3.1"}],
                "referenceUrls": [f"https://nvd.nist.gov/vuln/detail/{cve}",
                                  f"https://github.com/advisories/GHSA-{i:04x}-abcd-efgh"],
                "relatedVulnerabilities": [],
                "source": "NVD",
                "sourceUrl": f"https://nvd.nist.gov/vuln/detail/{cve}",
                "vendorCreatedAt": seen,
                "vendorSeverity": severity,
                "vulnerabilityId": cve,
                "vulnerablePackages": [{
                    "name": package, "packageManager": "JAR", "version": "1.2.3",
                    "fixedInVersion": "1.2.4" if fixed else "NotAvailable",
                    "filePath": f"app/lib/component-{i % 700}-1.2.3.jar"}],
            },
            "remediation": {"recommendation": {
                "text": "Upgrade the package to the fixed version." if fixed
                else "None Provided"}},
            "resources": [{
                "details": {"awsEcrContainerImage": {
                    "architecture": "arm64", "imageHash": digest, "imageTags": ["v1"],
                    "platform": "AMAZON_LINUX_2023", "pushedAt": NOW.timestamp(),
                    "registry": "123456789012", "repositoryName": repository}},
                "id": f"arn:aws:ecr:us-east-1:123456789012:repository/{repository}/{digest}",
                "type": "AWS_ECR_CONTAINER_IMAGE"}],
            "score": score,
            "scoreDetails": {"cvss": {"adjustments": [], "score": score, "scoreSource": "NVD",
                                      "scoringVector":
                                          "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                                      "version": "3.1"}},
            "severity": severity,
            "status": "ACTIVE",
            "title": f"{cve} - {package}",
            "type": "PACKAGE_VULNERABILITY",
            "fixAvailable": "YES" if fixed else "NO",
            "exploitAvailable": "YES" if rng.random() < 0.01 else "NO",
        })
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    return {"imageScanStatus": {"status": "ACTIVE",
                                "description": "Continuous scan is selected for image."},
            "imageScanFindings": {"findingSeverityCounts": counts, "enhancedFindings": findings}}


def serve(findings: int) -> None:
    """The worker: the moto server and the image, while the caller runs the probes.

    Prints one JSON line (the probes' environment and events), serves until its stdin is
    closed, then prints one more (the pages of findings read meanwhile)."""
    import sys

    from moto.ecr.responses import ECRResponse
    from moto.server import ThreadedMotoServer

    from tests.moto_paging import paged_scan_findings

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    try:
        from tests.support import load_event, make_world

        with paged_scan_findings(), tempfile.TemporaryDirectory() as folder:
            pages = [0]
            paged = ECRResponse.describe_image_scan_findings

            def counted(self: ECRResponse) -> Any:
                pages[0] += 1
                return paged(self)

            ECRResponse.describe_image_scan_findings = counted  # type: ignore[method-assign]
            world = make_world()
            world.publish_policy((ROOT / "policy.yaml").read_text(encoding="utf-8"))
            repo = world.repository("team-a/web")
            events, size = {}, 0
            for count in (1, findings):  # one finding: what the first event costs anyway
                digest = world.push(repo, f"v{count}")
                body = enhanced_scan(count, repo, digest)
                size = len(json.dumps(body))
                world.scanned(repo, digest, body)
                event = load_event(
                    "inspector2-scan", image_digest=digest, image_tags=[f"v{count}"],
                    repository_name=f"arn:aws:ecr:us-east-1:123456789012:repository/{repo}")
                events[count] = str(Path(folder) / f"event-{count}.json")
                Path(events[count]).write_text(json.dumps(event))
            print(json.dumps({"events": events, "json_bytes": size,
                              "env": {
                                  "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
                                  "GATEKEEPER_TABLE": world.config.table_name,
                                  "GATEKEEPER_TOPIC_ARN": world.config.topic_arn,
                                  "GATEKEEPER_POLICY_BUCKET": world.config.policy_bucket,
                                  "GATEKEEPER_POLICY_KEY": world.config.policy_key}}),
                  flush=True)
            sys.stdin.read()
            print(json.dumps({"pages": pages[0]}), flush=True)
    finally:
        server.stop()


def measure(findings: int) -> dict[str, Any]:
    """The worker serving; the baseline and measured probes, each from a small parent."""
    worker = subprocess.Popen(  # noqa: S603
        [PYTHON, "-m", "benchmarks.bench_memory", "--serve", "--findings", str(findings)],
        env=clean_env({"POWERTOOLS_TRACE_DISABLED": "true"}), cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert worker.stdin is not None and worker.stdout is not None
    try:
        ready = json.loads(worker.stdout.readline() or "null")
        if ready is None:
            raise RuntimeError("the memory benchmark's moto worker did not start")
        env = clean_env({"POWERTOOLS_TRACE_DISABLED": "true", **ready["env"]},
                        pythonpath=[FUNCTIONS / "on_scan", LAYER])
        baseline = run_json(PROBE, "import", env=env, small_parent=True)
        one = run_json(PROBE, "handle", ready["events"]["1"], env=env, small_parent=True)
        handled = run_json(PROBE, "handle", ready["events"][str(findings)], env=env,
                           small_parent=True)
        worker.stdin.close()
        pages = json.loads(worker.stdout.readline() or "{}").get("pages", 1) - 1  # 1: the small
    finally:
        if not worker.stdin.closed:
            worker.stdin.close()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return {"findings": findings, "json_bytes": ready["json_bytes"], "pages": pages,
            "baseline_kb": baseline["maxrss_kb"], "peak_kb": handled["maxrss_kb"],
            "baseline_hwm_kb": baseline["hwm_kb"], "peak_hwm_kb": handled["hwm_kb"],
            "one_kb": one["maxrss_kb"], "one_result": one["result"],
            "result": handled["result"], "seconds": handled["seconds"],
            "cpu_seconds": handled["cpu_seconds"]}


def run(findings: int | Sequence[int] = SIZES, verbose: bool = True) -> list[Row]:
    """One row for one finding, then one for each size (each measured by a worker of its
    own, against its own import-only baseline)."""
    sizes = [findings] if isinstance(findings, int) else list(findings)
    rows: list[Row] = []
    for size in sizes:
        if verbose:
            print(f"  memory: one image with {size:,} enhanced findings ...", flush=True)
        rows += _rows(measure(size), first=not rows)
    return rows


def _rows(out: dict[str, Any], first: bool) -> list[Row]:
    base_mb, peak_mb = out["baseline_kb"] / 1024, out["peak_kb"] / 1024
    one_mb = out["one_kb"] / 1024
    result = out["result"]
    one = Row(
        BENCH, "peak RSS, on_scan judging 1 enhanced finding", one_mb, "MB", base_mb,
        "imports only", LIMIT_MB, absolute=True,
        note=f"{one_mb - base_mb:+.1f} MB over the imports: what any first event costs (the "
             f"clients and their service models, the policy); "
             f"{out['one_result'].get('status')} {out['one_result'].get('verdict')}")
    return [one] * first + [Row(
        BENCH, f"peak RSS, on_scan judging {out['findings']:,} enhanced findings", peak_mb, "MB",
        base_mb, "imports only", TARGETS_MB.get(out["findings"], LIMIT_MB), absolute=True,
        note=f"{peak_mb - base_mb:+.1f} MB over importing boto3 and the handler (VmHWM "
             f"{out['peak_hwm_kb'] / 1024:.1f} vs {out['baseline_hwm_kb'] / 1024:.1f} MB); "
             f"{out['json_bytes'] / 1e6:.1f} MB of findings JSON read in {out['pages']} pages "
             f"in {out['seconds']:.1f} s ({out['cpu_seconds']:.1f} s of CPU in the handler's "
             f"process); {(peak_mb - one_mb) / out['findings'] * 1e3:.1f} MB per 1,000 "
             f"findings over one finding; {result.get('status')} {result.get('verdict')}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.findings[0])
        return
    print(table(run(args.findings)))


if __name__ == "__main__":
    main()
