"""Where the deployed gatekeeper is, and what every operator command shares.

The operator commands (``policy push``, ``status``, ``verify``, ``reevaluate``,
``replay-dlq``) talk to a deployed gatekeeper: its table, topic, policy bucket and dead-letter
queue, found from a CloudFormation stack's outputs or named explicitly, and to ECR. This
module resolves them (:func:`resolve`), reads image references as docker does, and turns the
commands' errors into one line on stderr (:func:`operator_command`). Judging goes through the
very code the Lambda functions run (``runtime.build``), so a command run from a laptop does
exactly what the functions would have done.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from gatekeeper.adapters.store import VerdictStore
from gatekeeper.config import Config, ConfigError
from gatekeeper.domain.images import DIGEST, ECR_HOST, TAG
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.scope import Scope, ScopeError
from gatekeeper.observability import logger
from gatekeeper.runtime import BOTO_CONFIG  # as the functions' clients
from gatekeeper.service import Gatekeeper

# Exit codes every command shares; each command's description says what it means by them.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130

# The stack outputs the commands read (template.yaml), their flags and environment variables.
OUTPUTS = {"table": "VerdictTableName", "topic_arn": "VerdictTopicArn",
           "policy_bucket": "PolicyBucketName", "dlq_url": "DeadLetterQueueUrl",
           "signing_key": "SigningKeyArn", "queue_url": "ReevaluationQueueUrl"}
FLAGS = {"table": "--table", "topic_arn": "--topic-arn", "policy_bucket": "--policy-bucket",
         "dlq_url": "--dlq-url", "signing_key": "--signing-key-arn",
         "queue_url": "--reevaluation-queue-url"}
ENVIRONMENT = {"table": "GATEKEEPER_TABLE", "topic_arn": "GATEKEEPER_TOPIC_ARN",
               "policy_bucket": "GATEKEEPER_POLICY_BUCKET", "dlq_url": "GATEKEEPER_DLQ_URL",
               "signing_key": "GATEKEEPER_SIGNING_KEY_ARN",
               "queue_url": "GATEKEEPER_REEVALUATION_QUEUE_URL"}


class OperatorError(Exception):
    """A usage or input error: a one-line message, exit 2."""


class ImageNotFound(Exception):
    """The repository or the image does not exist (in this account and region)."""


# --- where the gatekeeper is ----------------------------------------------------------------

class EndpointSession(boto3.session.Session):
    """A boto3 session whose clients all use one endpoint (a local moto server), if given."""

    def __init__(self, region_name: str | None = None, endpoint_url: str | None = None) -> None:
        super().__init__(region_name=region_name)
        self.endpoint_url = endpoint_url or None

    def client(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self.endpoint_url:
            kwargs.setdefault("endpoint_url", self.endpoint_url)
        return super().client(*args, **kwargs)


@dataclass(frozen=True)
class Deployment:
    """The deployed gatekeeper's resources, and the session to reach them."""

    session: boto3.session.Session
    table: str | None
    topic_arn: str | None
    policy_bucket: str | None
    policy_key: str
    dlq_url: str | None
    markers: MarkerScheme
    stack: str | None = None
    slack_secret: str | None = None  # the SlackWebhookSecretArn the stack was deployed with
    signing_key: str | None = None  # the SigningKeyArn output: verdicts are signed with it
    queue_url: str | None = None  # the ReevaluationQueueUrl output (reevaluate --account)

    def require(self, *names: str) -> None:
        missing = [n for n in names if not getattr(self, n)]
        if not missing:
            return
        outputs = ", ".join(OUTPUTS[n] for n in missing)
        flags = ", ".join(FLAGS[n] for n in missing)
        if self.stack:
            raise OperatorError(f"stack {self.stack} has no output {outputs}; pass {flags}")
        environment = ", ".join(ENVIRONMENT[n] for n in missing)
        raise OperatorError(f"which {outputs}? pass --stack NAME, or {flags} "
                            f"(or set {environment})")

    def config(self) -> Config:
        self.require("table", "topic_arn", "policy_bucket")
        return Config(table_name=str(self.table), topic_arn=str(self.topic_arn),
                      policy_bucket=str(self.policy_bucket), policy_key=self.policy_key,
                      markers=self.markers, signing_key_arn=self.signing_key)

    def ecr(self) -> Any:
        return self.session.client("ecr", config=BOTO_CONFIG)

    def store(self) -> VerdictStore:
        self.require("table")
        return VerdictStore(self.session.client("dynamodb", config=BOTO_CONFIG),
                            str(self.table))

    def gatekeeper(self) -> Gatekeeper:
        """Built as the functions build theirs (runtime.build), on this session."""
        from gatekeeper import runtime

        return runtime.build(self.config(), self.session)


