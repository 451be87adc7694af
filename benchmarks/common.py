"""What every benchmark shares: result rows, the table, fresh subprocesses, a quiet AWS setup.

A shared machine is noisy: every figure is reported beside a baseline measured in the same
run, on the same machine, and judged by their ratio.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "gatekeeper"
FUNCTIONS = ROOT / "functions"
PYTHON = sys.executable

# What a function's environment holds in Lambda, as far as import and init care (the names
# are the template's; the values are placeholders, never a real account).
LAMBDA_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_SERVICE_NAME": "ecr-scan-gatekeeper",
    "POWERTOOLS_METRICS_NAMESPACE": "EcrScanGatekeeper",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_DEV": "false",
    "GATEKEEPER_TABLE": "verdicts",
    "GATEKEEPER_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:verdicts",
    "GATEKEEPER_POLICY_BUCKET": "gatekeeper-policy",
    "GATEKEEPER_POLICY_KEY": "policy.yaml",
    "GATEKEEPER_REEVALUATION_QUEUE_URL":
        "https://sqs.us-east-1.amazonaws.com/123456789012/reevaluations",
}


@dataclass(frozen=True)
class Row:
    """One figure: a measurement beside its baseline, their ratio, and the target."""

    bench: str
    what: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_what: str = ""
    target: float | None = None  # the most the ratio (or, with absolute, the value) may be
    absolute: bool = False  # the target bounds the value itself, not the ratio
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def ok(self) -> bool | None:
        if self.target is None:
            return None
        measured = self.value if self.absolute else self.ratio
        return None if measured is None else measured <= self.target

    def as_dict(self) -> dict[str, Any]:
        return {"bench": self.bench, "what": self.what, "value": self.value, "unit": self.unit,
                "baseline": self.baseline, "baseline_what": self.baseline_what,
                "ratio": self.ratio, "target": self.target, "absolute": self.absolute,
                "ok": self.ok, "note": self.note}


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "B":
        return f"{value / 2**20:.2f} MiB" if value >= 2**17 else f"{value:,.0f} B"
    if unit in ("calls", "files", "invocations"):
        return f"{value:.0f} {unit if value != 1 else unit[:-1]}"
    text = f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 \
        else f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(rows: Sequence[Row], title: str = "") -> str:
    head = ("benchmark", "measurement", "baseline", "value", "ratio", "target", "ok")
    lines = []
    for row in rows:
        baseline = (f"{row.baseline_what} {number(row.baseline, row.unit)}".strip()
                    if row.baseline is not None else row.baseline_what or "-")
        if row.target is None:
            target = "report"
        elif row.absolute:
            target = f"<= {number(row.target, row.unit)}"
        else:
            target = f"<= {row.target:g}x"
        ok = {True: "yes", False: "NO", None: ""}[row.ok]
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        lines.append((row.bench, row.what, baseline, number(row.value, row.unit), ratio, target,
                      ok))
    widths = [max(len(str(c)) for c in column) for column in zip(head, *lines, strict=True)]
    rule = "  ".join("-" * w for w in widths)
    out = [title] if title else []
    out += ["  ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True)), rule]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    notes = [f"  {row.what}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def best_and_median(samples: Iterable[float]) -> tuple[float, float]:
    values = sorted(samples)
    return values[0], statistics.median(values)


# Byte code for the subprocesses, outside the tree (which keeps none: PYTHONDONTWRITEBYTECODE),
# so that an import measures importing rather than compiling, as with a runtime's own boto3.
PYCACHE = Path(tempfile.gettempdir()) / "gatekeeper-bench-pycache"


def clean_env(extra: Mapping[str, str] | None = None, *, pythonpath: Sequence[Path] = (),
              write_bytecode: bool = False) -> dict[str, str]:
    """This process's environment without anything that points at a real AWS account or
    changes how Python imports, plus the Lambda-like settings and ``extra``. Byte code is
    read from PYCACHE, and written there only with ``write_bytecode`` (a warm-up run)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "POWERTOOLS_", "GATEKEEPER_", "PYTHON", "_X_AMZN"))
           and k not in ("LAMBDA_TASK_ROOT",)}
    env.update(LAMBDA_ENV)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if not write_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    env.update(extra or {})
    return env


# A parent of a few MB: on Linux a child's ru_maxrss starts at its parent's RSS at the fork.
SMALL_PARENT = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def run_json(code: str, *args: str, env: Mapping[str, str], cwd: Path = ROOT,
             timeout: float = 600, small_parent: bool = False) -> Any:
    """Run ``code`` in a fresh interpreter; its last line of stdout is JSON, returned.
    ``small_parent``: started by a fresh interpreter of its own, so that its ru_maxrss is
    its own whatever this process holds."""
    command = [PYTHON, "-c", code, *args]
    if small_parent:
        command = [PYTHON, "-c", SMALL_PARENT, *command]
    done = subprocess.run(command, env=dict(env), cwd=cwd,  # noqa: S603
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def handler_dirs() -> list[Path]:
    """Every function's folder (functions/<name>/app.py), as the template deploys them."""
    return sorted(p.parent for p in FUNCTIONS.glob("*/app.py"))


def run_worker(module: str, *args: str, env: Mapping[str, str], timeout: float = 3600) -> Any:
    """Run ``python -m module --worker --out FILE *args`` in a fresh interpreter, its stdout
    (the handlers' logs and metrics) discarded; return the JSON it wrote to FILE."""
    with tempfile.TemporaryDirectory(prefix="gatekeeper-bench-") as folder:
        out = Path(folder) / "result.json"
        done = subprocess.run(  # noqa: S603
            [PYTHON, "-m", module, "--worker", "--out", str(out), *args], env=dict(env),
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            timeout=timeout, check=False)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"{module} worker failed ({done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
        return json.loads(out.read_text())


class LambdaContext:
    """What Powertools reads from a Lambda context."""

    function_name = "gatekeeper-bench"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:gatekeeper-bench"
    aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000
