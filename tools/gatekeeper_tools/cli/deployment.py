"""The operator commands behind ``gatekeeper status|verify|reevaluate|replay-dlq``.

They talk to a deployed gatekeeper: its table, topic, policy bucket and dead-letter queue,
found from a CloudFormation stack's outputs or named explicitly, and to ECR. Judging goes
through the very code the Lambda functions run (``runtime.build`` and ``entry.handle_event``,
imported when needed), so a re-evaluation or a replay from a laptop does exactly what the
functions would have done.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.exceptions import ClientError

from gatekeeper.adapters.ecr import ImageGone
from gatekeeper.adapters.store import HistoryEntry, ImageRecord, VerdictStore
from gatekeeper.config import Config
from gatekeeper.domain import evaluation
from gatekeeper.domain.events import (
    REQUEST_MARK,
    Ignored,
    ImageEvent,
    Kind,
    MalformedEvent,
    Trigger,
    parse_event,
    parse_reevaluation,
    reevaluation,
)
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.domain.policy import PolicyError
from gatekeeper.domain.verdict import Outcome
from gatekeeper.observability import logger, metrics
from gatekeeper.runtime import BOTO_CONFIG as _BOTO  # as the functions' clients
from gatekeeper.service import Gatekeeper

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130

APPROVED_STATES = frozenset({str(Outcome.APPROVED), str(Outcome.APPROVED_WITH_WARNINGS)})
# The stack outputs and parameters the commands read (template.yaml).
OUTPUTS = {"table": "VerdictTableName", "topic_arn": "VerdictTopicArn",
           "policy_bucket": "PolicyBucketName", "dlq_url": "DeadLetterQueueUrl"}
FLAGS = {"table": "--table", "topic_arn": "--topic-arn", "policy_bucket": "--policy-bucket",
         "dlq_url": "--dlq-url"}
ENVIRONMENT = {"table": "GATEKEEPER_TABLE", "topic_arn": "GATEKEEPER_TOPIC_ARN",
               "policy_bucket": "GATEKEEPER_POLICY_BUCKET", "dlq_url": "GATEKEEPER_DLQ_URL"}




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
                      markers=self.markers)

    def ecr(self) -> Any:
        return self.session.client("ecr", config=_BOTO)

    def store(self) -> VerdictStore:
        self.require("table")
        return VerdictStore(self.session.client("dynamodb", config=_BOTO),
                            str(self.table))

    def gatekeeper(self) -> Gatekeeper:
        """Built as the functions build theirs (runtime.build), on this session."""
        from gatekeeper import runtime

        return runtime.build(self.config(), self.session)


def resolve(*, region: str | None, endpoint_url: str | None, stack: str | None,
            table: str | None = None, topic_arn: str | None = None,
            policy_bucket: str | None = None, policy_key: str | None = None,
            dlq_url: str | None = None, env: Mapping[str, str] | None = None) -> Deployment:
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
             "dlq_url": dlq_url}
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


# --- image references -----------------------------------------------------------------------

_REGISTRY = re.compile(r"\d{12}\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/")
_REPOSITORY = re.compile(r"(?:[a-z0-9]+(?:[._-]+[a-z0-9]+)*/)*[a-z0-9]+(?:[._-]+[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha(256:[0-9a-f]{64}|512:[0-9a-f]{128})")


@dataclass(frozen=True)
class ImageReference:
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag}"


def parse_reference(text: str) -> ImageReference:
    """``REPO``, ``REPO:TAG`` or ``REPO@DIGEST``, optionally behind the ECR registry host.
    A bare ``REPO`` means ``REPO:latest``, as for docker."""
    rest = _REGISTRY.sub("", text.strip(), count=1)
    digest = tag = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise OperatorError(f"{text}: {digest!r} is not an image digest (sha256:<64 hex>)")
    if ":" in rest:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise OperatorError(f"{text}: {tag!r} is not an image tag")
    if not (2 <= len(rest) <= 256) or not _REPOSITORY.fullmatch(rest):
        raise OperatorError(f"{text}: {rest!r} is not a repository name")
    return ImageReference(rest, None if digest else (tag or "latest"), digest)


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


# --- status ---------------------------------------------------------------------------------

def status(deployment: Deployment, reference: str, fmt: str = "text") -> int:
    """Exit 0: a verdict is recorded; 1: not judged yet (no record, or pending); 2: no such
    image (a deleted image is still shown by digest when its verdict is recorded)."""
    ref = parse_reference(reference)
    store = deployment.store()
    try:
        digest, tags = describe_image(deployment.ecr(), ref)
        exists = True
    except ImageNotFound as missing:
        if not ref.digest or store.get(ref.repository, ref.digest) is None:
            raise OperatorError(str(missing)) from None
        digest, tags, exists = ref.digest, [], False
    record = store.get(ref.repository, digest)
    history = store.history(ref.repository, digest) if record is not None else []
    code = EXIT_OK if record is not None and record.judged else EXIT_FAILED
    if fmt == "json":
        document = {
            "schema": "gatekeeper.status/v1",
            "repository": ref.repository,
            "digest": digest,
            "exists": exists,
            "tags": tags,
            "verdict": _record_document(record, tags) if record is not None else None,
            "history": [_history_document(entry) for entry in history],
            "exit_code": code,
        }
        print(json.dumps(document, indent=2))
    else:
        print(_status_text(ref.repository, digest, tags, exists, record, history))
    return code


def _record_document(record: ImageRecord, tags: list[str]) -> dict[str, Any]:
    return {
        "state": record.state,
        "settled": record.settled,
        "gone": record.gone,
        "reasons": list(record.reasons),
        "marker": record.marker,
        "marker_on_image": record.marker in tags if record.marker else None,
        "lease": ({"owner": record.lease_owner, "until": record.lease_until}
                  if record.lease_owner else None),
        "policy_order": record.policy_order,
        "policy_version": record.policy_version,
        "matched_rule": record.matched_rule,
        "scan_status": record.scan_status,
        "scan_completed_at": record.scan_completed_at,
        "highest_severity": record.highest_severity,
        "counts": dict(record.counts),
        "decided_at": record.decided_at,
        "trigger": record.trigger,
        "previous_state": record.previous_state,
        "review_at": record.review_at,
        "created_at": record.created_at,
        "revision": record.revision,
        # moved to the ARCHIVE storage class by the gatekeeper (policies with archive
        # enforcement); None when this version of the store does not record it
        "archived": getattr(record, "archived", None),
    }


def _history_document(entry: HistoryEntry) -> dict[str, Any]:
    return {"decided_at": entry.decided_at, "state": entry.state, "previous": entry.previous,
            "trigger": entry.trigger, "policy_version": entry.policy_version,
            "reasons": list(entry.reasons), "scan_status": entry.scan_status,
            "marker": entry.marker, "revision": entry.revision}


def _status_text(repository: str, digest: str, tags: list[str], exists: bool,
                 record: ImageRecord | None, history: list[HistoryEntry]) -> str:
    now = (", ".join(tags) or "(none)") if exists else "(image deleted)"
    lines = [f"{repository}@{digest}", f"  tags now:    {now}"]
    if record is None:
        lines.append("  verdict:     none recorded (the gatekeeper has not seen this image; "
                     "'gatekeeper reevaluate' judges it)")
        return "\n".join(lines)
    if not record.judged:
        lines += [f"  verdict:     PENDING since {record.created_at or record.decided_at} "
                  "(waiting for its scan)",
                  f"  trigger:     {record.trigger or '-'}"]
        return "\n".join(lines)
    state = [record.state, "settled" if record.settled else "NOT SETTLED (side effects pending)"]
    if record.gone:
        state.append("image gone")
    if getattr(record, "archived", False):
        state.append("archived by the gatekeeper (pulls fail)")
    marker = "-"
    if record.marker:
        marker = record.marker + (" (on the image)" if record.marker in tags
                                  else " (MISSING from the image)")
    lines += [
        f"  verdict:     {', '.join(state)}",
        f"  marker:      {marker}",
        f"  policy:      version {record.policy_version or '-'}, rule {record.matched_rule or '-'}",
        f"  scan:        {record.scan_status or '-'}"
        + (f", completed {record.scan_completed_at}" if record.scan_completed_at else ""),
        f"  decided at:  {record.decided_at or '-'} (trigger {record.trigger or '-'})",
        f"  review at:   {record.review_at or '-'}",
    ]
    if record.lease_owner:
        lines.append(f"  lease:       held by {record.lease_owner} until "
                     f"{datetime.fromtimestamp(record.lease_until, UTC).isoformat()}")
    lines.append("  reasons:" if record.reasons else "  reasons:     -")
    lines += [f"    - {reason}" for reason in record.reasons]
    lines.append(f"history ({len(history)}, newest first):")
    for entry in history:
        previous = entry.previous or "none"
        lines.append(f"  {entry.decided_at}  {entry.state} (was {previous})  trigger "
                     f"{entry.trigger}  policy {entry.policy_version or '-'}")
        lines += [f"      {reason}" for reason in entry.reasons[:3]]
        if len(entry.reasons) > 3:
            lines.append(f"      ... and {len(entry.reasons) - 3} more")
    return "\n".join(lines)


# --- verify ---------------------------------------------------------------------------------

def verify(deployment: Deployment, reference: str) -> int:
    """0 only for an approved, settled verdict whose marker is on the image now."""
    ref = parse_reference(reference)
    store = deployment.store()
    try:
        digest, tags = describe_image(deployment.ecr(), ref)
    except ImageNotFound as missing:
        return _refuse(str(missing))
    image = f"{ref.repository}@{digest}"
    record = store.get(ref.repository, digest)
    if record is None:
        return _refuse(f"no verdict: the gatekeeper has no record of {image}")
    if not record.judged:
        return _refuse(f"pending: {image} has no verdict yet (waiting for its scan)")
    if record.gone:
        return _refuse(f"image gone: {image} was recorded as deleted")
    if record.state not in APPROVED_STATES:
        first = record.reasons[0] if record.reasons else "no reason recorded"
        return _refuse(f"{record.state.lower()}: {image}: {first}")
    if not record.settled:
        return _refuse(f"not settled: the {record.state} verdict of {image} is still being "
                       "applied; retry shortly")
    expected = deployment.markers.tag_for(Outcome.APPROVED, digest)
    if expected not in tags:
        hint = ""
        if record.marker and record.marker != expected:
            hint = (f"; the verdict names {record.marker}: are the marker templates the "
                    "stack's? (--stack, or GATEKEEPER_APPROVED_TAG)")
        return _refuse(f"marker missing: {image} is {record.state} but does not carry "
                       f"{expected}{hint}")
    warnings = ", with warnings" if record.state == Outcome.APPROVED_WITH_WARNINGS else ""
    print(f"approved: {image} (policy version {record.policy_version or '-'}{warnings})")
    return EXIT_OK


def _refuse(why: str) -> int:
    print("not approved: " + " ".join(why.split()), file=sys.stderr)  # one line, always
    return EXIT_FAILED


# --- reevaluate -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Planned:
    repository: str
    digest: str
    tags: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Row:
    repository: str
    digest: str
    status: str
    verdict: str


def plan(ecr: Any, patterns: Sequence[str], everything: bool) -> list[Planned]:
    """Every image (with a digest) of every matching repository, repositories by name."""
    names = []
    for page in ecr.get_paginator("describe_repositories").paginate():
        names += [r["repositoryName"] for r in page.get("repositories") or []]
    chosen = sorted(n for n in names
                    if everything or any(fnmatch.fnmatchcase(n, p) for p in patterns))
    images: list[Planned] = []
    for name in chosen:
        found = []
        try:
            for page in ecr.get_paginator("describe_images").paginate(repositoryName=name):
                found += [d for d in page.get("imageDetails") or [] if d.get("imageDigest")]
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
                raise
            continue  # deleted since it was listed
        found.sort(key=lambda d: (str(d.get("imagePushedAt") or ""), d["imageDigest"]))
        images += [Planned(name, d["imageDigest"], tuple(d.get("imageTags") or ()))
                   for d in found]
    return images


class Pacer:
    """At most ``rate`` starts per second: each start waits for its slot on a monotonic clock."""

    def __init__(self, rate: float, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self.sleep = sleep
        self.next_at: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self.next_at is not None and now < self.next_at:
            self.sleep(self.next_at - now)
            now = max(self.clock(), self.next_at)
        self.next_at = now + self.interval


class Progress:
    """A bar redrawn in place on a terminal (or with --progress), else one line per image."""

    def __init__(self, total: int, bar: bool, stream: TextIO, width: int = 20) -> None:
        self.total = total
        self.bar = bar
        self.stream = stream
        self.width = width
        self.drawn = 0

    def start(self, index: int, item: Planned) -> None:
        if not self.bar:
            return
        filled = self.width * (index - 1) // max(self.total, 1)
        text = (f"[{'#' * filled}{'.' * (self.width - filled)}] {index - 1}/{self.total} "
                f"{item.repository}@{item.digest[:19]}\u2026")
        self.stream.write("\r" + text.ljust(self.drawn))
        self.stream.flush()
        self.drawn = len(text)

    def done(self, index: int, item: Planned, row: Row) -> None:
        if self.bar:
            return
        print(f"{index}/{self.total} {item.repository}@{item.digest[:19]} {row.status} "
              f"{row.verdict}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar and self.drawn:
            filled = "#" * self.width
            self.stream.write("\r" + f"[{filled}] done".ljust(self.drawn) + "\n")
            self.stream.flush()
            self.drawn = 0

    def interrupt(self) -> None:
        if self.bar and self.drawn:
            self.stream.write("\n")
            self.drawn = 0


def reevaluate(deployment: Deployment, *, patterns: Sequence[str], everything: bool,
               dry_run: bool = False, rate: float = 5.0, state_file: str | None = None,
               progress: bool | None = None, sleep: Callable[[float], None] = time.sleep,
               clock: Callable[[], float] = time.monotonic) -> int:
    if rate <= 0:
        raise OperatorError("--rate must be a positive number of images per second")
    gatekeeper = deployment.gatekeeper()
    images = plan(deployment.ecr(), patterns, everything)
    done = _read_state(state_file)
    todo = [item for item in images if item.key not in done]
    skipped = len(images) - len(todo)
    what = "every repository" if everything else "repositories matching " + ", ".join(patterns)
    print(f"{'dry run: ' if dry_run else ''}{len(todo)} image(s) to re-evaluate in {what}"
          + (f"; {skipped} already done (state file {state_file})" if skipped else ""),
          file=sys.stderr)
    bar = progress if progress is not None else sys.stderr.isatty()
    meter = Progress(len(todo), bar, sys.stderr)
    pacer = Pacer(rate, clock, sleep)
    rows: list[Row] = []
    state = None
    if state_file and not dry_run:
        Path(state_file).parent.mkdir(parents=True, exist_ok=True)
        state = Path(state_file).open("a", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        for index, item in enumerate(todo, 1):
            pacer.wait()
            meter.start(index, item)
            row = (_dry_run(gatekeeper, item) if dry_run else _judge(gatekeeper, item))
            rows.append(row)
            if state is not None and row.status != "failed":
                state.write(item.key + "\n")
                state.flush()
                os.fsync(state.fileno())
            meter.done(index, item, row)
        meter.close()
    except KeyboardInterrupt:
        meter.interrupt()
        print(_table(rows, skipped, dry_run))
        resume = (f"re-run with --state-file {state_file} to continue" if state
                  else "without --state-file a re-run starts over (harmless: re-evaluating "
                       "is idempotent)")
        print(f"interrupted after {len(rows)} of {len(todo)} image(s); {resume}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if state is not None:
            state.close()
    print(_table(rows, skipped, dry_run))
    return EXIT_FAILED if any(r.status == "failed" for r in rows) else EXIT_OK


def _read_state(path: str | None) -> set[str]:
    if not path or not Path(path).exists():
        return set()
    return {line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
            if line.strip()}


def _judge(gatekeeper: Gatekeeper, item: Planned) -> Row:
    event = reevaluation(item.repository, item.digest, Trigger.OPERATOR, item.tags)
    try:
        result = gatekeeper.handle(event)
    except PolicyError:
        raise  # the published policy is broken: every image would fail alike
    except Exception as err:  # one image's failure is reported; the others go on
        return Row(item.repository, item.digest, "failed", _one_line(err))
    verdict = result.verdict or ""
    if result.status == "judged" and result.previous:
        verdict = f"{verdict} (was {result.previous})"
    return Row(item.repository, item.digest, result.status, verdict)


def _dry_run(gatekeeper: Gatekeeper, item: Planned) -> Row:
    """The verdict the policy would give now; reads only (scan, policy, recorded verdict)."""
    repo, digest = item.repository, item.digest
    try:
        scan = gatekeeper.images.scan(repo, digest)
        policy = gatekeeper.policies.get()
        record = gatekeeper.store.get(repo, digest)
    except ImageGone:
        return Row(repo, digest, "would-skip", "image gone")
    except PolicyError:
        raise
    except Exception as err:
        return Row(repo, digest, "failed", _one_line(err))
    verdict = (evaluation.judge_scan(policy, repo, scan.status, scan.description, scan.findings,
                                 datetime.now(UTC)) if scan is not None else None)
    if verdict is None:
        return Row(repo, digest, "would-pend",
                   f"no finished scan ({scan.status if scan else 'never scanned'})")
    outcome = str(verdict.outcome) + (" (monitor)" if verdict.monitor else "")
    current = record.state if record is not None and record.judged else None
    if current is None:
        return Row(repo, digest, "would-judge", outcome)
    if current == verdict.outcome:
        return Row(repo, digest, "would-keep", outcome)
    return Row(repo, digest, "would-change", f"{outcome} (was {current})")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:160]


def _table(rows: list[Row], skipped: int, dry_run: bool) -> str:
    header = Row("REPOSITORY", "DIGEST", "RESULT", "VERDICT")
    shown = [header] + [Row(r.repository, r.digest[:19], r.status, r.verdict) for r in rows]
    widths = [max(len(getattr(r, f)) for r in shown) for f in ("repository", "digest", "status")]
    lines = [f"{r.repository:<{widths[0]}}  {r.digest:<{widths[1]}}  {r.status:<{widths[2]}}  "
             f"{r.verdict}".rstrip() for r in shown]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    summary = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    lines.append(f"{'dry run: ' if dry_run else ''}{len(rows)} image(s)"
                 + (f": {summary}" if summary else "")
                 + (f"; {skipped} skipped (state file)" if skipped else ""))
    return "\n".join(lines)


# --- replay-dlq -----------------------------------------------------------------------------

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
    sqs = deployment.session.client("sqs", config=_BOTO)
    url = str(deployment.dlq_url)
    built = cache(deployment.gatekeeper)
    slack = cache(lambda: _slack_notifier(deployment))
    accept = set(Kind) - {Kind.REEVALUATE}
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
                outcome, line = _replay_one(message, accept, built, dry_run, slack)
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


def _replay_one(message: Mapping[str, Any], accept: set[Kind],
                gatekeeper: Callable[[], Gatekeeper], dry_run: bool,
                slack: Callable[[], Any] | None = None) -> tuple[str, str]:
    from gatekeeper.handling import handle_event  # the handlers' own entry point

    letter = read_letter(message.get("Body") or "", message.get("MessageAttributes"))
    if letter.event is None:
        return "kept", f"kept: unknown message ({letter.origin}); left in the queue"
    if _is_sns_event(letter.event):
        return _replay_slack(letter, slack, dry_run)
    what = _describe_event(letter.event)
    was = f" (failed with {_one_line_text(letter.error)})" if letter.error else ""
    if letter.event.get("schema") == REQUEST_MARK:
        return _replay_reevaluation(letter, what, "a re-evaluation request", gatekeeper, dry_run)
    try:
        parsed = parse_event(letter.event)
    except MalformedEvent as err:
        return "failing", f"still failing: {what}: malformed event: {err}{was}"
    if isinstance(parsed, Ignored):
        return _replay_reevaluation(letter, what, parsed.reason, gatekeeper, dry_run)
    if dry_run:
        return "replayed", f"would replay: {what} from {letter.origin}{was}"
    try:
        result = handle_event(letter.event, accept=accept, gatekeeper=gatekeeper)
    except Exception as err:
        return "failing", f"still failing: {what}: {_one_line(err)}{was}"
    finally:
        metrics.clear_metrics()  # the CLI publishes no metrics (they would print to stdout)
    verdict = f" {result['verdict']}" if result.get("verdict") else ""
    return "replayed", f"replayed: {what} -> {result.get('status')}{verdict}"


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
    client = deployment.session.client("secretsmanager", config=_BOTO)
    return SlackNotifier(SecretWebhooks(deployment.slack_secret, client=client), WebhookPoster())


def _replay_slack(letter: Letter, slack: Callable[[], Any] | None,
                  dry_run: bool) -> tuple[str, str]:
    """A failed invocation of the Slack notifier: post its notifications again."""
    from gatekeeper.handling import handle_sns

    was = f" (failed with {_one_line_text(letter.error)})" if letter.error else ""
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
        return "failing", f"still failing: {what}: {_one_line(err)}{was}"
    finally:
        metrics.clear_metrics()
    return "replayed", f"re-posted: {what} -> {posted}"


def _replay_reevaluation(letter: Any, what: str, reason: str,
                         gatekeeper: Callable[[], Gatekeeper], dry_run: bool) -> tuple[str, str]:
    """A message redriven from the re-evaluation queue: a sweeper request or an Inspector2
    Finding event. Anything else (a schedule, an S3 event) is kept for a person to look at."""
    try:
        request = parse_reevaluation(letter.event)
    except MalformedEvent as err:
        return "failing", f"still failing: {what}: malformed request: {err}"
    if not isinstance(request, ImageEvent):
        return "kept", (f"kept: {what} from {letter.origin} is not an ECR push or scan event "
                        f"this command replays ({reason})")
    if dry_run:
        return "replayed", f"would re-evaluate: {request.repository}@{request.digest[:19]}"
    try:
        result = gatekeeper().handle(request)
    except Exception as err:
        return "failing", f"still failing: {what}: {_one_line(err)}"
    return "replayed", (f"re-evaluated ({request.trigger}): {request.repository}@"
                        f"{request.digest[:19]} -> {result.status} {result.verdict or ''}")


def _one_line_text(text: str | None) -> str:
    return " ".join((text or "").split())[:160]

