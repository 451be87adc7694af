"""``gatekeeper policy validate|rules|push``: check the severity policy, and publish it.

``rules`` shows which rules apply to a repository (and ``--account``: the policy's
``accounts:`` limits), so the team can try an organization's policy locally. ``push``
validates first and never uploads a policy the functions would reject. The bucket and key come
from ``--bucket``/``--key``, else the stack's outputs (``--stack``), else the environment, as
for the other operator commands. Exit 0 done, 2 usage or input error.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from gatekeeper.domain.accounts import is_account_id
from gatekeeper.domain.findings import Severity
from gatekeeper.domain.policy import Policy, parse_policy
from gatekeeper_tools.cli.deployment import (
    EXIT_OK,
    add_location_options,
    operator_command,
    resolve,
)


def read_policy(path: str) -> tuple[bytes, Policy]:
    """The file's bytes and the policy they hold; PolicyError (located) when invalid."""
    data = Path(path).read_bytes()
    return data, parse_policy(data, source=path, version="local")


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
    parser = commands.add_parser("policy", help="validate and publish the severity policy")
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

    push = verbs.add_parser(
        "push", help="validate a policy file, then publish it to the deployed policy bucket",
        description="Validate a policy file, then publish it as a new version of the deployed "
                    "policy object. The bucket and key come from their flags, else the stack's "
                    "outputs and parameters (--stack), else GATEKEEPER_POLICY_BUCKET and "
                    "GATEKEEPER_POLICY_KEY (key default: policy.yaml).")
    push.add_argument("file", nargs="?", default="policy.yaml")
    push.add_argument("--bucket", "--policy-bucket", dest="bucket",
                      help="the stack's PolicyBucketName output")
    push.add_argument("--key", "--policy-key", dest="key",
                      help="default: the stack's PolicyObjectKey, GATEKEEPER_POLICY_KEY, "
                           "else policy.yaml")
    add_location_options(push)
    push.set_defaults(func=operator_command("policy push", push_command))


def validate_command(args: argparse.Namespace) -> int:
    _, policy = read_policy(args.file)
    print(f"{args.file}: valid (version 1, {len(policy.repositories)} repository override(s))")
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


def push_command(args: argparse.Namespace) -> int:
    data, _ = read_policy(args.file)  # never upload what the functions would reject
    deployment = resolve(region=args.region, endpoint_url=args.endpoint_url, stack=args.stack,
                         policy_bucket=args.bucket, policy_key=args.key)
    deployment.require("policy_bucket")
    bucket, key = str(deployment.policy_bucket), deployment.policy_key
    response = deployment.session.client("s3").put_object(
        Bucket=bucket, Key=key, Body=data, ContentType="application/yaml",
        ServerSideEncryption="AES256",
    )
    version = response.get("VersionId", "(bucket not versioned)")
    print(f"published {args.file} to s3://{bucket}/{key} as version {version}")
    return EXIT_OK
