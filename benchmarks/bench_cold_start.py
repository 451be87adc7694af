"""Cold start: each handler's import (its init: nothing runs at import but imports and module
constants) against ``import boto3`` alone, and the clients it builds on its first event
against creating the same boto3 clients directly.

    .venv/bin/python -m benchmarks --only cold_start [--runs 7]

Every sample is a fresh interpreter, laid out as Lambda lays out a function: its folder
(``functions/<name>``, /var/task) and the layer's (``layers/gatekeeper``, /opt/python) on the
path, the module ``app``, byte code compiled beforehand (benchmarks.common.PYCACHE). Samples
of all targets are interleaved round by round, so a busy neighbour slows every target alike;
each figure is the best of the runs (the median is in the notes). A handler's process times
its ``import boto3`` on its own first, which gives a second, paired ratio (in the notes).

* tracing off (POWERTOOLS_TRACE_DISABLED=true), target within 1.3x of ``import boto3``;
* tracing on (LAMBDA_TASK_ROOT set, as in Lambda with Tracing: Active): reported;
* first event: the cached factories the handler calls (``runtime.gatekeeper()``, ...) and
  its first invocation's own lazy work, against ``boto3.session.Session()`` and the same
  clients with the same config created directly, in a process that imported the same handler.

Times are CPU time of the measured process (user + system), which a busy neighbour inflates
far less than wall-clock time.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from benchmarks.common import (
    FUNCTIONS,
    LAYER,
    PYCACHE,
    ROOT,
    Row,
    best_and_median,
    clean_env,
    handler_dirs,
    run_json,
    table,
)

BENCH = "cold_start"
TARGET = 1.3

# Imports the modules named (comma-separated) one after another: "boto3,app" is the handler's
# import, with the part boto3 takes timed on its own (a baseline paired in the same process).
IMPORT_PROBE = r"""
import importlib, sys, time
parts = []
for module in sys.argv[1].split(","):
    start = time.process_time()
    importlib.import_module(module)
    parts.append(time.process_time() - start)
import json
print(json.dumps({"seconds": sum(parts), "parts": parts,
                  "xray": "aws_xray_sdk.core" in sys.modules, "yaml": "yaml" in sys.modules}))
"""

# The factories a handler calls on its first event are the cached functions of gatekeeper.runtime
# that its entry function (gatekeeper.handling.on_push, ...) names.
FIRST_EVENT_PROBE = r"""
import importlib, inspect, json, re, sys, time
mode, module = sys.argv[1:3]
app = importlib.import_module(module)
import boto3.session
from gatekeeper import runtime
from gatekeeper import handling
entries = re.findall(r"handling\.(\w+)\(", inspect.getsource(app))
factories = sorted({f"runtime.{n}" for entry in entries
                    for n in re.findall(r"runtime\.(\w+)",
                                        inspect.getsource(getattr(handling, entry)))
                    if hasattr(getattr(runtime, n, None), "cache_clear")})
invoked = None
if mode == "floor":
    services = sys.argv[3].split(",")
    start = time.process_time()
    session = boto3.session.Session()
    clients = [session.client(name, config=runtime.BOTO_CONFIG) for name in services]
    took = time.process_time() - start
else:
    services = []
    original = boto3.session.Session.client
    def client(self, service_name, *args, **kwargs):
        services.append(service_name)
        return original(self, service_name, *args, **kwargs)
    boto3.session.Session.client = client
    start = time.process_time()
    for name in factories:
        module, attribute = name.split(".")
        try:
            getattr(runtime, attribute)()
        except Exception:
            pass  # a factory needing what this probe does not set (a secret's ARN)
    took = time.process_time() - start
    # The first invocation's own lazy work (Powertools, a tracer provider imported on first
    # use), with an event every handler ignores without an AWS call.
    class Context:
        function_name = "gatekeeper"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:gatekeeper"
        aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"
    with open(sys.argv[3], encoding="utf-8") as handle:
        event = json.load(handle)
    start = time.process_time()
    try:
        app.handler(event, Context())
        invoked = time.process_time() - start
    except Exception:
        invoked = None
