"""``gatekeeper policy validate|push``: check the severity policy, and publish it.

``push`` validates first and never uploads a policy the functions would reject; the VEX files
the policy names go first, to the same path relative to the policy object. The bucket and
key come from ``--bucket``/``--key``, else the stack's outputs (``--stack``), else the
environment, as for the other operator commands. Exit 0 done, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import dataclasses
import posixpath
from pathlib import Path

from gatekeeper.adapters.policy_source import VEX_FOLDER
from gatekeeper.domain import vex
from gatekeeper.domain.policy import Policy, PolicyError, PolicyIssue, parse_policy
from gatekeeper_tools.cli.deployment import (
    EXIT_OK,
    add_location_options,
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


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("policy", help="validate and publish the severity policy")
    verbs = parser.add_subparsers(dest="policy_command", required=True)

    validate = verbs.add_parser("validate", help="check a policy file")
    validate.add_argument("file", nargs="?", default="policy.yaml")
    validate.set_defaults(func=validate_command)

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
    documents = len(policy.vex.documents) if policy.vex else 0
    statements = sum(len(d.statements) for d in policy.vex.documents) if policy.vex else 0
    print(f"{args.file}: valid (version 1, {len(policy.repositories)} repository override(s)"
          + (f", {documents} VEX document(s) with {statements} statement(s)" if documents
             else "") + ")")
    return EXIT_OK


def push_command(args: argparse.Namespace) -> int:
    data, policy = read_policy(args.file)  # never upload what the functions would reject
    deployment = resolve(region=args.region, endpoint_url=args.endpoint_url, stack=args.stack,
                         policy_bucket=args.bucket, policy_key=args.key)
    deployment.require("policy_bucket")
    bucket, key = str(deployment.policy_bucket), deployment.policy_key
    s3 = deployment.session.client("s3")
    # The VEX files first: the published policy never names a document not there yet.
    for name, vex_key in _vex_keys(args.file, policy, key):
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
