"""Where an image lives: its AWS account and Region (a *scope*).

A single-account stack judges the images of its own account and Region only; in organization
mode one hub judges every member account's images too. Every image is then named by its scope
as well as its repository and digest: the verdict table keys on it, the hub reads findings and
writes markers in that account and Region, notices carry it. The hub's *home* scope (its own
account and Region) keeps the keys a single-account stack always used, so an existing table
needs no migration: an item without a scope is the home scope's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACCOUNT = re.compile(r"[0-9]{12}")
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]")


class ScopeError(ValueError):
    """Not an account id or not a Region name."""


@dataclass(frozen=True, order=True)
class Scope:
    account: str
    region: str

    def __post_init__(self) -> None:
        if not isinstance(self.account, str) or not ACCOUNT.fullmatch(self.account):
            raise ScopeError(f"{self.account!r:.40} is not an AWS account id (12 digits)")
        if not isinstance(self.region, str) or not REGION.fullmatch(self.region):
            raise ScopeError(f"{self.region!r:.40} is not an AWS Region name")

    def __str__(self) -> str:
        return f"{self.account}/{self.region}"

    @property
    def key(self) -> str:
        """The scope's part of a table key (``:`` appears in no repository name)."""
        return f"{self.account}:{self.region}"


def scope_of(account: object, region: object) -> Scope | None:
    """The scope both parts name, None when either is missing; ScopeError when malformed."""
    if account is None or region is None:
        return None
    return Scope(str(account), str(region))
