"""The ``gatekeeper`` command for people and pipelines.

Exit codes: 0 success or approved, 1 quarantined, 3 approved with warnings (or a verdict
under a monitor-mode policy that would quarantine), 2 usage or input error (a located message
on stderr). The operator commands (status, verify, reevaluate, replay-dlq) document theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from gatekeeper.config import ConfigError
from gatekeeper.domain import evaluation
from gatekeeper.domain.findings import FindingsError
from gatekeeper.domain.policy import BUILTIN_POLICY, Policy, PolicyError, parse_policy
from gatekeeper.domain.scan_input import ScanInput, read_scan
from gatekeeper.domain.verdict import Outcome, Verdict
from gatekeeper.render.report import explain, verdict_document
from gatekeeper_tools import operator as ops

EXIT_OK = 0
EXIT_QUARANTINED = 1
EXIT_INPUT = 2
EXIT_WARNINGS = 3


def _read_policy(path: str) -> tuple[bytes, object]:
    data = Path(path).read_bytes()
    return data, parse_policy(data, source=path, version="local")


def cmd_policy_validate(args: argparse.Namespace) -> int:
    _, policy = _read_policy(args.file)
    overrides = len(policy.repositories)  # type: ignore[attr-defined]
    print(f"{args.file}: valid (version 1, {overrides} repository override(s))")
    return EXIT_OK


def cmd_policy_push(args: argparse.Namespace) -> int:
    data, _ = _read_policy(args.file)  # never upload what the functions would reject
    import boto3

    s3 = boto3.client("s3", region_name=args.region, endpoint_url=args.endpoint_url)
    response = s3.put_object(
        Bucket=args.bucket, Key=args.key, Body=data, ContentType="application/yaml",
        ServerSideEncryption="AES256",
    )
    version = response.get("VersionId", "(bucket not versioned)")
    print(f"published {args.file} to s3://{args.bucket}/{args.key} as version {version}")
    return EXIT_OK


def exit_code(verdict: Verdict) -> int:
    if verdict.outcome is Outcome.APPROVED:
        return EXIT_OK
    if verdict.outcome is Outcome.QUARANTINED and not verdict.monitor:
        return EXIT_QUARANTINED
    return EXIT_WARNINGS


def _policy(path: str | None) -> tuple[Policy, str]:
    if path is None and Path("policy.yaml").exists():
        path = "policy.yaml"
    if path is None:
        return BUILTIN_POLICY, "built-in strict policy (no policy.yaml here)"
    return _read_policy(path)[1], path  # type: ignore[return-value]


def cmd_evaluate(args: argparse.Namespace) -> int:
    policy, policy_source = _policy(args.policy)
    try:
        text = sys.stdin.read() if args.findings == "-" else Path(args.findings).read_text(
            encoding="utf-8")
    except UnicodeDecodeError as err:
        raise FindingsError(f"{args.findings} is not UTF-8 text: {err.reason}") from None
    scan = read_scan(text, digest=args.digest)
    repository = args.repository or scan.repository
    _refuse_incomplete(scan, repository)
    if not repository:
        raise FindingsError("the findings do not name the repository; pass --repository")
    tags = [args.tag] if args.tag else scan.tags
    verdict = evaluation.judge_scan(policy, repository, scan.status, scan.description,
                                    scan.findings)
    if verdict is None:
        raise FindingsError(f"the scan is {scan.status}, not finished: nothing to judge yet")
    code = exit_code(verdict)
    if args.format == "json":
        document = verdict_document(verdict, repository=repository, digest=scan.digest,
                                    tags=tags, policy_source=policy_source)
        document["exit_code"] = code
        print(json.dumps(document, indent=2))
    else:
        print(_text(verdict, repository, scan.digest, tags, policy_source))
    return code


def _refuse_incomplete(scan: ScanInput, repository: str | None) -> None:
    """Never judge part of an image's findings: a page that says more follow, counts that
    disagree with the findings, a severity AWS does not define, no scan status (exit 2)."""
    if scan.next_token is not None:
        image = (f"--repository-name {repository or 'REPOSITORY'} --image-id "
                 f"imageDigest={scan.digest or 'DIGEST'}")
        raise FindingsError(
            f"the findings are incomplete: the input says more pages follow (next token "
            f"{scan.next_token[:40]!r}{'…' if len(scan.next_token) > 40 else ''}). Save "
            f"every page: 'aws ecr describe-image-scan-findings {image}' without --max-items "
            "pages through them all (for list-findings: 'aws inspector2 list-findings' "
            "without --max-items)")
    if scan.problems:
        raise FindingsError("the findings are incomplete or unreadable, nothing is judged: "
                            + "; ".join(scan.problems))


def _text(verdict: Verdict, repository: str, digest: str | None, tags: list[str],
          policy_source: str) -> str:
    name = f"{repository}:{tags[0]}" if tags else repository
    counts = ", ".join(f"{k} {v}" for k, v in verdict.counts.items()) or "none"
    head = [
        f"{verdict.outcome}  {name}" + (f"  ({digest})" if digest else ""),
        f"policy:   {policy_source} (version {verdict.policy_version}, rule "
        f"{verdict.matched_rule}, mode {verdict.mode})",
        f"scan:     {verdict.scan_status}",
        f"findings: {sum(verdict.counts.values())} ({counts}); counted "
        f"{len(verdict.counted)}, ignored {len(verdict.ignored)}",
        "",
    ]
    return "\n".join(head + explain(verdict))


# --- operator commands (the logic is in gatekeeper_tools.operator) --------------------------------

def _deployment(args: argparse.Namespace) -> ops.Deployment:
    return ops.resolve(
        region=args.region, endpoint_url=args.endpoint_url, stack=args.stack,
        table=args.table, topic_arn=args.topic_arn, policy_bucket=args.policy_bucket,
        policy_key=args.policy_key, dlq_url=args.dlq_url)


def cmd_status(args: argparse.Namespace) -> int:
    return ops.status(_deployment(args), args.image, args.format)


def cmd_verify(args: argparse.Namespace) -> int:
    return ops.verify(_deployment(args), args.image)


def cmd_reevaluate(args: argparse.Namespace) -> int:
    return ops.reevaluate(
        _deployment(args), patterns=args.repository or [], everything=args.all,
        dry_run=args.dry_run, rate=args.rate, state_file=args.state_file,
        progress=True if args.progress else None, sleep=args.sleep, clock=args.clock)


def cmd_replay_dlq(args: argparse.Namespace) -> int:
    return ops.replay_dlq(_deployment(args), max_messages=args.max, dry_run=args.dry_run)


def _operator_command(run: Callable[[argparse.Namespace], int]
                      ) -> Callable[[argparse.Namespace], int]:
    """Usage errors, AWS errors and missing settings as one line on stderr, exit 2; the
    functions' own logs only with --verbose (on stderr)."""
    def command(args: argparse.Namespace) -> int:
        with ops.quiet_lambda_logs(args.verbose):
            try:
                return run(args)
            except (ops.OperatorError, ConfigError) as err:
                print(f"gatekeeper {args.command}: {err}", file=sys.stderr)
            except (ClientError, BotoCoreError) as err:
                print(f"gatekeeper {args.command}: {' '.join(str(err).split())}",
                      file=sys.stderr)
            except KeyboardInterrupt:
                print(f"gatekeeper {args.command}: interrupted", file=sys.stderr)
                return ops.EXIT_INTERRUPTED
            return EXIT_INPUT

    return command


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _deployment_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    where = options.add_argument_group(
        "deployment",
        "Where the gatekeeper runs: --stack NAME reads the stack's outputs (and its marker "
        "tag templates); or name the resources. Each comes from its flag, else the stack, "
        "else the environment (GATEKEEPER_TABLE, GATEKEEPER_TOPIC_ARN, "
        "GATEKEEPER_POLICY_BUCKET, GATEKEEPER_DLQ_URL; markers from GATEKEEPER_APPROVED_TAG "
        "and GATEKEEPER_QUARANTINED_TAG).")
    where.add_argument("--stack", metavar="NAME", help="the CloudFormation stack's name")
    where.add_argument("--table", help="the VerdictTableName output")
    where.add_argument("--topic-arn", help="the VerdictTopicArn output")
    where.add_argument("--policy-bucket", help="the PolicyBucketName output")
    where.add_argument("--policy-key", help="default: the stack's PolicyObjectKey, "
                       "GATEKEEPER_POLICY_KEY, else policy.yaml")
    where.add_argument("--dlq-url", help="the DeadLetterQueueUrl output")
    where.add_argument("--region", default=None)
    where.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                       help="one endpoint for every AWS call, e.g. a local moto server "
                            "(default: AWS_ENDPOINT_URL)")
    where.add_argument("-v", "--verbose", action="store_true",
                       help="also show the functions' own logs (JSON, on stderr)")
    return options


