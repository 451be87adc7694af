"""Amazon ECS service deployment lifecycle hook: answer SUCCEEDED only when every container
image of the deployment's task definition carries an approved, signed verdict (FAILED rolls
the deployment back)."""

from gatekeeper import handling
from gatekeeper.handling import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path="executionId", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event, context):
    return handling.on_ecs_hook(event)
