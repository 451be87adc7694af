"""One place for Powertools: the logger, tracer and metrics every handler shares."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "ecr-scan-gatekeeper"


class _XRayRecorderOnFirstUse:
    """Powertools' default provider, the X-Ray recorder, imported when first used: with
    tracing off, importing a handler (or the CLI) does not import the X-Ray SDK."""

    def __getattr__(self, name: str) -> Any:
        from aws_xray_sdk.core import xray_recorder

        return getattr(xray_recorder, name)


# Powertools' own test: POWERTOOLS_TRACE_DISABLED, or not in Lambda (SAM local included).
_TRACING_OFF = bool(getattr(Tracer, "_is_tracer_disabled", lambda: False)())

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, provider=_XRayRecorderOnFirstUse() if _TRACING_OFF else None)
metrics = Metrics(service=SERVICE, namespace="EcrScanGatekeeper")

EVENTBRIDGE_CORRELATION = correlation_paths.EVENT_BRIDGE

__all__ = ["EVENTBRIDGE_CORRELATION", "MetricUnit", "logger", "metrics", "tracer"]
