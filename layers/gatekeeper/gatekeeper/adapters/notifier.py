"""Amazon SNS: one message per notification, rendered per protocol, with filterable attributes."""

from __future__ import annotations

import json
from typing import Any

from gatekeeper.render.notification import Notification


def message_attributes(notification: Notification) -> dict[str, dict[str, str]]:
    """Lists become String.Array attributes (a filter policy matches any of their values)."""
    attributes = {}
    for name, value in notification.attributes.items():
        if isinstance(value, list):
            attributes[name] = {"DataType": "String.Array", "StringValue": json.dumps(value)}
        elif value:
            attributes[name] = {"DataType": "String", "StringValue": value}
    return attributes


class SnsNotifier:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._sns = client
        self._topic = topic_arn

    def publish(self, notification: Notification) -> str:
        response = self._sns.publish(
            TopicArn=self._topic,
            Subject=notification.subject,
            Message=notification.sns_message(),
            MessageStructure="json",
            MessageAttributes=message_attributes(notification),
        )
        return str(response["MessageId"])


class OperatorAlerts:
    """Plain-text alerts for the operators' topic (the one the alarms use)."""

    def __init__(self, client: Any, topic_arn: str) -> None:
        self._sns = client
        self._topic = topic_arn

    def alert(self, subject: str, message: str) -> str:
        response = self._sns.publish(TopicArn=self._topic, Subject=subject[:100],
                                     Message=message)
        return str(response["MessageId"])
