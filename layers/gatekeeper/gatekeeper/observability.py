"""One place for Powertools: the logger, tracer and metrics every handler shares."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = "ecr-scan-gatekeeper"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace="EcrScanGatekeeper")

EVENTBRIDGE_CORRELATION = correlation_paths.EVENT_BRIDGE

__all__ = ["EVENTBRIDGE_CORRELATION", "MetricUnit", "logger", "metrics", "tracer"]
