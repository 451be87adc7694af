"""Fixtures for the template tests: the transformed template, and the stack deployed in moto."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from gatekeeper_tools.local.stack import LocalDeployment, transform_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def cfn() -> dict[str, Any]:
    """template.yaml as plain CloudFormation (the SAM translator, offline)."""
    return transform_template(TEMPLATE, REGION)


@contextmanager
def deployed(**options: Any) -> Iterator[LocalDeployment]:
    """The template deployed into moto (fake credentials, us-east-1, no real AWS);
    ``options`` go to LocalDeployment.create (parameters, stack name)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
                            "AWS_REGION": REGION}.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        with mock_aws():
            yield LocalDeployment.create(TEMPLATE, region=REGION, **options)


@pytest.fixture(scope="module")
def deployment() -> Iterator[LocalDeployment]:
    """Given the template deployed into moto (fake credentials, us-east-1, no real AWS)."""
    with deployed() as stack:
        yield stack
