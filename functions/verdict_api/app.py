"""The read-only verdict API behind a Lambda function URL (AWS_IAM): an image's recorded
verdict and its signed envelope, by digest or by tag."""

from gatekeeper import handling
from gatekeeper.handling import FUNCTION_URL_CORRELATION, logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=FUNCTION_URL_CORRELATION)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handling.on_verdict_api(event)
