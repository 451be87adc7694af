"""Hourly schedule and policy uploads: queue the images whose verdict may have changed
(an exception expired, a grace period ended, no scan in time, a new policy version), page by
page; the sweep queue brings back what an earlier invocation handed on."""

from gatekeeper import handling
from gatekeeper.handling import EVENTBRIDGE_CORRELATION, logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handling.on_sweep(event, context)
