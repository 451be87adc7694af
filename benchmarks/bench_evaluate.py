"""Policy evaluation speed, as a ratio to a floor measured in the same run.

    .venv/bin/python -m benchmarks.bench_evaluate [--findings 10000] [--exceptions 1000]

Workload: one image with N enhanced findings (mixed severities, fixes, exploits, scores,
EPSS, first-seen dates) against a policy with M exceptions (half of them match findings of
this image, the rest other ids or other repositories) and every rule switched on.
Floor: a loop that only reads each finding's id and severity. Each figure is the best of
several repeats, so a busy neighbour on a shared machine inflates neither side for long.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.common import Row
from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import Finding, from_enhanced
from gatekeeper.domain.policy import parse_policy

BENCH = "evaluate"
TARGET = 3.0

SEVERITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNTRIAGED"]
NOW = datetime(2026, 11, 27, tzinfo=UTC)


def raw_findings(count: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(count):
        fixed = rng.random() < 0.6
        out.append({
            "severity": rng.choice(SEVERITIES),
            "fixAvailable": "YES" if fixed else "NO",
            "exploitAvailable": "YES" if rng.random() < 0.01 else "NO",
            "inspectorScore": round(rng.uniform(0, 10), 1),
            "epss": {"score": round(rng.random() ** 4, 5)},
            "firstObservedAt": (NOW - timedelta(days=rng.randint(0, 400))).timestamp(),
            "packageVulnerabilityDetails": {
                "vulnerabilityId": f"CVE-2024-{i:05d}",
                "vulnerablePackages": [{
                    "name": f"pkg{i % 300}", "version": "1.0.0",
                    "fixedInVersion": "1.0.1" if fixed else "NotAvailable"}],
            },
        })
    return out


RULES = ["  ignore_unfixed: true", "  min_score: 4.0",
         "  block_if_exploit_available: true", "  block_if_epss_at_least: 0.99",
         "  grace_days: {HIGH: 7, MEDIUM: 30}"]


def policy_text(exceptions: int, findings: int, rng: random.Random, rules: bool) -> str:
    lines = ["version: 1", "default:",
             "  max_findings: {CRITICAL: 0, HIGH: 5}",
             "  warn_findings: {MEDIUM: 50}",
             *(RULES if rules else []),
             "repositories:", "  - match: 'sandbox/*'", "    mode: monitor",
             "exceptions:"]
    elsewhere = "\n    repositories: ['other/*']"
    for i in range(exceptions):
        if i % 2 == 0:  # half match findings of this image
            cve, extra = f"CVE-2024-{rng.randrange(findings):05d}", ""
        elif i % 4 == 1:  # a quarter name other vulnerabilities
            cve, extra = f"CVE-2023-{i:05d}", ""
        else:  # a quarter apply to other repositories
            cve, extra = f"CVE-2024-{rng.randrange(findings):05d}", elsewhere
        package = f"pkg{int(cve[-5:]) % 300}" if i % 8 else f"pkg{rng.randrange(300)}"
        lines.append(f"  - id: {cve}\n    package: {package}\n"
                     f"    expires: 2027-0{1 + i % 9}-15\n    reason: accepted risk {i}\n"
                     f"    owner: team{i % 7}@example.com{extra}")
    return "\n".join(lines) + "\n"


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@dataclass
class Figures:
    """Every figure of this benchmark: seconds, and bytes for the traced peaks."""

    floor: float
    raw_floor: float
    normalise: float
    evaluate: list[dict[str, Any]]  # label, seconds, peak, outcome, counted, ignored, ...


def measure(findings_count: int = 10_000, exceptions: int = 1_000,
            repeats: int = 15) -> Figures:
    rng = random.Random(7)
    raw = raw_findings(findings_count, rng)
    findings: list[Finding] = [from_enhanced(r) for r in raw]

    def floor() -> None:
        for finding in findings:
            finding.id
            finding.severity

    def raw_floor() -> None:
        for item in raw:
            item["packageVulnerabilityDetails"]["vulnerabilityId"]
            item["severity"]

    def normalise() -> None:
        [from_enhanced(r) for r in raw]

    floor_s = best(floor, repeats)
    evaluated = []
    for label, rules in (("limits + exceptions", False), ("every rule switched on", True)):
        policy = parse_policy(policy_text(exceptions, findings_count, random.Random(11),
                                          rules), version="bench")
        eval_s = best(lambda p=policy: evaluation.evaluate(p, "team-a/web", findings, NOW), repeats)
        tracemalloc.start()
        verdict = evaluation.evaluate(policy, "team-a/web", findings, NOW)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        evaluated.append({"label": label, "seconds": eval_s, "peak": peak,
                          "outcome": str(verdict.outcome), "counted": len(verdict.counted),
                          "ignored": len(verdict.ignored),
                          "exceptions_used": len(verdict.exceptions_used)})
    return Figures(floor=floor_s, raw_floor=best(raw_floor, repeats),
                   normalise=best(normalise, max(3, repeats // 3)), evaluate=evaluated)


def run(findings: int = 10_000, exceptions: int = 1_000, repeats: int = 15,
        verbose: bool = True) -> list[Row]:
    """The figures as rows of the suite's table (python -m benchmarks)."""
    out = measure(findings, exceptions, repeats)
    rows = [Row(BENCH, f"evaluate {findings:,} findings, {exceptions:,} exceptions, "
                       f"{item['label']}", item["seconds"] * 1e3, "ms", out.floor * 1e3,
                "read id + severity", TARGET,
                note=f"{item['outcome']}, counted {item['counted']}, ignored {item['ignored']} "
                     f"(exceptions used: {item['exceptions_used']}); traced peak "
                     f"{item['peak'] / 1e6:.2f} MB")
            for item in out.evaluate]
    rows.append(Row(BENCH, f"normalise {findings:,} raw enhanced findings -> Finding",
                    out.normalise * 1e3, "ms", out.raw_floor * 1e3, "read id + severity"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--findings", type=int, default=10_000)
    parser.add_argument("--exceptions", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    out = measure(args.findings, args.exceptions, args.repeats)
    print(f"image: {args.findings} enhanced findings; policy: {args.exceptions} exceptions")
    print(f"floor (read id + severity of each Finding):   {out.floor * 1e3:8.2f} ms")
    for item in out.evaluate:
        eval_s = item["seconds"]
        print(f"evaluate, {item['label'] + ':':<24}{eval_s * 1e3:8.2f} ms   ratio "
              f"{eval_s / out.floor:5.2f}x  (target <= {TARGET:g}x); {item['outcome']}, counted "
              f"{item['counted']}, ignored {item['ignored']} (exceptions used: "
              f"{item['exceptions_used']}); peak {item['peak'] / 1e6:.2f} MB")
    print(f"raw floor (read id + severity of each dict):  {out.raw_floor * 1e3:8.2f} ms")
    print(f"normalise (raw enhanced finding -> Finding):  {out.normalise * 1e3:8.2f} ms   ratio "
          f"{out.normalise / out.raw_floor:5.2f}x  (reported, no target)")


if __name__ == "__main__":
    main()
