"""``gatekeeper webhook serve``: the Kubernetes validating admission webhook.

Serves HTTPS (``POST /validate``, ``GET /healthz``; :mod:`gatekeeper_tools.webhook`) until
SIGTERM or Ctrl-C, each image decided by the stack's verdict gate
(``gatekeeper.runtime.verdict_gate()``: signed, current, APPROVED verdicts only), built as
the functions build theirs (:class:`gatekeeper.config.GateConfig` from the environment) for
the table and signing key named by ``--stack`` (its ``VerdictTableName`` and
``SigningKeyArn`` outputs) or the flags. ``deploy/kubernetes/`` runs it
in a cluster. Exit 2 when it cannot start (usage, configuration, AWS error); 0 once stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from gatekeeper import runtime
from gatekeeper.config import OTHER_REGISTRIES_ENV, SIGNING_KEY_ENV, GateConfig
from gatekeeper.domain.admission import Gate
from gatekeeper.observability import logger
from gatekeeper_tools.cli.deployment import (
    EXIT_OK,
    OperatorError,
    add_location_options,
    operator_command,
    resolve,
)
from gatekeeper_tools.webhook import DEFAULT_DEADLINE, AdmissionWebhook, WebhookServer

KEY_OUTPUT = "SigningKeyArn"  # the stack output naming the verdicts' signing key
KEY_ENV = SIGNING_KEY_ENV
MAX_DEADLINE = 29.0  # Kubernetes waits 30 s at most (timeoutSeconds); keep one for the answer


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "webhook", help="the Kubernetes admission webhook",
        description="The Kubernetes validating admission webhook (deploy/kubernetes/).")
    actions = parser.add_subparsers(dest="action", required=True)
    serve = actions.add_parser(
        "serve", help="serve the admission webhook over HTTPS",
        description="Serve POST /validate (AdmissionReview v1) and GET /healthz over HTTPS "
                    "until SIGTERM or Ctrl-C. A Pod, or the pod template of a Deployment, "
                    "StatefulSet, DaemonSet, ReplicaSet, Job or CronJob, is allowed only when "
                    "every image of its containers, init and ephemeral containers has a "
                    "signed, current APPROVED verdict; anything the gate cannot establish "
                    "in time is refused. Exit 2 when it cannot start.")
    tls = serve.add_argument_group("TLS")
    tls.add_argument("--cert", required=True, metavar="FILE",
                     help="the server's certificate chain (PEM); read again when it changes")
    tls.add_argument("--key", required=True, metavar="FILE", help="its private key (PEM)")
    serve.add_argument("--host", default="0.0.0.0",  # noqa: S104 - a pod's own address
                       help="the address to listen on (default: all)")
    serve.add_argument("--port", type=int, default=8443, help="default: 8443")
    serve.add_argument("--timeout", type=_deadline, default=DEFAULT_DEADLINE, metavar="SECONDS",
                       help="the deadline for every verdict check of one review; below the "
                            "webhook's timeoutSeconds (default: %(default)s)")
    serve.add_argument("--exempt-namespace", action="append", default=[], metavar="NAME",
                       help="allow this namespace's objects unchecked (repeatable); the "
                            "manifest's namespaceSelector exempts namespaces by label")
    serve.add_argument("--other-registries", choices=("deny", "allow"), default=None,
                       help="images outside this stack's ECR registry (default: "
                            f"{OTHER_REGISTRIES_ENV}, else deny)")
    where = serve.add_argument_group(
        "deployment", "Where the verdicts are: --stack NAME reads the stack's outputs "
        f"(VerdictTableName, {KEY_OUTPUT}); or name them (else GATEKEEPER_TABLE, {KEY_ENV}).")
    add_location_options(where)
    where.add_argument("--table", help="the VerdictTableName output")
    where.add_argument("--signing-key-arn", help=f"the {KEY_OUTPUT} output")
    serve.set_defaults(verbose=True, func=operator_command("webhook serve", command))


def _deadline(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= value <= MAX_DEADLINE:
        raise argparse.ArgumentTypeError(f"expected 0.1 to {MAX_DEADLINE:g} seconds, not {text}")
    return value


def command(args: argparse.Namespace) -> int:
    server = build_server(args, verdict_gate(args))
    run(server)
    return EXIT_OK


def build_server(args: argparse.Namespace, gate: Gate) -> WebhookServer:
    webhook = AdmissionWebhook(gate, deadline=args.timeout,
                               exempt_namespaces=args.exempt_namespace)
    try:
        return WebhookServer(webhook, args.cert, args.key, host=args.host, port=args.port)
    except OSError as err:
        webhook.close()
        raise OperatorError(f"cannot serve on {args.host}:{args.port} with {args.cert}: "
                            f"{err.strerror or err}") from None


def run(server: WebhookServer, ready: Callable[[WebhookServer], None] | None = None) -> None:
    """Serves until SIGTERM (Kubernetes stopping the pod) or Ctrl-C, then closes."""
    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    logger.info("admission webhook serving", host=server.server_address[0], port=server.port,
                deadline=server.webhook.deadline,
                exempt_namespaces=sorted(server.webhook.exempt_namespaces))
    if ready is not None:
        ready(server)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        logger.info("admission webhook stopped")


def gate_settings(args: argparse.Namespace, env: Mapping[str, str]) -> dict[str, str]:
    """The environment ``runtime.verdict_gate()`` reads, from the flags, the stack's outputs
    and the environment (in that order)."""
    deployment = resolve(region=args.region, endpoint_url=args.endpoint_url, stack=args.stack,
                         table=args.table, env=env)
    deployment.require("table")
    key = args.signing_key_arn or env.get(KEY_ENV)
    if not key and args.stack:
        try:
            found = deployment.session.client("cloudformation").describe_stacks(
                StackName=args.stack)["Stacks"][0]
        except ClientError as err:
            raise OperatorError(f"stack {args.stack}: {err}") from None
        key = next((o["OutputValue"] for o in found.get("Outputs") or []
                    if o["OutputKey"] == KEY_OUTPUT), None)
    if not key:
        where = f"stack {args.stack} has no output {KEY_OUTPUT}; pass" if args.stack else "pass"
        raise OperatorError(f"which signing key? {where} --signing-key-arn (or set {KEY_ENV})")
    settings = {"GATEKEEPER_TABLE": str(deployment.table), KEY_ENV: key,
                OTHER_REGISTRIES_ENV: args.other_registries or env.get(OTHER_REGISTRIES_ENV)
                or "deny"}
    region = args.region or deployment.session.region_name
    if region:
        settings |= {"AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    if args.endpoint_url:
        settings["AWS_ENDPOINT_URL"] = args.endpoint_url
    return settings


def verdict_gate(args: argparse.Namespace) -> Gate:
    """The stack's verdict gate, as the functions build theirs: ``runtime.verdict_gate()``
    from the environment, which this (single-purpose) process sets from the flags first. The
    settings are checked (:meth:`GateConfig.from_env`) before anything is changed."""
    settings = gate_settings(args, os.environ)
    GateConfig.from_env({**os.environ, **settings})  # a ConfigError: one line, exit 2
    os.environ.update(settings)
    gate: Gate = runtime.verdict_gate()
    return gate
