"""Scan results (ECR Image Scan for basic scanning, Inspector2 Scan for enhanced scanning):
read every finding, judge the image against the policy, tag it and notify."""

from gatekeeper import runtime
from gatekeeper.domain.events import Kind
from gatekeeper.entry import handle_event
from gatekeeper.observability import EVENTBRIDGE_CORRELATION, logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=EVENTBRIDGE_CORRELATION)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handle_event(event, accept={Kind.BASIC_SCAN, Kind.ENHANCED_SCAN},
                        gatekeeper=runtime.gatekeeper)
