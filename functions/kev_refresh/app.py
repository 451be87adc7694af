"""Daily schedule: download CISA's Known Exploited Vulnerabilities catalog to the policy bucket
(a failed refresh keeps the last copy and alerts the operator topic)."""

from gatekeeper import handling
from gatekeeper.handling import EVENTBRIDGE_CORRELATION, logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handling.on_kev_refresh(event)
