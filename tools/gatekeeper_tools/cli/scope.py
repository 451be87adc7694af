"""Which account and Region ``status``, ``verify`` and ``reevaluate`` look at.

An organization's hub keeps every member account's verdicts in its one table; an image is
named by its account and Region (its *scope*) as well as its repository and digest. The
operator names the scope with ``--account ID`` and ``--region NAME``, or with an image URI
(``ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO@DIGEST``, what deploy tooling has). The stack's
own account and Region (its *home* scope: the caller's account, from STS GetCallerIdentity,
and the Region the stack's table is in) read the keys a single-account stack always wrote;
any other scope reads :meth:`VerdictStore.scoped`. A member account's ECR is reached through
its spoke role, as the hub's functions reach it, unless the operator's own credentials are
already in that account.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from typing import Any

from gatekeeper.adapters.spoke import SPOKE_BOTO_CONFIG, SpokeSessions, SpokeUnavailable
from gatekeeper.adapters.store import VerdictStore
from gatekeeper.config import Config
from gatekeeper.domain.scope import ACCOUNT, REGION, Scope
from gatekeeper.runtime import BOTO_CONFIG
from gatekeeper_tools.cli.deployment import (
    Deployment,
    ImageReference,
    OperatorError,
    from_arguments,
)

ROLE_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,50}")

SCOPE_HELP = (
    "Which account and Region the image lives in, for an organization's hub (default: the "
    "stack's own). An image URI ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO names both; else "
    "--account ID with --region NAME (default: the stack's Region). --region alone is, as "
    "always, the Region of the stack and of its images; once an account or a URI names the "
    "image's scope, the stack is looked for in --hub-region, else in the environment's Region "
    "(AWS_REGION, the profile's). Images of the stack's own account and Region read the "
    "table's original keys. A member account's ECR is read through its spoke role "
    "(NAME-REGION, NAME from --spoke-role-name; assumed with your credentials as the hub's "
    "functions assume it), or with your own credentials when they are already in that "
    "account.")


def scope_options(account: bool = True) -> argparse.ArgumentParser:
    """A parent parser: ``--account`` (unless the command adds its own), ``--hub-region``,
    ``--spoke-role-name``."""
    options = argparse.ArgumentParser(add_help=False)
    where = options.add_argument_group("account and Region", SCOPE_HELP)
    if account:
        where.add_argument("--account", metavar="ID",
                           help="the member account (12 digits) the image lives in")
    where.add_argument("--hub-region", metavar="NAME",
                       help="the Region the gatekeeper's stack (the hub) runs in, when it is "
                            "not the image's")
    where.add_argument("--spoke-role-name", metavar="NAME",
                       default=os.environ.get("GATEKEEPER_SPOKE_ROLE_NAME")
                       or Config.spoke_role_name,
                       help="the spoke role's name prefix (default: the "
                            "GATEKEEPER_SPOKE_ROLE_NAME environment variable, else "
                            f"{Config.spoke_role_name})")
    return options


@dataclass
class Place:
    """The deployment, and the scope a command looks at (None: the stack's home scope)."""

    deployment: Deployment
    scope: Scope | None = None
    home: Scope | None = None
    role_name: str = Config.spoke_role_name
    _spokes: SpokeSessions | None = field(default=None, repr=False)

    def store(self) -> VerdictStore:
        return self.deployment.store().scoped(self.scope)

    def ecr(self) -> Any:
        """ECR of the scope: the deployment's own, the caller's in another Region, or a
        member account's through its spoke role."""
        session = self.deployment.session
        if self.scope is None:
            return self.deployment.ecr()
        if self.home is not None and self.scope.account == self.home.account:
            return session.client("ecr", region_name=self.scope.region, config=BOTO_CONFIG)
        if self._spokes is None:
            self._spokes = SpokeSessions(session.client("sts", config=BOTO_CONFIG),
                                         self.role_name)
        try:
            member = self._spokes.session(self.scope)
        except SpokeUnavailable as err:
            raise OperatorError(f"{err} (is the spoke stack deployed there? or run with "
                                f"credentials of account {self.scope.account})") from None
        return member.client("ecr", region_name=self.scope.region, config=SPOKE_BOTO_CONFIG,
                             endpoint_url=getattr(session, "endpoint_url", None))

    def where(self) -> str:
        """`` in account A (Region)`` for a member's scope; empty for the home scope."""
        return describe(self.scope)


def describe(scope: Scope | None) -> str:
    return f" in account {scope.account} ({scope.region})" if scope is not None else ""


def checked_account(text: str | None) -> str | None:
    if text is not None and not ACCOUNT.fullmatch(text):
        raise OperatorError(f"--account {text!r:.40}: not an AWS account id (12 digits)")
    return text


def checked_region(text: str | None, flag: str = "--region") -> str | None:
    if text is not None and not REGION.fullmatch(text):
        raise OperatorError(f"{flag} {text!r:.40}: not an AWS Region name (like eu-west-1)")
    return text


def locate(args: argparse.Namespace, ref: ImageReference | None = None) -> Place:
    """The deployment and the scope the arguments name (an image URI, --account, --region);
    a malformed or contradictory choice is an OperatorError, never a look in the wrong
    account."""
    account = checked_account(getattr(args, "account", None))
    region = checked_region(args.region)
    hub_region = checked_region(getattr(args, "hub_region", None), "--hub-region")
    role = getattr(args, "spoke_role_name", None) or Config.spoke_role_name
    if not ROLE_NAME.fullmatch(role):
        raise OperatorError(f"--spoke-role-name {role!r:.60}: not an IAM role name prefix")
    uri = ref.scope if ref is not None else None
    if uri is not None:
        if account is not None and account != uri.account:
            raise OperatorError(f"the image URI names account {uri.account}, --account "
                                f"{account}: which one?")
        if region is not None and region != uri.region:
            raise OperatorError(f"the image URI names Region {uri.region}, --region "
                                f"{region}: which one?")
    named = uri is not None or account is not None
    stack_region = hub_region or (None if named else region)
    deployment = from_arguments(argparse.Namespace(**{**vars(args), "region": stack_region}))
    if not named:
        return Place(deployment, role_name=role)
    home = home_scope(deployment)
    scope = uri or Scope(str(account), region or home.region)
    return Place(deployment, None if scope == home else scope, home, role)


def home_scope(deployment: Deployment) -> Scope:
    """The stack's own account and Region: the caller's account (STS GetCallerIdentity; the
    operator works in the hub's account, where its table is) and the session's Region."""
    region = deployment.session.region_name
    if not region:
        raise OperatorError("which Region does the gatekeeper run in? pass --hub-region (or "
                            "set AWS_REGION)")
    sts = deployment.session.client("sts", config=BOTO_CONFIG)
    return Scope(str(sts.get_caller_identity()["Account"]), region)
