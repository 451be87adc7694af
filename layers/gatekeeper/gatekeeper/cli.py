"""The ``gatekeeper`` command for people and pipelines.

Exit codes: 0 success, 2 usage or input error (a located message on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gatekeeper.domain.policy import PolicyError, parse_policy

EXIT_OK = 0
EXIT_INPUT = 2


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PolicyError as err:
        print(err, file=sys.stderr)
        return EXIT_INPUT
    except OSError as err:
        print(f"gatekeeper: {err}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
