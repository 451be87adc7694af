"""Verdict topic (SNS): post each notification to Slack through the incoming webhook whose
URL is kept in Secrets Manager."""

from gatekeeper import slack_entry
from gatekeeper.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return slack_entry.handle_sns(event, notifier=slack_entry.notifier, context=context)
