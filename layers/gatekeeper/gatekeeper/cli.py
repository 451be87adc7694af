"""The ``gatekeeper`` command for people and pipelines.

Exit codes: 0 success or approved, 1 quarantined, 3 approved with warnings (or a verdict
under a monitor-mode policy that would quarantine), 2 usage or input error (a located message
on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gatekeeper.domain.findings import FindingsError
from gatekeeper.domain.policy import BUILTIN_POLICY, Policy, PolicyError, parse_policy
from gatekeeper.domain.report import explain, verdict_document
from gatekeeper.domain.scan_input import read_scan
from gatekeeper.domain.verdict import Outcome, Verdict
from gatekeeper.service import SCAN_DONE_STATES, SCAN_FAILED_STATES

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
    if not repository:
        raise FindingsError("the findings do not name the repository; pass --repository")
    tags = [args.tag] if args.tag else scan.tags
    if scan.status in SCAN_DONE_STATES:
        verdict = policy.evaluate(repository, scan.findings)
    elif scan.status in SCAN_FAILED_STATES:
        verdict = policy.scan_failed(repository, scan.status, scan.description)
    else:
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
                    "3 approved with warnings, 2 usage or input error.")
    evaluate.add_argument("--findings", required=True, help="a file, or - for stdin")
    evaluate.add_argument("--policy", help="default: ./policy.yaml, else the built-in policy")
    evaluate.add_argument("--repository", help="default: the repository named in the findings")
    evaluate.add_argument("--tag", help="the tag to show in the report")
    evaluate.add_argument("--digest", help="pick one image from list-findings output")
    evaluate.add_argument("--format", choices=["text", "json"], default="text")
    evaluate.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
