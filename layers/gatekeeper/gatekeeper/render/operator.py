"""What the operator topic hears from the judging functions: a member account the hub cannot
act in. One ``gatekeeper.notification/v1`` message of kind ``spoke_unavailable`` per account
and Region and quiet period (not one per image); attributes ``kind``, ``alert``, ``account``
and ``region`` for subscription filters."""

from __future__ import annotations

from gatekeeper.domain.scope import Scope
from gatekeeper.render.notification import Notification, _clip, _envelope, _subject

KIND = "spoke_unavailable"


def spoke_unavailable_notification(scope: Scope, reason: str, *, time: str,
                                   retry_minutes: int, quiet_hours: int) -> Notification:
    text = "\n".join([
        f"The gatekeeper hub cannot act in account {scope.account}, Region {scope.region}.",
        "",
        f"Reason: {_clip(reason, 1_000)}",
        "",
        "Its images are not approved while this lasts: nothing is read or marked there, and",
        f"each image's event is put off and retried about every {retry_minutes} minutes.",
        "Check that the spoke stack (spoke.yaml) is deployed in that account and Region and",
        "that its role trusts this hub. Images are judged as soon as the role can be assumed.",
        f"(This alert is sent at most once every {quiet_hours} hours per account and Region.)",
    ])
    document = {**_envelope(KIND, time=time, trigger="spoke", channel=None),
                "account": scope.account, "region": scope.region,
                "reason": _clip(reason, 1_000)}
    return Notification(
        subject=_subject(f"[GATEKEEPER] Spoke unavailable: {scope.account} {scope.region}"),
        message=text,
        attributes={"kind": KIND, "alert": KIND, "account": scope.account,
                    "region": scope.region},
        document=document)
