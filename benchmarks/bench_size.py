"""Deployment size: the built layer and each function in .aws-sam/build, unzipped and zipped,
against Lambda's limits, and the biggest packages in the layer.

    .venv/bin/python -m benchmarks --only size [--build]

``make build`` runs first when .aws-sam/build is missing or older than a source file
(template.yaml, layers/gatekeeper/, functions/), or with ``--build``. Limits: 250 MB
unzipped for a function and all its layers; 50 MB zipped for a direct upload. Zipped sizes
are this machine's deflate of the same files (what ``sam deploy`` uploads, give or take).
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import zipfile
from collections import Counter
from pathlib import Path

from benchmarks.common import ROOT, Row, table

BENCH = "size"
BUILD = ROOT / ".aws-sam" / "build"
UNZIPPED_LIMIT = 250 * 1024 * 1024  # function code + its layers, unzipped
ZIPPED_LIMIT = 50 * 1024 * 1024  # a direct upload
SOURCES = [ROOT / "template.yaml", ROOT / "layers" / "gatekeeper", ROOT / "functions"]
TOP = 10
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _newest(paths: list[Path]) -> float:
    stamps = [p.stat().st_mtime for path in paths if path.exists()
              for p in ([path] if path.is_file() else _files(path))
              if "__pycache__" not in p.parts]
    return max(stamps, default=0.0)


def stale() -> str | None:
    """Why .aws-sam/build needs a build, or None."""
    marker = BUILD / "template.yaml"
    if not marker.exists():
        return "missing"
    if _newest(SOURCES) > marker.stat().st_mtime:
        return "older than its sources"
    return None


def build() -> str:
    done = subprocess.run(["make", "build"], cwd=ROOT, capture_output=True, text=True,  # noqa: S607
                          check=False, env=dict(os.environ))
    return "" if done.returncode == 0 else (done.stderr or done.stdout)[-1500:]


def zipped(folder: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(_files(folder)):
            archive.write(path, path.relative_to(folder))
    return buffer.tell()


def _package(layer: Path, path: Path) -> str:
    """The distribution a file of the layer belongs to, by its top-level name."""
    top = path.relative_to(layer).parts[0]
    if top.endswith((".dist-info", ".data")):
        return "(package metadata, all)"
    return top.removesuffix(".py")


def run(force_build: bool = False, verbose: bool = True) -> list[Row]:
    reason = "asked" if force_build else stale()
    built_note = ""
    if reason:
        if verbose:
            print(f"  size: .aws-sam/build {reason}: make build ...", flush=True)
        failed = build()
        built_note = f"make build ran ({reason})" if not failed else \
            f"make build failed ({reason}), sizes of the previous build: {failed.strip()}"
    if not BUILD.exists():
        return [Row(BENCH, "built artifacts", 0, "B", note="no .aws-sam/build: " + built_note)]

    rows = []
    artifacts = sorted(p for p in BUILD.iterdir() if p.is_dir())
    layers = [p for p in artifacts if (p / "python").is_dir()]
    layer_total = sum(p.stat().st_size for layer in layers for p in _files(layer))
    for layer in layers:
        files = _files(layer)
        packed = zipped(layer)
        pyc = sum(1 for p in files if p.suffix == ".pyc")
        rows.append(Row(BENCH, f"{layer.name}, unzipped", layer_total, "B", UNZIPPED_LIMIT,
                        "Lambda limit", 1.0,
                        note=f"{len(files)} files, {pyc} of them .pyc (every cold start "
                             "compiles what has none)" + (f"; {built_note}" if built_note else "")))
        rows.append(Row(BENCH, f"{layer.name}, zipped", packed, "B", ZIPPED_LIMIT,
                        "direct upload limit", 1.0))
    for folder in artifacts:
        if folder in layers:
            continue
        size = sum(p.stat().st_size for p in _files(folder))
        rows.append(Row(
            BENCH, f"{folder.name} ({size:,} B) + layer, unzipped", size + layer_total, "B",
            UNZIPPED_LIMIT, "Lambda limit", 1.0,
            note=f"{len(_files(folder))} files, {size:,} bytes unzipped, "
                 f"{zipped(folder):,} bytes zipped"))
    for layer in layers:
        root = layer / "python"
        by_package = Counter[str]()
        for path in _files(root):
            by_package[_package(root, path)] += path.stat().st_size
        size = sum(by_package.values())
        for name, bytes_ in by_package.most_common(TOP):
            rows.append(Row(BENCH, f"{layer.name} package: {name}", bytes_, "B", size,
                            "the layer"))
        runtime = sum(by_package[name] for name in RUNTIME_PROVIDED)
        rows.append(Row(BENCH, f"{layer.name}: {', '.join(RUNTIME_PROVIDED)}", runtime, "B",
                        size, "the layer",
                        note="the Lambda Python runtime provides its own boto3; the layer "
                             "ships a matching pair (layers/gatekeeper/requirements.txt) "
                             "instead, without byte code"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="run make build first")
    args = parser.parse_args()
    print(table(run(args.build)))


if __name__ == "__main__":
    main()