def resolve(*, region: str | None, endpoint_url: str | None, stack: str | None,
            table: str | None = None, topic_arn: str | None = None,
            policy_bucket: str | None = None, policy_key: str | None = None,
            dlq_url: str | None = None, signing_key: str | None = None,
            queue_url: str | None = None,
            env: Mapping[str, str] | None = None) -> Deployment:
    """Each resource from its flag, else the stack's output, else the environment.

    The marker templates and the policy key come from the stack's parameters when a stack is
    named (what its functions use), else GATEKEEPER_APPROVED_TAG, GATEKEEPER_QUARANTINED_TAG
    and GATEKEEPER_POLICY_KEY, else the defaults.
    """
    env = os.environ if env is None else env
    session = EndpointSession(region_name=region, endpoint_url=endpoint_url)
    outputs: dict[str, str] = {}
    parameters: dict[str, str] = {}
    if stack:
        try:
            found = session.client("cloudformation").describe_stacks(StackName=stack)
        except ClientError as err:
            message = err.response.get("Error", {}).get("Message") or str(err)
            raise OperatorError(f"stack {stack}: {message}") from None
        described = found["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs") or []}
        parameters = {p["ParameterKey"]: p.get("ResolvedValue") or p.get("ParameterValue", "")
                      for p in described.get("Parameters") or []}
    flags = {"table": table, "topic_arn": topic_arn, "policy_bucket": policy_bucket,
             "dlq_url": dlq_url, "signing_key": signing_key, "queue_url": queue_url}
    values = {name: flags[name] or outputs.get(OUTPUTS[name]) or env.get(ENVIRONMENT[name])
              or None for name in OUTPUTS}
    try:
        markers = MarkerScheme(
            approved=(parameters.get("ApprovedTagTemplate")
                      or env.get("GATEKEEPER_APPROVED_TAG") or MarkerScheme.approved),
            quarantined=(parameters.get("QuarantinedTagTemplate")
                         or env.get("GATEKEEPER_QUARANTINED_TAG") or MarkerScheme.quarantined),
        )
    except ValueError as err:
        raise OperatorError(str(err)) from None
    key = (policy_key or parameters.get("PolicyObjectKey") or env.get("GATEKEEPER_POLICY_KEY")
           or "policy.yaml")
    slack_secret = (parameters.get("SlackWebhookSecretArn")
                    or env.get("GATEKEEPER_SLACK_SECRET_ARN") or None)
    return Deployment(session=session, policy_key=key, markers=markers, stack=stack,
                      slack_secret=slack_secret, **values)


def from_arguments(args: argparse.Namespace) -> Deployment:
    """The deployment named by the options of :func:`deployment_options`."""
    return resolve(
        region=args.region, endpoint_url=args.endpoint_url, stack=args.stack,
        table=args.table, topic_arn=args.topic_arn, policy_bucket=args.policy_bucket,
        policy_key=args.policy_key, dlq_url=args.dlq_url,
        signing_key=getattr(args, "signing_key_arn", None),
        queue_url=getattr(args, "reevaluation_queue_url", None))


# --- the options and the error handling every operator command shares -------------------------

def add_location_options(group: Any) -> None:
    """``--stack``, ``--region`` and ``--endpoint-url`` on a parser or an argument group."""
    group.add_argument("--stack", metavar="NAME", help="the CloudFormation stack's name")
    group.add_argument("--region", default=None)
    group.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                       help="one endpoint for every AWS call, e.g. a local moto server "
                            "(default: AWS_ENDPOINT_URL)")


def deployment_options() -> argparse.ArgumentParser:
    """A parent parser: where the gatekeeper runs, and --verbose."""
    options = argparse.ArgumentParser(add_help=False)
    where = options.add_argument_group(
        "deployment",
        "Where the gatekeeper runs: --stack NAME reads the stack's outputs (and its marker "
        "tag templates); or name the resources. Each comes from its flag, else the stack, "
        "else the environment (GATEKEEPER_TABLE, GATEKEEPER_TOPIC_ARN, "
        "GATEKEEPER_POLICY_BUCKET, GATEKEEPER_DLQ_URL, GATEKEEPER_SIGNING_KEY_ARN, "
        "GATEKEEPER_REEVALUATION_QUEUE_URL; markers "
        "from GATEKEEPER_APPROVED_TAG and GATEKEEPER_QUARANTINED_TAG).")
    add_location_options(where)
    where.add_argument("--table", help="the VerdictTableName output")
    where.add_argument("--topic-arn", help="the VerdictTopicArn output")
    where.add_argument("--policy-bucket", help="the PolicyBucketName output")
    where.add_argument("--policy-key", help="default: the stack's PolicyObjectKey, "
                       "GATEKEEPER_POLICY_KEY, else policy.yaml")
    where.add_argument("--dlq-url", help="the DeadLetterQueueUrl output")
    where.add_argument("--signing-key-arn", help="the SigningKeyArn output (verdicts are "
                       "signed with it; verify checks them against it)")
    where.add_argument("--reevaluation-queue-url", help="the ReevaluationQueueUrl output "
                       "('reevaluate --account' queues its requests there)")
    where.add_argument("-v", "--verbose", action="store_true",
                       help="also show the functions' own logs (JSON, on stderr)")
    return options


