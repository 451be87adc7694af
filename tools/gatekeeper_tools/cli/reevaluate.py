"""``gatekeeper reevaluate``: re-judge (or backfill) every image of some repositories.

Every image of the chosen repositories is re-evaluated with the published policy, through the
functions' own code: images never judged are judged (backfill), changed verdicts are re-tagged
and notified, unchanged ones cost nothing. Rate-limited, with progress on stderr and a summary
table on stdout; with ``--state-file`` an interrupted run resumes. Exit 0 done, 1 some image
failed, 2 usage error, 130 interrupted.

``--account ID`` backfills one account of an organization's hub instead: a re-evaluation
request (naming the image's account and Region) for every image the table records for it and
every image its ECR holds, queued on the re-evaluation queue, where the hub's function judges
them in their own accounts at its own pace.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from gatekeeper.adapters.ecr import ImageGone
from gatekeeper.adapters.queue import ReevaluationQueue
from gatekeeper.domain import evaluation
from gatekeeper.domain.events import Trigger, reevaluation, reevaluation_request
from gatekeeper.domain.policy import PolicyError
from gatekeeper.domain.scope import Scope
from gatekeeper.runtime import BOTO_CONFIG
from gatekeeper.service import Gatekeeper
from gatekeeper_tools.cli.deployment import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Deployment,
    OperatorError,
    deployment_options,
    one_line,
    operator_command,
)
from gatekeeper_tools.cli.scope import Place, checked_account, checked_region, locate, scope_options


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "reevaluate", parents=[deployment_options(), scope_options(account=False)],
        help="re-judge (or backfill) every image of some repositories, or of one account",
        description="Re-evaluate every image of the chosen repositories with the published "
                    "policy, through the functions' own code: images never judged are "
                    "judged (backfill), changed verdicts are re-tagged and notified, "
                    "unchanged ones cost nothing. Progress on stderr, a summary table on "
                    "stdout. Exit 0 done, 1 some image failed, 2 usage error, 130 "
                    "interrupted (with --state-file, re-run to continue). With --account ID "
                    "(an organization's hub), backfill that account instead: queue a "
                    "re-evaluation request, naming the image's account and Region, for every "
                    "image the table records for the account (of --region, or of all its "
                    "Regions; found by a Scan of the whole table filtered on the account, as "
                    "the table has no index by account) and every image in its ECR (through "
                    "its spoke role) in --region, or in each Region its records name, else in "
                    "the stack's: name --region for each Region of an account you just added. "
                    "The hub's re-evaluation function judges them; --dry-run lists them.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--repository", metavar="GLOB", action="append",
                       help="repositories matching this glob (e.g. 'team-a/*'); repeatable")
    which.add_argument("--all", action="store_true", help="every repository")
    which.add_argument("--account", metavar="ID",
                       help="backfill this account (12 digits; with --region, that Region "
                            "only): queue every image of it for the hub to re-evaluate")
    parser.add_argument("--dry-run", action="store_true",
                        help="show the verdict each image would get; write nothing "
                             "(no verdict, tag or notification)")
    parser.add_argument("--rate", type=_positive, default=5.0, metavar="N",
                        help="at most N images per second (default 5)")
    parser.add_argument("--state-file", metavar="PATH",
                        help="record each finished image here and skip those already "
                             "recorded: an interrupted run resumes")
    parser.add_argument("--progress", action="store_true",
                        help="draw a progress bar even when stderr is not a terminal")
    parser.set_defaults(func=operator_command("reevaluate", _run))


def _run(args: argparse.Namespace) -> int:
    """``args.sleep`` and ``args.clock`` pace the run (set by ``main``; tests never sleep)."""
    if args.account is not None:
        if args.state_file:
            raise OperatorError("--state-file is not for --account: queueing the account "
                                "again is harmless (re-evaluating is idempotent)")
        account = str(checked_account(args.account))
        region = checked_region(args.region)
        return backfill(locate(args), account, region, dry_run=args.dry_run)
    return reevaluate(
        locate(args).deployment, patterns=args.repository or [], everything=args.all,
        dry_run=args.dry_run, rate=args.rate, state_file=args.state_file,
        progress=True if args.progress else None, sleep=args.sleep, clock=args.clock)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


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
        return Row(item.repository, item.digest, "failed", one_line(err))
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
        return Row(repo, digest, "failed", one_line(err))
    verdict = (evaluation.judge_scan(policy, repo, scan.status, scan.description, scan.findings,
                                 datetime.now(UTC), digest=digest)
               if scan is not None else None)
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



# --- backfilling one account of an organization's hub ---------------------------------------

def backfill(place: Place, account: str, region: str | None, *, dry_run: bool = False) -> int:
    """Queue a re-evaluation request for every image of ``account`` (in ``region``, or in all
    its Regions) that the table records or its ECR holds; the hub's function judges them."""
    deployment, home = place.deployment, place.home
    if not dry_run:
        deployment.require("queue_url")

    images: dict[tuple[str, str, str], tuple[Scope | None, str]] = {}
    regions = {region} if region else set()
    for record in deployment.store().records_in(account, region, home=home):
        scope = record.scope or home
        if scope is None:
            continue
        regions.add(scope.region)
        state = record.state if record.judged else "pending"
        images[(str(scope), record.repository, record.digest)] = (scope, state)
    for name in sorted(regions or ({home.region} if home else set())):
        scope = Scope(account, name)
        where = Place(deployment, None if scope == home else scope, home, place.role_name)
        for item in plan(where.ecr(), [], everything=True):
            images.setdefault((str(scope), item.repository, item.digest), (scope, "never judged"))
    requests, rows = [], []
    for (_, repository, digest), (scope, state) in sorted(images.items()):
        requests.append(reevaluation_request(repository, digest, Trigger.OPERATOR,
                                             None if scope == home else scope))
        rows.append(Row(f"{repository} ({scope.account} {scope.region})" if scope else repository,
                        digest, "would-queue" if dry_run else "queued", state))
    print(f"{'dry run: ' if dry_run else ''}{len(requests)} image(s) of account {account} "
          f"({region or 'every Region'}) to queue for re-evaluation", file=sys.stderr)
    if not dry_run and requests:
        queue = ReevaluationQueue(deployment.session.client("sqs", config=BOTO_CONFIG),
                                  str(deployment.queue_url))
        queue.send(requests)
    print(_table(rows, 0, dry_run))
    return EXIT_OK
