"""Amazon SNS: publish a verdict notification with filterable message attributes."""

from __future__ import annotations

from typing import Any

from gatekeeper.domain.notification import Notification


class SnsNotifier:
    def __init__(self, client: Any, topic_arn: str) -> None:
        self._sns = client
        self._topic = topic_arn

    def publish(self, notification: Notification) -> str:
        response = self._sns.publish(
            TopicArn=self._topic,
            Subject=notification.subject,
            Message=notification.message,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in notification.attributes.items()
                if value
            },
        )
        return str(response["MessageId"])
