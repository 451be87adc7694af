"""Which AWS accounts a policy entry applies to: ``account_groups`` and ``accounts:`` lists.

In an organization, one policy judges the images of every member account. The policy names
groups of accounts of its authors' choosing (``account_groups: {sandbox: ["1111*"]}``), and
an override, an exception or a notification route may be limited to some accounts with
``accounts:``, whose entries are either

- an account-id glob: twelve digits, where ``?`` stands for one digit and ``*`` for any run of
  them (``"123456789012"``, ``"1111*"``, ``"*"`` for every named account), or
- ``group:<name>``, a group defined in ``account_groups`` (never a bare name: ``sandbox`` alone
  is refused, so a group can never be mistaken for an account id, nor a typo for a group).

An entry limited to accounts applies only to an image whose account is known and matches one
of them. An unknown account (``None``: a single-account stack, or ``gatekeeper evaluate``
without ``--account``) or a malformed one matches none, so a rule written for named accounts
never applies to an account nobody named.

The JSON Schema (``policy.schema.json``) checks how ids, globs and group names are written;
this module checks that each group used is defined, resolves groups and matches accounts.
Pure: no AWS packages.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

GROUP_PREFIX = "group:"
ACCOUNT_ID = re.compile(r"[0-9]{12}")
GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def is_account_id(value: object) -> bool:
    """A twelve-digit AWS account id (as text: ids keep their leading zeros)."""
    return isinstance(value, str) and ACCOUNT_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Accounts:
    """An ``accounts:`` list: as written (for messages) and with its groups resolved."""

    written: tuple[str, ...]
    globs: tuple[str, ...]

    def matches(self, account: str | None) -> bool:
        """Whether an image of ``account`` is one of these; never for an unknown account."""
        return account is not None and is_account_id(account) and any(
            fnmatch.fnmatchcase(account, glob) for glob in self.globs)

    def describe(self) -> str:
        return ",".join(self.written)


def applies(accounts: Accounts | None, account: str | None) -> bool:
    """An entry without ``accounts:`` applies to every account, known or not."""
    return accounts is None or accounts.matches(account)


def resolve(written: Any, groups: Mapping[str, Any]) -> Accounts | None:
    """The ``accounts:`` list of a validated entry, groups replaced by their globs."""
    if not written:
        return None
    globs: list[str] = []
    for entry in written:
        if entry.startswith(GROUP_PREFIX):
            globs.extend(groups[entry.removeprefix(GROUP_PREFIX)])
        else:
            globs.append(entry)
    return Accounts(written=tuple(written), globs=tuple(dict.fromkeys(globs)))


def problems(data: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(path, message) of each ``group:<name>`` the schema cannot check: one not defined in
    ``account_groups``. (The schema checks the globs and the group names.)"""
    if not isinstance(data, dict):
        return
    groups = data.get("account_groups")
    groups = groups if isinstance(groups, dict) else {}
    for path, written in _account_lists(data):
        for index, entry in enumerate(written):
            if not isinstance(entry, str) or not entry.startswith(GROUP_PREFIX):
                continue  # the schema reports what is not a string
            name = entry.removeprefix(GROUP_PREFIX)
            if GROUP_NAME.fullmatch(name) and name not in groups:
                yield (*path, index), (
                    f"group {name!r} is not defined in account_groups"
                    + (f" (defined: {', '.join(sorted(map(str, groups)))})" if groups else ""))


def _account_lists(data: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], list[Any]]]:
    """Every ``accounts:`` list of the document, with its path."""
    notifications = data.get("notifications")
    sections = [("repositories", data.get("repositories")),
                ("exceptions", data.get("exceptions"))]
    if isinstance(notifications, dict):
        sections.append((("notifications", "routes"), notifications.get("routes")))
    for key, entries in sections:
        prefix = key if isinstance(key, tuple) else (key,)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            written = entry.get("accounts") if isinstance(entry, dict) else None
            if isinstance(written, list):
                yield (*prefix, index, "accounts"), written