Command = Callable[[argparse.Namespace], int]


def operator_command(name: str, run: Command) -> Command:
    """Usage errors, AWS errors and missing settings as one line on stderr (``gatekeeper NAME:
    ...``), exit 2; the functions' own logs only with --verbose (on stderr)."""
    def command(args: argparse.Namespace) -> int:
        with quiet_lambda_logs(getattr(args, "verbose", False)):
            try:
                return run(args)
            except (OperatorError, ConfigError) as err:
                print(f"gatekeeper {name}: {err}", file=sys.stderr)
            except (ClientError, BotoCoreError) as err:
                print(f"gatekeeper {name}: {' '.join(str(err).split())}", file=sys.stderr)
            except KeyboardInterrupt:
                print(f"gatekeeper {name}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            return EXIT_INPUT

    return command


@contextmanager
def quiet_lambda_logs(verbose: bool) -> Iterator[None]:
    """The functions' JSON logs go to stderr (stdout is the command's) and only when verbose:
    the commands report each image's outcome themselves. Restored afterwards (the CLI may run
    in-process, as in the tests)."""
    handler = logger.registered_handler
    std_logger = logging.getLogger(logger.name)
    level = std_logger.level
    stream = handler.setStream(sys.stderr) if isinstance(handler, logging.StreamHandler) else None
    std_logger.setLevel(logging.INFO if verbose else logging.CRITICAL + 1)
    try:
        yield
    finally:
        std_logger.setLevel(level)
        if stream is not None and isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)


def one_line(err: BaseException) -> str:
    """An exception as one short line: its type and its message."""
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:160]


def one_line_text(text: str | None) -> str:
    return " ".join((text or "").split())[:160]


# --- image references -----------------------------------------------------------------------

_REGISTRY = re.compile(ECR_HOST.pattern + "/")
# A first component naming an AWS registry: it must then be an ECR private registry's host.
_AWS_HOST = re.compile(r"[^/]*\.(?:dkr\.ecr[^/]*|amazonaws\.com(?:\.cn)?)/")
_REPOSITORY = re.compile(r"(?:[a-z0-9]+(?:[._-]+[a-z0-9]+)*/)*[a-z0-9]+(?:[._-]+[a-z0-9]+)*")

IMAGE_HELP = ("REPO[:TAG] or REPO@DIGEST, no tag meaning latest; or an image URI "
              "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG|@DIGEST], whose account and "
              "Region say where the image lives")


@dataclass(frozen=True)
class ImageReference:
    repository: str
    tag: str | None = None
    digest: str | None = None
    scope: Scope | None = None  # the account and Region an image URI's registry host names

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


def parse_reference(text: str) -> ImageReference:
    """``REPO``, ``REPO:TAG`` or ``REPO@DIGEST``, optionally behind an ECR registry host (an
    image URI: its account and Region are the reference's ``scope``). A bare ``REPO`` means
    ``REPO:latest``, as for docker."""
    rest = text.strip()
    scope = None
    host = _REGISTRY.match(rest)
    if host:
        try:
            scope = Scope(host["account"], host["region"])
        except ScopeError as err:
            raise OperatorError(f"{text}: {err}") from None
        rest = rest[host.end():]
    elif _AWS_HOST.match(rest):
        raise OperatorError(f"{text}: {rest.split('/', 1)[0]!r} is not an Amazon ECR registry "
                            "host (ACCOUNT.dkr.ecr.REGION.amazonaws.com)")
    digest = tag = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST.fullmatch(digest):
            raise OperatorError(f"{text}: {digest!r} is not an image digest (sha256:<64 hex>)")
    if ":" in rest:
        rest, tag = rest.rsplit(":", 1)
        if not TAG.fullmatch(tag):
            raise OperatorError(f"{text}: {tag!r} is not an image tag")
    if not (2 <= len(rest) <= 256) or not _REPOSITORY.fullmatch(rest):
        raise OperatorError(f"{text}: {rest!r} is not a repository name")
    return ImageReference(rest, None if digest else (tag or "latest"), digest, scope)


def describe_image(ecr: Any, ref: ImageReference) -> tuple[str, list[str]]:
    """The image's digest and its tags now; ImageNotFound when it (or its repository) is not
    there."""
    image_id = {"imageDigest": ref.digest} if ref.digest else {"imageTag": ref.tag}
    try:
        found = ecr.describe_images(repositoryName=ref.repository, imageIds=[image_id])
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code == "RepositoryNotFoundException":
            raise ImageNotFound(f"repository {ref.repository} not found") from None
        if code == "ImageNotFoundException":
            raise ImageNotFound(f"image {ref} not found") from None
        raise
    details = found.get("imageDetails") or []
    if not details:
        raise ImageNotFound(f"image {ref} not found")
    return str(details[0]["imageDigest"]), sorted(details[0].get("imageTags") or [])
