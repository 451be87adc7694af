"""``gatekeeper policy validate|rules|simulate|lint|push``: check the severity policy, show the
rules it applies to a repository, try it on the recorded images, tidy its exceptions, and
publish it.

``rules`` shows which rules apply to a repository (and ``--account``: the policy's
``accounts:`` limits), so the team can try an organization's policy locally.

``push`` validates first and never uploads a policy the functions would reject; then it shows
what the file would flip on the recorded images (as ``simulate`` does) and asks before
uploading, on a terminal; ``--yes`` publishes without asking (pipelines), ``--no-simulate``
without trying. The VEX files the policy names go first, to the same path relative to the
policy object. The bucket and key come from ``--bucket``/``--key``, else the stack's outputs
(``--stack``), else the environment, as for the other operator commands; the verdict table
likewise (``--table``). Exit 0 done, 1 not confirmed (push), or would flip (simulate), or
something listed (lint --strict), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import dataclasses
import posixpath
import sys
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from gatekeeper.adapters.policy_source import VEX_FOLDER
from gatekeeper.domain import vex
from gatekeeper.domain.accounts import is_account_id
from gatekeeper.domain.findings import Severity
from gatekeeper.domain.policy import Policy, PolicyError, PolicyIssue, parse_policy
from gatekeeper_tools.cli import lint as lint_module
from gatekeeper_tools.cli import simulate as simulate_module
from gatekeeper_tools.cli.deployment import (
    EXIT_FAILED,
    EXIT_OK,
    OperatorError,
    add_location_options,
    deployment_options,
    from_arguments,
    operator_command,
    resolve,
)


def read_policy(path: str) -> tuple[bytes, Policy]:
    """The file's bytes and the policy they hold, with the VEX documents it names (paths
    relative to the policy file); PolicyError (located) when either is invalid."""
    data = Path(path).read_bytes()
    policy = parse_policy(data, source=path, version="local")
    if not policy.vex_files:
        return data, policy
    return data, dataclasses.replace(policy, vex=vex.load_documents(_vex_files(path, policy)))


def _vex_keys(path: str, policy: Policy, key: str) -> list[tuple[str, str]]:
    """(file, key) of each VEX file the policy names: beside the policy object as beside the
    policy file, under vex/ of the bucket, where the functions may read them."""
    found, issues = [], []
    for index, name in enumerate(policy.vex_files):
        vex_key = posixpath.normpath(posixpath.join(posixpath.dirname(key), name))
        if not vex_key.startswith(VEX_FOLDER) or name.startswith("/"):
            issues.append(PolicyIssue(f"vex[{index}]", f"{name!r} would be published as "
                                      f"{vex_key!r}; the functions read VEX documents under "
                                      f"{VEX_FOLDER} of the policy bucket only"))
        found.append((name, vex_key))
    if issues:
        raise PolicyError(issues, source=path)
    return found


def _vex_files(path: str, policy: Policy) -> list[tuple[str, bytes]]:
    """Each VEX file the policy names, read; PolicyError naming every one that cannot be."""
    folder = Path(path).parent
    found, issues = [], []
    for index, name in enumerate(policy.vex_files):
        file = folder / name
        try:
            found.append((str(file), file.read_bytes()))
        except OSError as err:
            issues.append(PolicyIssue(f"vex[{index}]", f"cannot read {file}: "
                                                      f"{err.strerror or err}"))
    if issues:
        raise PolicyError(issues, source=path)
    return found


def account_id(text: str) -> str:
    """``--account``: a twelve-digit AWS account id, leading zeros kept."""
    if not is_account_id(text):
        raise argparse.ArgumentTypeError(f"not a twelve-digit AWS account id: {text!r}")
    return text


def add_account_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--account", type=account_id, metavar="ID",
        help="the AWS account the image lives in, for the policy's 'accounts:' limits "
             "(default: none, so no override or exception limited to accounts applies)")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("policy", help="validate, try and publish the severity policy")
    verbs = parser.add_subparsers(dest="policy_command", required=True)

    validate = verbs.add_parser("validate", help="check a policy file")
    validate.add_argument("file", nargs="?", default="policy.yaml")
    validate.set_defaults(func=validate_command)

    rules = verbs.add_parser(
        "rules", help="show the rules a policy applies to a repository (and an account)",
        description="Show which entry of a policy file applies to an image of REPOSITORY "
                    "(in the account given with --account), and the rules it sets.")
    rules.add_argument("repository")
    rules.add_argument("file", nargs="?", default="policy.yaml")
    add_account_option(rules)
    rules.set_defaults(func=rules_command)
    _register_simulate(verbs)
    _register_lint(verbs)

    push = verbs.add_parser(
        "push", help="validate a policy file, then publish it to the deployed policy bucket",
        description="Validate a policy file, show what it would flip on the recorded images "
                    "(as policy simulate does: it " + simulate_module.REREAD + " but the "
                    "policy), ask, then publish it as a new version of the deployed policy "
                    "object. Without a terminal, --yes is required. The bucket and key come "
                    "from their flags, else the stack's outputs and parameters (--stack), else "
                    "GATEKEEPER_POLICY_BUCKET and GATEKEEPER_POLICY_KEY (key default: "
                    "policy.yaml); the verdict table from --table, the stack or "
                    "GATEKEEPER_TABLE. Exit 0 published, 1 not confirmed, 2 usage or input "
                    "error (nothing published).")
    push.add_argument("file", nargs="?", default="policy.yaml")
    push.add_argument("--bucket", "--policy-bucket", dest="bucket",
                      help="the stack's PolicyBucketName output")
    push.add_argument("--key", "--policy-key", dest="key",
                      help="default: the stack's PolicyObjectKey, GATEKEEPER_POLICY_KEY, "
                           "else policy.yaml")
    push.add_argument("--table", help="the stack's VerdictTableName output (the recorded "
                                      "images the file is tried on)")
    push.add_argument("--yes", "-y", action="store_true",
                      help="publish without asking (pipelines); the summary is still shown")
    push.add_argument("--no-simulate", action="store_true",
                      help="do not try the file on the recorded images first")
    add_location_options(push)
    push.set_defaults(func=operator_command("policy push", push_command))


def _register_simulate(verbs: argparse._SubParsersAction) -> None:
    simulate = verbs.add_parser(
        "simulate", parents=[deployment_options()],
        help="show what a candidate policy would flip on the recorded images",
        description="Judge every recorded image (the verdict table's current verdicts) with "
                    "the candidate and with the published policy (the deployed policy object; "
                    "the built-in strict policy while none is published), on the same findings,"
                    " and show what would flip (approved to quarantined, and back; approved "
                    "with warnings counts as approved), per repository, with the candidate's "
                    "reasons. It " + simulate_module.REREAD + ". Images gone from ECR or whose "
                    "findings cannot be read are listed apart, never counted as approved. "
                    "Progress on stderr every 100 images when stderr is a terminal (or with "
                    "--progress). Exit 0 nothing would flip, 1 something would flip, 2 usage "
                    "or input error.")
    simulate.add_argument("file", help="the candidate policy file")
    simulate.add_argument("--repository", metavar="GLOB", action="append",
                          help="only repositories matching this glob (e.g. 'team-a/*'); "
                               "repeatable")
    simulate.add_argument("--format", choices=["text", "json"], default="text")
    simulate.add_argument("--progress", action="store_true",
                          help="progress lines on stderr even when it is not a terminal")
    simulate.add_argument("--workers", type=_workers, default=simulate_module.WORKERS,
                          help=f"concurrent ECR reads (default {simulate_module.WORKERS})")
    simulate.set_defaults(func=operator_command("policy simulate", simulate_command))


def _register_lint(verbs: argparse._SubParsersAction) -> None:
    lint = verbs.add_parser(
        "lint", parents=[deployment_options()],
        help="list exceptions that expired, expire soon, or match no recorded image",
        description="List the policy's exceptions that have expired, that expire within the "
                    "window, and those no recorded image uses: the table keeps no findings nor "
                    "which exceptions a verdict used, so lint reads the recorded images' "
                    "findings again from ECR and judges them with FILE; an exception no "
                    "verdict used exempts no finding of any recorded image of a repository it "
                    "covers. --offline checks the dates only. Exit 0, or with --strict 1 when "
                    "something is listed; 2 usage or input error.")
    lint.add_argument("file", nargs="?", default="policy.yaml")
    lint.add_argument("--within", type=lint_module.within, default=None, metavar="DAYS",
                      help="expiring within this window: 14d, 2w (default: the policy's "
                           "expiring_window_days, 14 unless set)")
    lint.add_argument("--format", choices=["text", "json"], default="text")
    lint.add_argument("--strict", action="store_true", help="exit 1 when anything is listed")
    lint.add_argument("--offline", action="store_true",
                      help="check the dates only: no table, no ECR (nothing called unused)")
    lint.add_argument("--progress", action="store_true",
                      help="progress lines on stderr even when it is not a terminal")
    lint.set_defaults(func=operator_command("policy lint", lint_command))


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("between 1 and 64")
    return value


def validate_command(args: argparse.Namespace) -> int:
    _, policy = read_policy(args.file)
    documents = len(policy.vex.documents) if policy.vex else 0
    statements = sum(len(d.statements) for d in policy.vex.documents) if policy.vex else 0
    print(f"{args.file}: valid (version 1, {len(policy.repositories)} repository override(s)"
          + (f", {documents} VEX document(s) with {statements} statement(s)" if documents
             else "") + ")")
    return EXIT_OK


def rules_command(args: argparse.Namespace) -> int:
    _, policy = read_policy(args.file)
    rules = policy.rules_for(args.repository, args.account)
    exceptions = policy.exceptions_for(args.repository, args.account)
    print("\n".join([
        f"{args.repository} in account {args.account or '(none given)'}: {rules.matched}",
        f"mode:            {rules.mode}",
        f"max_findings:    {_limits(rules.max_findings)}",
        f"warn_findings:   {_limits(rules.warn_findings)}",
        "on_scan_failure: " + ", ".join(f"{state} {outcome}" for state, outcome
                                        in rules.on_scan_failure.items()),
        f"exceptions:      {', '.join(e.id for e in exceptions) or 'none'}",
    ]))
    return EXIT_OK


def _limits(limits: Mapping[Severity, int]) -> str:
    return ", ".join(f"{severity.name} {limit}" for severity, limit
                     in sorted(limits.items(), reverse=True)) or "none"
def simulate_command(args: argparse.Namespace) -> int:
    _, candidate = read_policy(args.file)
    published, simulation = simulate_module.simulate(
        from_arguments(args), candidate, patterns=args.repository or [],
        workers=args.workers, progress=args.progress or sys.stderr.isatty())
    render = (simulate_module.render_json if args.format == "json"
              else simulate_module.render_text)
    print(render(args.file, published, simulation))
    return simulate_module.exit_code(simulation)


def lint_command(args: argparse.Namespace) -> int:
    _, policy = read_policy(args.file)
    found = None if args.offline else lint_module.usage(
        from_arguments(args), policy, progress=args.progress or sys.stderr.isatty())
    window = (args.within if args.within is not None
              else timedelta(days=policy.expiring_window_days))
    reports = lint_module.lint(policy, window=window, found=found)
    render = lint_module.render_json if args.format == "json" else lint_module.render_text
    print(render(args.file, reports, window, found))
    return lint_module.exit_code(reports, args.strict)


def push_command(args: argparse.Namespace) -> int:
    data, candidate = read_policy(args.file)  # never upload what the functions would reject
    interactive = sys.stdin.isatty()
    if not args.yes and not interactive:
        raise OperatorError("not published: no terminal to confirm on; pass --yes to publish "
                            "without asking (pipelines)")
    deployment = resolve(region=args.region, endpoint_url=args.endpoint_url, stack=args.stack,
                         table=args.table, policy_bucket=args.bucket, policy_key=args.key)
    deployment.require("policy_bucket")
    bucket, key = str(deployment.policy_bucket), deployment.policy_key
    vex_uploads = list(_vex_keys(args.file, candidate, key))  # refused before anything is asked
    if not args.no_simulate:
        if not deployment.table:
            try:
                deployment.require("table")
            except OperatorError as err:
                raise OperatorError(f"{err}; or --no-simulate to publish without trying the "
                                    "file on the recorded images") from None
        try:
            published, simulation = simulate_module.simulate(
                deployment, candidate, progress=sys.stderr.isatty())
        except PolicyError as err:  # the published policy is broken: this push may fix it
            print(f"not tried on the recorded images: the published policy does not "
                  f"validate:\n{err}", file=sys.stderr)
        else:
            print(simulate_module.render_summary(args.file, published, simulation),
                  file=sys.stderr)
    if not args.yes and not confirm(f"publish {args.file} to s3://{bucket}/{key}? [y/N] "):
        print("not published", file=sys.stderr)
        return EXIT_FAILED
    s3 = deployment.session.client("s3")
    # The VEX files first: the published policy never names a document not there yet.
    for name, vex_key in vex_uploads:
        s3.put_object(Bucket=bucket, Key=vex_key, Body=(Path(args.file).parent / name)
                      .read_bytes(), ContentType="application/json",
                      ServerSideEncryption="AES256")
        print(f"published {name} to s3://{bucket}/{vex_key}")
    response = s3.put_object(
        Bucket=bucket, Key=key, Body=data, ContentType="application/yaml",
        ServerSideEncryption="AES256",
    )
    version = response.get("VersionId", "(bucket not versioned)")
    print(f"published {args.file} to s3://{bucket}/{key} as version {version}")
    return EXIT_OK


def confirm(question: str) -> bool:
    """The question on stderr (stdout stays the command's result); yes or y confirms."""
    print(question, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")
