"""ECR push (ECR Image Action, PUSH, SUCCESS): judge the image if it was already scanned,
otherwise record it as pending until its scan event arrives."""

from gatekeeper import handling
from gatekeeper.handling import EVENTBRIDGE_CORRELATION, logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handling.on_push(event)
