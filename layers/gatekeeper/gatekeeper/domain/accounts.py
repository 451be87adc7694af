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

Pure: no AWS packages. The grammar here is also the JSON Schema's (``policy.schema.json``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

GROUP_PREFIX = "group:"
ACCOUNT_ID = re.compile(r"[0-9]{12}")
# A glob of account ids: twelve digits or '?', or any digits, '?' and at least one '*'.
ACCOUNT_GLOB = re.compile(r"[0-9?]{12}|[0-9?*]*\*[0-9?*]*")
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
        return is_account_id(account) and any(
            fnmatch.fnmatchcase(account, glob) for glob in self.globs)  # type: ignore[arg-type]

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


def glob_problem(glob: str) -> str | None:
    """What is wrong with an account-id glob the schema's pattern let through, if anything:
    more than twelve digits and '?' can never match an account id."""
    if len(glob.replace("*", "")) > 12:
        return (f"{glob!r} can never match a twelve-digit account id: it has more than twelve "
                "digits and '?'")
    return None


def problems(data: Any) -> Iterator[tuple[tuple[Any, ...], str]]:
    """(path, message) of each account reference the schema cannot check: a group used but
    not defined in ``account_groups``, and a glob that can never match an account id."""
    if not isinstance(data, dict):
        return
    groups = data.get("account_groups")
    groups = groups if isinstance(groups, dict) else {}
    for name, globs in groups.items():
        if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
            yield ("account_groups", name), (
                f"group name {name!r}: expected letters, digits, '_', '.', '-' (at most 64)")
        for index, glob in enumerate(globs if isinstance(globs, list) else []):
            if isinstance(glob, str) and (message := glob_problem(glob)):
                yield ("account_groups", name, index), message
    for path, written in _account_lists(data):
        for index, entry in enumerate(written):
            if not isinstance(entry, str):
                continue  # the schema reports it
            if entry.startswith(GROUP_PREFIX):
                name = entry.removeprefix(GROUP_PREFIX)
                if GROUP_NAME.fullmatch(name) and name not in groups:
                    yield (*path, index), (
                        f"group {name!r} is not defined in account_groups"
                        + (f" (defined: {', '.join(sorted(groups))})" if groups else ""))
            elif message := glob_problem(entry):
                yield (*path, index), message


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
