"""``gatekeeper replay-dlq``: replay the dead-letter queue through the handlers' own entries.

The queue holds EventBridge events that could not be delivered, Lambda failure records (the
event inside), requests redriven from the re-evaluation queue and failed Slack notifications.
Each is handed to the entry function of :mod:`gatekeeper.handling` its Lambda function uses
(``handle_event`` with that function's kinds, ``handle_batch``, ``handle_sns``), so routing
and handling live in one place; a message is deleted only when that succeeds. Exit 0 when
everything was replayed, 1 when something stays, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from typing import Any

from botocore.exceptions import ClientError

from gatekeeper.domain.events import (
    REQUEST_MARK,
    ImageEvent,
    Kind,
    MalformedEvent,
    parse_event,
    parse_reevaluation,
)
from gatekeeper.observability import metrics
from gatekeeper.runtime import BOTO_CONFIG
from gatekeeper.service import Gatekeeper
from gatekeeper_tools.cli.deployment import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Deployment,
    OperatorError,
    deployment_options,
    from_arguments,
    one_line,
    one_line_text,
    operator_command,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "replay-dlq", parents=[deployment_options()],
        help="replay the dead-letter queue's events through the handlers' code",
        description="Receive the dead-letter queue's messages (EventBridge events that could "
                    "not be delivered, and Lambda failure records holding the event), run "
                    "each ECR push or scan event through the code the functions run, and "
                    "delete it only when that succeeds. Events that fail again and unknown "
                    "messages stay in the queue. Exit 0 when everything was replayed, 1 when "
                    "something stays, 2 usage error.")
    parser.add_argument("--max", type=_at_least_one, metavar="N",
                        help="at most N messages (default: all)")
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would be replayed; handle and delete nothing")
    parser.set_defaults(func=operator_command("replay-dlq", lambda args: replay_dlq(
        from_arguments(args), max_messages=args.max, dry_run=args.dry_run)))


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


@dataclass(frozen=True)
class Letter:
    """A dead-letter queue message, read: the event in it (None when unreadable), where it
    came from, and the error that put it there."""

    event: dict[str, Any] | None
    origin: str
    error: str | None = None


def read_letter(body: str, attributes: Mapping[str, Any] | None = None) -> Letter:
    try:
        data = json.loads(body)
    except ValueError:
        return Letter(None, "not JSON")
    if isinstance(data, dict) and isinstance(data.get("requestPayload"), dict):
        context = data.get("requestContext") or {}
        response = data.get("responsePayload")
        error = None
        if isinstance(response, dict) and (response.get("errorType")
                                           or response.get("errorMessage")):
            error = f"{response.get('errorType', 'Error')}: {response.get('errorMessage', '')}"
        elif isinstance(context, dict) and context.get("condition"):
            error = str(context["condition"])
        function = context.get("functionArn", "?") if isinstance(context, dict) else "?"
        return Letter(data["requestPayload"], f"failed invocation of {function}", error)
    if isinstance(data, dict) and "detail-type" in data:
        attributes = attributes or {}
        code = (attributes.get("ERROR_CODE") or {}).get("StringValue")
        message = (attributes.get("ERROR_MESSAGE") or {}).get("StringValue")
        error = ": ".join(x for x in (code, message) if x) or None
        return Letter(data, "the event itself" + (" (EventBridge delivery failure)"
                                                  if code or message else ""), error)
    if isinstance(data, dict) and data.get("schema") == REQUEST_MARK:
        return Letter(data, "the re-evaluation queue (redriven)")
    return Letter(None, "neither an EventBridge event nor a Lambda failure record")


def _describe_event(event: Mapping[str, Any]) -> str:
    if event.get("schema") == REQUEST_MARK:
        return f"re-evaluation request {event.get('repository')}@{str(event.get('digest'))[:19]}"
    detail = event.get("detail") if isinstance(event.get("detail"), Mapping) else {}
    repo, digest = detail.get("repository-name"), detail.get("image-digest")
    where = f" {repo}@{str(digest)[:19]}" if repo and digest else ""
    return f"{event.get('detail-type')}{where}"


def replay_dlq(deployment: Deployment, *, max_messages: int | None = None,
               dry_run: bool = False) -> int:
    """Replay each event through the handlers' code; delete only what succeeded."""
    deployment.require("dlq_url")
    if max_messages is not None and max_messages < 1:
        raise OperatorError("--max must be at least 1")
    sqs = deployment.session.client("sqs", config=BOTO_CONFIG)
    url = str(deployment.dlq_url)
    built = cache(deployment.gatekeeper)
    slack = cache(lambda: _slack_notifier(deployment))
    seen: set[str] = set()
    to_release: list[str] = []  # receipt handles of what stays, made visible again at the end
    counts = {"replayed": 0, "failing": 0, "kept": 0}
    interrupted = False
    try:
        while max_messages is None or len(seen) < max_messages:
            wanted = 10 if max_messages is None else min(10, max_messages - len(seen))
            batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=wanted,
                                        WaitTimeSeconds=1, VisibilityTimeout=300,
                                        MessageAttributeNames=["All"]).get("Messages") or []
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh:
                break  # empty, or only messages seen already (their visibility ran out)
            for message in fresh:
                seen.add(message["MessageId"])
                outcome, line = _replay_one(message, built, dry_run, slack)
                counts[outcome] += 1
                if outcome == "replayed" and not dry_run:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    to_release.append(message["ReceiptHandle"])
                print(f"{line}  [{message['MessageId']}]")
    except KeyboardInterrupt:
        interrupted = True  # what was done is done; the rest stays in the queue
    finally:
        for handle in to_release:  # what stays in the queue is visible again at once
            with suppress(ClientError):
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle,
                                              VisibilityTimeout=0)
    verb = "would replay" if dry_run else "replayed"
    print(f"{len(seen)} message(s): {verb} {counts['replayed']}, still failing "
          f"{counts['failing']}, kept {counts['kept']}")
    if interrupted:
        print("interrupted; re-run to replay the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if counts["failing"] == counts["kept"] == 0 else EXIT_FAILED


def _replay_one(message: Mapping[str, Any], gatekeeper: Callable[[], Gatekeeper],
                dry_run: bool, slack: Callable[[], Any] | None = None) -> tuple[str, str]:
    """One message: (replayed | failing | kept, the line that says so)."""
    letter = read_letter(message.get("Body") or "", message.get("MessageAttributes"))
    if letter.event is None:
        return "kept", f"kept: unknown message ({letter.origin}); left in the queue"
    if _is_sns_event(letter.event):
        return _replay_slack(letter, slack, dry_run)
    what = _describe_event(letter.event)
    was = f" (failed with {one_line_text(letter.error)})" if letter.error else ""
    try:
        parsed = parse_event(letter.event)
    except MalformedEvent as err:
        return "failing", f"still failing: {what}: malformed event: {err}{was}"
    if not isinstance(parsed, ImageEvent):  # not for on_push nor on_scan: the queue's, maybe
        return _replay_queued(letter, str(message.get("MessageId") or "replay"), what,
                              parsed.reason, gatekeeper, dry_run)
    if dry_run:
        return "replayed", f"would replay: {what} from {letter.origin}{was}"
    from gatekeeper.handling import handle_event  # the push and scan functions' entry

    try:
        result = handle_event(letter.event, accept=_function_kinds(parsed.kind),
                              gatekeeper=gatekeeper)
    except Exception as err:
        return "failing", f"still failing: {what}: {one_line(err)}{was}"
    finally:
        metrics.clear_metrics()  # the CLI publishes no metrics (they would print to stdout)
    verdict = f" {result['verdict']}" if result.get("verdict") else ""
    return "replayed", f"replayed: {what} -> {result.get('status')}{verdict}"


def _function_kinds(kind: Kind) -> frozenset[Kind]:
    """The kinds the function that judges ``kind`` accepts (on_push's or on_scan's)."""
    from gatekeeper.handling import PUSH_KINDS, SCAN_KINDS

    return next(kinds for kinds in (PUSH_KINDS, SCAN_KINDS) if kind in kinds)


def _is_sns_event(event: Mapping[str, Any]) -> bool:
    records = event.get("Records")
    return (isinstance(records, list) and bool(records) and isinstance(records[0], dict)
            and records[0].get("EventSource") == "aws:sns")


def _slack_notifier(deployment: Deployment) -> Any:
    """The Slack notifier as the function builds it, reading the stack's secret through this
    session (so --endpoint-url reaches a local Secrets Manager too)."""
    from gatekeeper.adapters.secrets import SecretWebhooks
    from gatekeeper.adapters.webhook import WebhookPoster
    from gatekeeper.service.slack import SlackNotifier

    if not deployment.slack_secret:
        raise OperatorError("no SlackWebhookSecretArn: pass --stack (or set "
                            "GATEKEEPER_SLACK_SECRET_ARN)")
    client = deployment.session.client("secretsmanager", config=BOTO_CONFIG)
    return SlackNotifier(SecretWebhooks(deployment.slack_secret, client=client), WebhookPoster())


def _replay_slack(letter: Letter, slack: Callable[[], Any] | None,
                  dry_run: bool) -> tuple[str, str]:
    """A failed invocation of the Slack notifier: post its notifications again."""
    from gatekeeper.handling import handle_sns  # the Slack function's entry

    was = f" (failed with {one_line_text(letter.error)})" if letter.error else ""
    event = letter.event or {}
    subjects = ", ".join(str((r.get("Sns") or {}).get("Subject") or "?")
                         for r in event["Records"])
    what = f"Slack notification {subjects}"
    if dry_run:
        return "replayed", f"would re-post: {what} from {letter.origin}{was}"
    try:
        if slack is None:
            raise OperatorError("no Slack notifier")
        posted = handle_sns(event, notifier=slack)
    except OperatorError as err:
        return "kept", f"kept: {what}: {err}"
    except Exception as err:
        return "failing", f"still failing: {what}: {one_line(err)}{was}"
    finally:
        metrics.clear_metrics()
    return "replayed", f"re-posted: {what} -> {posted}"


def _replay_queued(letter: Letter, message_id: str, what: str, reason: str,
                   gatekeeper: Callable[[], Gatekeeper], dry_run: bool) -> tuple[str, str]:
    """A message of the re-evaluation queue (a sweeper request or an Inspector2 Finding event,
    redriven to the dead-letter queue), handed to that queue's function as a batch of one.
    Anything else (a schedule, an S3 event) is kept for a person to look at."""
    from gatekeeper.handling import handle_batch  # the re-evaluation function's entry

    try:
        request = parse_reevaluation(letter.event)
    except MalformedEvent as err:
        return "failing", f"still failing: {what}: malformed request: {err}"
    if not isinstance(request, ImageEvent):
        return "kept", (f"kept: {what} from {letter.origin} is not an ECR push or scan event "
                        f"this command replays ({reason})")
    if dry_run:
        return "replayed", f"would re-evaluate: {request.repository}@{request.digest[:19]}"
    witness = _Witness(gatekeeper)
    batch = {"Records": [{"messageId": message_id, "body": json.dumps(letter.event)}]}
    try:
        outcome = handle_batch(batch, gatekeeper=witness)
    except Exception as err:
        return "failing", f"still failing: {what}: {one_line(err)}"
    finally:
        metrics.clear_metrics()
    results = outcome.get("results") or []
    if outcome.get("batchItemFailures") or not results:
        why = one_line(witness.error) if witness.error else "see --verbose"
        return "failing", f"still failing: {what}: {why}"
    result = results[0]
    return "replayed", (f"re-evaluated ({request.trigger}): {request.repository}@"
                        f"{request.digest[:19]} -> {result.get('status')} "
                        f"{result.get('verdict') or ''}")


class _Witness:
    """The gatekeeper factory handed to ``handle_batch``, keeping the error of a failed
    ``handle``: the batch entry logs it and reports only the message as failed, and the
    operator is told why."""

    def __init__(self, gatekeeper: Callable[[], Gatekeeper]) -> None:
        self._gatekeeper = gatekeeper
        self.error: Exception | None = None

    def __call__(self) -> Any:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gatekeeper(), name)

    def handle(self, event: ImageEvent) -> Any:
        try:
            return self._gatekeeper().handle(event)
        except Exception as err:
            self.error = err
            raise
