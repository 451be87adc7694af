"""The benchmark suite, apart from the tests: ``python -m benchmarks`` (``make bench``).

    .venv/bin/python -m benchmarks                       # everything (a few minutes)
    .venv/bin/python -m benchmarks --only cold_start     # one (or --only a,b)
    .venv/bin/python -m benchmarks --only throughput --events 1000
    .venv/bin/python -m benchmarks --only gate --runs 500
    .venv/bin/python -m benchmarks --only sweep             # due index vs full Scan; paged
    .venv/bin/python -m benchmarks --only sweep --sweep-sizes 10000,20000,40000  # bigger
    .venv/bin/python -m benchmarks --only simulate          # policy simulate, 1,000 images
    .venv/bin/python -m benchmarks --only organization      # the hub, 20 accounts x 20 images

A shared machine is noisy: each figure is printed beside a baseline measured in the same run
and judged by their ratio (or, for memory and size, against a Lambda limit). Call counts are
the exception: they are deterministic, so tests/integration/test_api_budget.py asserts them
too. Exit status 0 whatever the figures; with --strict, 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import Row, table

BENCHMARKS = ("size", "api_budget", "cold_start", "throughput", "gate", "memory", "sweep",
              "simulate", "evaluate", "organization")


def _runner(name: str, args: argparse.Namespace) -> Callable[[], list[Row]]:
    # Imported on demand; sweep (moto) and evaluate run in this process, last (they grow it:
    # memory's probes have small parents of their own anyway).
    if name == "size":
        from benchmarks import bench_size
        return lambda: bench_size.run(force_build=args.build)
    if name == "api_budget":
        from benchmarks import bench_api_budget
        return bench_api_budget.run
    if name == "cold_start":
        from benchmarks import bench_cold_start
        return lambda: bench_cold_start.run(runs=args.runs or 7)
    if name == "throughput":
        from benchmarks import bench_throughput
        return lambda: bench_throughput.run(events=args.events)
    if name == "gate":
        from benchmarks import bench_gate
        return lambda: bench_gate.run(runs=args.runs or 200)
    if name == "memory":
        from benchmarks import bench_memory
        return lambda: bench_memory.run(findings=args.findings or bench_memory.SIZES)
    if name == "sweep":
        from benchmarks import bench_sweep
        sizes = tuple(args.sweep_sizes or bench_sweep.SWEEP_SIZES)
        return lambda: bench_sweep.run(sweep_sizes=sizes)
    if name == "simulate":
        from benchmarks import bench_simulate
        return bench_simulate.run
    if name == "organization":
        from benchmarks import bench_organization
        return lambda: bench_organization.run(
            args.accounts, args.images,
            tuple(args.sweep_sizes or bench_organization.SWEEP_SIZES))
    from benchmarks import bench_evaluate
    return lambda: bench_evaluate.run(findings=(args.findings or [10_000])[0],
                                      exceptions=args.exceptions)


def _sizes(value: str) -> list[int]:
    """``10000`` or ``10000,50000``: image sizes, in findings."""
    try:
        sizes = [int(n) for n in value.split(",") if n.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a list of counts: {value}") from err
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"not a list of counts: {value}")
    return sizes


def _names(values: list[str]) -> list[str]:
    chosen = [n.strip() for value in values for n in value.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {', '.join(unknown)}; "
                         f"choose from {', '.join(BENCHMARKS)}")
    return [n for n in BENCHMARKS if n in chosen] if chosen else list(BENCHMARKS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="benchmarks: " + ", ".join(BENCHMARKS))
    parser.add_argument("--only", action="append", default=[], metavar="NAME[,NAME]",
                        help="run only these benchmarks")
    parser.add_argument("--runs", type=int, default=None,
                        help="cold_start: fresh interpreters per target (default 7); gate: "
                             "runs of each check (default 200)")
    parser.add_argument("--events", type=int, default=200,
                        help="throughput: scan-complete events (default 200; 1000 for the "
                             "figure of record)")
    parser.add_argument("--findings", type=_sizes, default=None, metavar="N[,N]",
                        help="memory: findings of the image, one figure per size (default "
                             "10000,50000); evaluate: the first size (default 10000)")
    parser.add_argument("--sweep-sizes", type=_sizes, default=None, metavar="N[,N]",
                        help="sweep: recorded images of each paged policy sweep (default "
                             "1000,2000,4000), extrapolated to 100,000 by their slope; "
                             "organization: of each policy sweep (default 2000,5000)")
    parser.add_argument("--exceptions", type=int, default=1_000,
                        help="evaluate: exceptions in the policy (default 1000)")
    parser.add_argument("--accounts", type=int, default=20,
                        help="organization: member accounts (default 20; 100 for the figure "
                             "of record)")
    parser.add_argument("--images", type=int, default=20,
                        help="organization: images per account (default 20; 100)")
    parser.add_argument("--build", action="store_true",
                        help="size: run make build first even if the build looks current")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every row here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    rows: list[Row] = []
    for name in _names(args.only):
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        got = _runner(name, args)()
        rows += got
        print(f"{table(got)}\n({name}: {time.perf_counter() - started:.0f} s)\n", flush=True)

    missed = [row for row in rows if row.ok is False]
    print(f"{len(rows)} figures, {sum(r.ok is not None for r in rows)} with a target, "
          f"{len(missed)} missed" + "".join(f"\n  missed: {r.bench}: {r.what}" for r in missed))
    if args.json:
        args.json.write_text(json.dumps([row.as_dict() for row in rows], indent=2))
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