def _add_operator_commands(commands: argparse._SubParsersAction) -> None:
    deployment = _deployment_options()
    image_help = ("REPO[:TAG] or REPO@DIGEST (a registry host in front is ignored; no tag "
                  "means latest)")

    status = commands.add_parser(
        "status", parents=[deployment], help="show an image's verdict and its history",
        description="Show the recorded verdict of an image (state, reasons, marker, the tags "
                    "on the image now, policy version and rule, when and why it was decided) "
                    "and its verdict history, newest first. Exit 0 judged, 1 not judged yet "
                    "(no verdict recorded, or pending), 2 usage error or no such image.")
    status.add_argument("image", help=image_help)
    status.add_argument("--format", choices=["text", "json"], default="text")
    status.set_defaults(func=_operator_command(cmd_status))

    verify = commands.add_parser(
        "verify", parents=[deployment], help="deploy gate: is this image approved, now?",
        description="For deploy pipelines. Exit 0 only when the recorded verdict is APPROVED "
                    "or APPROVED_WITH_WARNINGS, settled, the image not gone, and the image "
                    "carries its approved marker now (one line on stdout). Otherwise exit 1 "
                    "with one line on stderr saying why; 2 when the check itself could not "
                    "run (usage, configuration, AWS error).")
    verify.add_argument("image", help=image_help)
    verify.set_defaults(func=_operator_command(cmd_verify))

    reevaluate = commands.add_parser(
        "reevaluate", parents=[deployment],
        help="re-judge (or backfill) every image of some repositories",
        description="Re-evaluate every image of the chosen repositories with the published "
                    "policy, through the functions' own code: images never judged are "
                    "judged (backfill), changed verdicts are re-tagged and notified, "
                    "unchanged ones cost nothing. Progress on stderr, a summary table on "
                    "stdout. Exit 0 done, 1 some image failed, 2 usage error, 130 "
                    "interrupted (with --state-file, re-run to continue).")
    which = reevaluate.add_mutually_exclusive_group(required=True)
    which.add_argument("--repository", metavar="GLOB", action="append",
                       help="repositories matching this glob (e.g. 'team-a/*'); repeatable")
    which.add_argument("--all", action="store_true", help="every repository")
    reevaluate.add_argument("--dry-run", action="store_true",
                            help="show the verdict each image would get; write nothing "
                                 "(no verdict, tag or notification)")
    reevaluate.add_argument("--rate", type=_positive, default=5.0, metavar="N",
                            help="at most N images per second (default 5)")
    reevaluate.add_argument("--state-file", metavar="PATH",
                            help="record each finished image here and skip those already "
                                 "recorded: an interrupted run resumes")
    reevaluate.add_argument("--progress", action="store_true",
                            help="draw a progress bar even when stderr is not a terminal")
    reevaluate.set_defaults(func=_operator_command(cmd_reevaluate))

    replay = commands.add_parser(
        "replay-dlq", parents=[deployment],
        help="replay the dead-letter queue's events through the handlers' code",
        description="Receive the dead-letter queue's messages (EventBridge events that could "
                    "not be delivered, and Lambda failure records holding the event), run "
                    "each ECR push or scan event through the code the functions run, and "
                    "delete it only when that succeeds. Events that fail again and unknown "
                    "messages stay in the queue. Exit 0 when everything was replayed, 1 when "
                    "something stays, 2 usage error.")
    replay.add_argument("--max", type=_at_least_one, metavar="N",
                        help="at most N messages (default: all)")
    replay.add_argument("--dry-run", action="store_true",
                        help="show what would be replayed; handle and delete nothing")
    replay.set_defaults(func=_operator_command(cmd_replay_dlq))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatekeeper", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    policy = commands.add_parser("policy", help="validate and publish the severity policy")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)

    validate = policy_commands.add_parser("validate", help="check a policy file")
    validate.add_argument("file", nargs="?", default="policy.yaml")
    validate.set_defaults(func=cmd_policy_validate)

    push = policy_commands.add_parser(
        "push", help="validate a policy file, then publish it to the deployed policy bucket")
    push.add_argument("file", nargs="?", default="policy.yaml")
    push.add_argument("--bucket", default=os.environ.get("GATEKEEPER_POLICY_BUCKET"),
                      required="GATEKEEPER_POLICY_BUCKET" not in os.environ,
                      help="the stack's PolicyBucketName output")
    push.add_argument("--key", default=os.environ.get("GATEKEEPER_POLICY_KEY", "policy.yaml"))
    push.add_argument("--region", default=None)
    push.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"),
                      help="an S3-compatible endpoint, e.g. a local moto server")
    push.set_defaults(func=cmd_policy_push)

    evaluate = commands.add_parser(
        "evaluate", help="judge saved scan findings offline, with the same code the Lambda runs",
        description="Evaluate the output of 'aws ecr describe-image-scan-findings' (basic or "
                    "enhanced; one page or several concatenated) or 'aws inspector2 "
                    "list-findings' against a policy. Exit 0 approved, 1 quarantined, "
                    "3 approved with warnings, 2 usage or input error, which includes "
                    "incomplete input: a page that says more follow (nextToken/NextToken), "
                    "findings that disagree with the severity counts of the same output, a "
                    "severity AWS does not define, no scan status.")
    evaluate.add_argument("--findings", required=True, help="a file, or - for stdin")
    evaluate.add_argument("--policy", help="default: ./policy.yaml, else the built-in policy")
    evaluate.add_argument("--repository", help="default: the repository named in the findings")
    evaluate.add_argument("--tag", help="the tag to show in the report")
    evaluate.add_argument("--digest", help="pick one image from list-findings output")
    evaluate.add_argument("--format", choices=["text", "json"], default="text")
    evaluate.set_defaults(func=cmd_evaluate)

    _add_operator_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None, *,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> int:
    """``sleep`` and ``clock`` pace ``reevaluate`` (injectable: tests never really sleep)."""
    args = build_parser().parse_args(argv)
    args.sleep, args.clock = sleep, clock
    try:
        return int(args.func(args))
    except PolicyError as err:
        print(err, file=sys.stderr)
        return EXIT_INPUT
    except FindingsError as err:
        print(f"gatekeeper: {getattr(args, 'findings', 'findings')}: {err}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as err:
        print(f"gatekeeper: {err}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
