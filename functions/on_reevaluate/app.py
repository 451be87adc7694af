"""Re-evaluation queue (SQS batches): Inspector2 Finding events and the sweeper's requests.
Each image in a batch is judged once: a burst of findings yields one verdict change."""

from gatekeeper import handling
from gatekeeper.handling import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handling.on_reevaluate(event)
