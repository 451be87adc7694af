"""Verdict topic (SNS): post each notification to Slack through the incoming webhook whose
URL is kept in Secrets Manager."""

from gatekeeper import handling
from gatekeeper.handling import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handling.on_slack(event, context)
