"""The moto-backed world of the integration and adversarial tests (an account with the
gatekeeper's table, topic, policy bucket and a subscriber).

The pure helpers (recorded events, sample findings, markers) live in tests.domain_support,
which the unit tests import without boto3; they are re-exported here so AWS tests keep one
import line."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import boto3

from gatekeeper.config import Config
from gatekeeper.domain.markers import MarkerScheme
from gatekeeper.runtime import build
from gatekeeper.service import Gatekeeper
from gatekeeper_tools.local import kms as moto_kms
from gatekeeper_tools.local.ecr import push_image, set_scan_result
from tests.domain_support import (
    ACCOUNT,
    EVENTS,
    FINDINGS,
    REGION,
    ROOT,
    approved,
    load_event,
    load_findings,
    push_event,
    quarantined,
    scan_event,
)

__all__ = [
    "ACCOUNT", "EVENTS", "FINDINGS", "REGION", "ROOT", "World", "approved", "as_delivered",
    "load_event", "load_findings", "make_world", "push_event", "quarantined", "scan_event",
]


@dataclass
class World:
    """An account in moto with the gatekeeper's table, topic, policy bucket and a subscriber."""

    config: Config
    queue_url: str
    session: boto3.session.Session
    seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ecr(self) -> Any:
        return self.session.client("ecr")

    def gatekeeper(self) -> Gatekeeper:
        return build(self.config, self.session)

    def repository(self, name: str, mutability: str = "MUTABLE") -> str:
        self.ecr.create_repository(repositoryName=name, imageTagMutability=mutability)
        return name

    def push(self, repository: str, tag: str, seed: str | None = None) -> str:
        return push_image(self.ecr, repository, tag, seed)

    def scanned(self, repository: str, digest: str, findings: str | dict[str, Any]) -> None:
        body = load_findings(findings) if isinstance(findings, str) else findings
        set_scan_result(repository, digest, copy.deepcopy(body), ACCOUNT, REGION)

    def tags(self, repository: str, digest: str) -> list[str]:
        details = self.ecr.describe_images(repositoryName=repository,
                                           imageIds=[{"imageDigest": digest}])["imageDetails"]
        return sorted(details[0].get("imageTags", []))

    def image_exists(self, repository: str, digest: str) -> bool:
        found = self.ecr.batch_get_image(repositoryName=repository,
                                         imageIds=[{"imageDigest": digest}])
        return bool(found["images"])

    def environment(self) -> dict[str, str]:
        """The variables the template gives the functions, pointing at this world."""
        return {
            "GATEKEEPER_TABLE": self.config.table_name,
            "GATEKEEPER_TOPIC_ARN": self.config.topic_arn,
            "GATEKEEPER_POLICY_BUCKET": self.config.policy_bucket,
            "GATEKEEPER_POLICY_KEY": self.config.policy_key,
            **({"GATEKEEPER_SIGNING_KEY_ARN": self.config.signing_key_arn}
               if self.config.signing_key_arn else {}),
        }

    def publish_policy(self, text: str) -> str:
        s3 = self.session.client("s3")
        put = s3.put_object(Bucket=self.config.policy_bucket, Key=self.config.policy_key,
                            Body=text.encode())
        return str(put["VersionId"])

    def notifications(self) -> list[dict[str, Any]]:
        """Every SNS message delivered to the subscriber queue so far (cumulative)."""
        sqs = self.session.client("sqs")
        while True:
            got = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            batch = got.get("Messages", [])
            if not batch:
                return self.seen
            for message in batch:
                self.seen.append(as_delivered(json.loads(message["Body"])))
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


def as_delivered(envelope: dict[str, Any]) -> dict[str, Any]:
    """An SQS subscriber's SNS envelope, with the notification document it carries parsed into
    ``Document`` and ``Message`` replaced by the readable text the e-mail rendering shows."""
    document = json.loads(envelope["Message"])
    return {**envelope, "Document": document, "Message": document["text"]}


def signing_key(session: boto3.session.Session) -> str:
    """A new asymmetric key as the stack's (ECC_NIST_P256, SIGN_VERIFY): its ARN."""
    moto_kms.install()
    return str(session.client("kms").create_key(
        KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY",
        Description="verdict signing")["KeyMetadata"]["Arn"])


# The verdict table's DueIndex, as template.yaml declares it.
DUE_INDEX_ATTRIBUTES = [{"AttributeName": "due_shard", "AttributeType": "N"},
                        {"AttributeName": "due_at", "AttributeType": "S"}]
DUE_INDEX = {
    "IndexName": "DueIndex",
    "KeySchema": [{"AttributeName": "due_shard", "KeyType": "HASH"},
                  {"AttributeName": "due_at", "KeyType": "RANGE"}],
    "Projection": {"ProjectionType": "INCLUDE",
                   "NonKeyAttributes": ["repository", "digest", "state"]},
}


def make_world(markers: MarkerScheme | None = None, signed: bool = True) -> World:
    """Call inside an active ``moto.mock_aws()``. ``signed``: the stack has a signing key."""
    session = boto3.session.Session(region_name=REGION)
    ddb = session.client("dynamodb")
    ddb.create_table(
        TableName="verdicts",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"},
                              *DUE_INDEX_ATTRIBUTES],
        GlobalSecondaryIndexes=[DUE_INDEX],
        BillingMode="PAY_PER_REQUEST",
    )
    topic = session.client("sns").create_topic(Name="verdicts")["TopicArn"]
    s3 = session.client("s3")
    s3.create_bucket(Bucket="gatekeeper-policy")
    s3.put_bucket_versioning(Bucket="gatekeeper-policy",
                             VersioningConfiguration={"Status": "Enabled"})
    sqs = session.client("sqs")
    queue_url = sqs.create_queue(QueueName="subscriber")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url,
                                         AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    session.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    config = Config(table_name="verdicts", topic_arn=topic, policy_bucket="gatekeeper-policy",
                    policy_key="policy.yaml", markers=markers or MarkerScheme(),
                    policy_cache_seconds=0,
                    signing_key_arn=signing_key(session) if signed else None)
    return World(config=config, queue_url=queue_url, session=session)
