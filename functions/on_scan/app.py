"""Scan results (ECR Image Scan for basic scanning, Inspector2 Scan for enhanced scanning):
read every finding, judge the image against the policy, tag it and notify."""

from gatekeeper import handling
from gatekeeper.handling import EVENTBRIDGE_CORRELATION, logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handling.on_scan(event)
