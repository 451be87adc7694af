"""The layout's boundaries, checked by a plain pytest run as well as by `make test`:

- the import-linter contracts of pyproject.toml ([tool.importlinter]) hold;
- each function's app.py imports nothing but gatekeeper.handling (import-linter cannot say
  "only");
- no two modules of gatekeeper.domain import each other, directly or through other modules.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import grimp
import pytest

from tests.domain_support import ROOT

# What pytest's `pythonpath` puts first on sys.path: this checkout's packages, not an
# editable install of another one.
SOURCES = ("layers/gatekeeper", "tools", ".")
APPS = sorted((ROOT / "functions").glob("*/app.py"))


def lint_imports() -> str:
    """The lint-imports script installed beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed: install the dev extra (make install)")
    return found


def test_the_import_contracts_hold() -> None:
    # Given this checkout's packages first on the path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in SOURCES)}

    # When lint-imports checks pyproject.toml's contracts
    run = subprocess.run([lint_imports(), "--no-cache", "--no-logo"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)

    # Then every contract is kept
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout, run.stdout


def imports_of(path: Path) -> list[str]:
    """Every module an app.py imports, as written (``from a import b`` gives ``a.b``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found += [base] if base == "__future__" else [f"{base}.{a.name}" for a in node.names]
    return found


def allowed(module: str) -> bool:
    """gatekeeper.handling, a name from it, or a __future__ feature."""
    return module in ("__future__", "gatekeeper.handling") or module.startswith(
        "gatekeeper.handling.")


def test_there_are_functions_to_check() -> None:
    assert len(APPS) >= 5, APPS


@pytest.mark.parametrize("app", APPS, ids=lambda p: p.parent.name)
def test_a_function_imports_only_gatekeeper_handling(app: Path) -> None:
    # Given a function's handler module
    # When its imports are read
    imported = imports_of(app)

    # Then it imports gatekeeper.handling (or names from it), and nothing else
    assert imported, f"{app} imports nothing"
    assert [m for m in imported if not allowed(m)] == [], app
    assert any(m.startswith("gatekeeper.handling") for m in imported), app


def test_the_import_check_reads_what_is_written(tmp_path: Path) -> None:
    # Given an app.py that reaches past gatekeeper.handling
    app = tmp_path / "app.py"
    app.write_text("from __future__ import annotations\nimport boto3\n"
                   "from gatekeeper import handling, runtime\nfrom .x import y\n"
                   "from gatekeeper.handling import logger\n")

    # When its imports are read, then the others are refused
    assert [m for m in imports_of(app) if not allowed(m)] == [
        "boto3", "gatekeeper.runtime", ".x.y"]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("gatekeeper", cache_dir=None)


def test_the_domain_has_no_import_cycle(graph: grimp.ImportGraph) -> None:
    # Given the domain's modules
    domain = sorted(m for m in graph.modules if m.startswith("gatekeeper.domain."))
    assert "gatekeeper.domain.evaluation" in domain

    # When each pair is looked at, then no two reach each other
    cycles = [(graph.find_shortest_chain(a, b), graph.find_shortest_chain(b, a))
              for a, b in combinations(domain, 2)
              if graph.chain_exists(a, b) and graph.chain_exists(b, a)]
    assert cycles == []
