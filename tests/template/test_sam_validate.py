"""`sam validate --lint`: the SAM translator and cfn-lint both accept template.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.template.conftest import ROOT


@pytest.mark.sam
def test_sam_validate_lint_passes() -> None:
    # Given the SAM CLI (`make test` puts .tools/sam/bin on PATH)
    sam = shutil.which("sam")
    if sam is None:
        pytest.fail("the SAM CLI is not on PATH: run `make test` (it installs .tools/sam "
                    "and puts it on PATH), or put `sam` on PATH yourself")

    # When the template is validated with cfn-lint, offline
    done = subprocess.run(
        [sam, "validate", "--lint", "--template-file", "template.yaml"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )

    # Then it passes
    assert done.returncode == 0, f"sam validate --lint failed:\n{done.stdout}\n{done.stderr}"
    assert "is a valid SAM Template" in done.stdout + done.stderr