print(json.dumps({"seconds": took, "services": services, "factories": factories,
                  "invoked": invoked, "xray": "aws_xray_sdk.core" in sys.modules}))
"""

def _env(function_dir: Path | None, tracing: bool, *, bytecode: str = "cached"
         ) -> dict[str, str]:
    """bytecode: "cached" (read from PYCACHE), "warm" (write it there), or "stdlib" (only the
    standard library's, as in Lambda with a layer that ships none)."""
    extra = {"POWERTOOLS_TRACE_DISABLED": "false" if tracing else "true"}
    if function_dir is not None:
        extra["LAMBDA_TASK_ROOT"] = str(function_dir)
    path = [function_dir, LAYER] if function_dir is not None else [LAYER]
    env = clean_env(extra, pythonpath=path, write_bytecode=bytecode == "warm")
    if bytecode == "stdlib":
        env["PYTHONPYCACHEPREFIX"] = str(STDLIB_PYCACHE)
    return env


def _stdlib_only_bytecode() -> None:
    """STDLIB_PYCACHE: PYCACHE without the byte code of the venv's packages and the layer."""
    shutil.rmtree(STDLIB_PYCACHE, ignore_errors=True)
    shutil.copytree(PYCACHE, STDLIB_PYCACHE)
    shutil.rmtree(STDLIB_PYCACHE / str(ROOT).lstrip("/"))


STDLIB_PYCACHE = Path(tempfile.gettempdir()) / "gatekeeper-bench-pycache-stdlib"
IGNORED_EVENT = ROOT / "events" / "ecr-image-delete.json"


def run(runs: int = 7, verbose: bool = True) -> list[Row]:
    functions = handler_dirs()
    # label -> (probe args, env); every label is sampled once a round, in a rotating order
    imports: dict[str, tuple[list[str], dict[str, str]]] = {
        "boto3": (["boto3"], _env(None, tracing=False))}
    for folder in functions:
        imports[f"{folder.name}|off"] = (["boto3,app"], _env(folder, tracing=False))
        imports[f"{folder.name}|on"] = (["boto3,app"], _env(folder, tracing=True))
    scan = next((f for f in functions if f.name == "on_scan"), None)
    if scan is not None:
        imports["on_scan|nobytecode"] = (["boto3,app"], _env(scan, False, bytecode="stdlib"))

    # Warm-up: byte code for every module any probe imports, written to PYCACHE.
    for label, (args, _) in imports.items():
        folder = FUNCTIONS / label.split("|")[0] if label != "boto3" else None
        run_json(IMPORT_PROBE, *args, env=_env(folder, "|on" in label, bytecode="warm"))
    _stdlib_only_bytecode()

    # Which clients each handler builds on its first event (one probe), to create the same.
    services: dict[str, str] = {}
    factories: dict[str, list[str]] = {}
    for folder in functions:
        try:
            probe = run_json(FIRST_EVENT_PROBE, "handler", "app", str(IGNORED_EVENT),
                             env=_env(folder, False, bytecode="warm"))
        except RuntimeError as err:
            print(f"  {folder.name}: first event not measured: {err}")
            continue
        services[folder.name] = ",".join(probe["services"])
        factories[folder.name] = [f.split(".")[-1] for f in probe["factories"]]

    samples: dict[str, list[float]] = defaultdict(list)
    loaded: dict[str, dict[str, bool]] = {}
    labels = list(imports)
    for round_ in range(runs):
        for label in labels[round_ % len(labels):] + labels[:round_ % len(labels)]:
            args, env = imports[label]
            out = run_json(IMPORT_PROBE, *args, env=env)
            samples[label].append(out["seconds"])
            if len(out["parts"]) == 2:
                samples[f"{label}|paired"].append(out["seconds"] / out["parts"][0])
            loaded[label] = {"X-Ray SDK": out["xray"], "yaml": out["yaml"]}
        for name in services:
            env = _env(FUNCTIONS / name, tracing=False)
            first = run_json(FIRST_EVENT_PROBE, "handler", "app", str(IGNORED_EVENT), env=env)
            samples[f"{name}|first"].append(first["seconds"])
            if first["invoked"] is not None:
                samples[f"{name}|invoked"].append(first["invoked"])
            if services[name]:  # (its first round writes the byte code it needs)
                samples[f"{name}|floor"].append(run_json(
                    FIRST_EVENT_PROBE, "floor", "app", services[name], env=env)["seconds"])
        if verbose:
            print(f"  cold start: round {round_ + 1}/{runs} done", flush=True)

    def ms(label: str) -> tuple[float, float]:
        best, median = best_and_median(samples[label])
        return best * 1e3, median * 1e3

    def paired(label: str) -> str:
        best, median = best_and_median(samples[f"{label}|paired"])
        return f"{median:.2f}x (median; best {best:.2f}x)"

    base, base_median = ms("boto3")
    rows = []
    for folder in functions:
        name = folder.name
        off, off_median = ms(f"{name}|off")
        on, on_median = ms(f"{name}|on")
        heavy = " and ".join(k for k, v in loaded[f"{name}|off"].items() if v) or "neither"
        rows.append(Row(BENCH, f"{name}: import, tracing off", off, "ms", base, "import boto3",
                        TARGET, note=f"median {off_median:.0f} ms vs {base_median:.0f} ms; "
                                     f"paired in each process {paired(name + '|off')}; "
                                     f"X-Ray SDK and yaml loaded at import: {heavy}"))
        rows.append(Row(BENCH, f"{name}: import, tracing on", on, "ms", base, "import boto3",
                        note=f"median {on_median:.0f} ms; tracing on costs "
                             f"{on - off:+.0f} ms (best) / {on_median - off_median:+.0f} ms "
                             "(median) over tracing off"))
        invoked = samples.get(f"{name}|invoked") or []
        if services.get(name):
            # the factories, then the first invocation's own work, sample by sample
            total = [f + i for f, i in zip(samples[f"{name}|first"], invoked, strict=False)]
            samples[f"{name}|total"] = total or samples[f"{name}|first"]
            first, first_median = ms(f"{name}|total")
            factories_ms, _ = ms(f"{name}|first")
            floor, floor_median = ms(f"{name}|floor")
            own = f"{ms(f'{name}|invoked')[0]:.0f} ms" if invoked else "not measured"
            rows.append(Row(
                BENCH, f"{name}: first event, {'+'.join(factories[name])}() + 1st call", first,
                "ms", floor, "same clients, direct",
                note=f"median {first_median:.0f} ms vs {floor_median:.0f} ms direct; "
                     f"building the clients ({services[name]}) {factories_ms:.0f} ms, the "
                     f"first invocation's own work {own} (Powertools' first-call work, and "
                     "with tracing off the X-Ray SDK, imported on first use; an ignored "
                     "event, no AWS call)"))
        elif invoked:
            own_best, own_median = ms(f"{name}|invoked")
            rows.append(Row(
                BENCH, f"{name}: first call (no client built before it)", own_best, "ms",
                note=f"median {own_median:.0f} ms; an ignored event right after import"))
    if "on_scan|nobytecode" in samples:
        cold, cold_median = ms("on_scan|nobytecode")
        warm, _ = ms("on_scan|off")
        rows.append(Row(BENCH, "on_scan: import, layer without byte code", cold, "ms", base,
                        "import boto3", note=(
                            f"median {cold_median:.0f} ms, {cold - warm:+.0f} ms over the same "
                            "import with byte code: the layer's modules (boto3 and botocore "
                            "included) compiled from source at every cold start, as in Lambda "
                            "with a layer from plain sam build, which ships no .pyc (make build "
                            "compiles the layer)")))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(table(run(args.runs)))


if __name__ == "__main__":
    main()
