"""The Slack webhook URLs, kept in Secrets Manager: read through Powertools' parameters utility
(cached five minutes), checked, never logged (log lines name the secret's ARN and the webhook's
host only)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from gatekeeper.config import ConfigError

SECRET_MAX_AGE = 300  # seconds a secret value is reused before it is read again
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})  # where http:// is accepted
# Secrets Manager answers in milliseconds: fail fast rather than spend the invocation on it.
SECRETS_CONFIG = BotoConfig(retries={"mode": "standard", "max_attempts": 3},
                            connect_timeout=3, read_timeout=5)

# botocore logs every response body at DEBUG: GetSecretValue's holds the webhook URL. Keep
# that logger above DEBUG whatever level the function runs at.
logging.getLogger("botocore.parsers").setLevel(logging.INFO)


class SlackConfigError(ConfigError):
    """The webhook secret is missing, unreadable or holds no usable URL (a deployment error;
    the message names the secret's ARN, never its value)."""


_HELP = ('store the incoming webhook URL (https://hooks.slack.com/services/...) as the secret '
         'string, or JSON {"webhook_url": "https://..."}')


def check_webhook_url(url: Any, secret: str, what: str = "the webhook URL") -> str:
    """``url`` if it is a usable webhook URL: https, or http to this machine (tests, demo)."""
    problem = None
    if not isinstance(url, str) or not url.strip():
        problem = "is empty"
    elif any(c.isspace() or not c.isprintable() for c in url.strip()):
        problem = "contains spaces or control characters"
    else:
        try:
            parts = urlsplit(url.strip())
            host, _ = parts.hostname, parts.port
        except ValueError:
            problem = "is not a URL"
        else:
            if not host:
                problem = "is not an absolute URL"
            elif parts.scheme == "http" and host not in LOCAL_HOSTS:
                problem = "uses http: only https is accepted (http only to 127.0.0.1/localhost)"
            elif parts.scheme not in ("https", "http"):
                problem = "is not an https URL"
    if problem:
        raise SlackConfigError(f"Slack webhook secret {secret}: {what} {problem}; {_HELP}")
    return str(url).strip()


@dataclass(frozen=True)
class Webhooks:
    """The webhook URLs of the secret: the default one, and optionally one per channel."""

    default: str
    channels: Mapping[str, str] = field(default_factory=dict)

    def for_channel(self, channel: Any) -> str:
        return self.channels.get(channel, self.default) if isinstance(channel, str) else \
            self.default


def webhooks_from_secret(value: Any, secret: str) -> Webhooks:
    """The secret's value: a URL, or JSON ``{"webhook_url": URL, "channels": {name: URL}}``
    (``channels`` optional: the document's ``channel`` picks its webhook, else the default)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise SlackConfigError(f"Slack webhook secret {secret}: its binary value is not "
                                   f"UTF-8 text; {_HELP}") from None
    if not isinstance(value, str):
        raise SlackConfigError(f"Slack webhook secret {secret}: no value; {_HELP}")
    text = value.strip()
    if not text.startswith("{"):
        return Webhooks(check_webhook_url(text, secret, "the secret's value"))
    try:
        data = json.loads(text)
    except ValueError:
        raise SlackConfigError(f"Slack webhook secret {secret}: its value starts like JSON "
                               f"but is not valid JSON; {_HELP}") from None
    if not isinstance(data, dict) or "webhook_url" not in data:
        raise SlackConfigError(f"Slack webhook secret {secret}: its JSON value has no "
                               f"\"webhook_url\"; {_HELP}")
    channels = data.get("channels") or {}
    if not isinstance(channels, dict):
        raise SlackConfigError(f"Slack webhook secret {secret}: \"channels\" must map channel "
                               "names to webhook URLs")
    return Webhooks(
        check_webhook_url(data["webhook_url"], secret, '"webhook_url"'),
        {str(name): check_webhook_url(url, secret, f"the URL of channel {str(name)[:64]!r}")
         for name, url in channels.items()})


def _secret_problem(err: GetParameterError, secret: str) -> str:
    cause = err.__context__ or err.__cause__
    code = (cause.response.get("Error", {}).get("Code", "?") if isinstance(cause, ClientError)
            else type(cause or err).__name__)
    why = {
        "ResourceNotFoundException": "does not exist (ResourceNotFoundException): create it "
                                     "and deploy with SlackWebhookSecretArn set to its full ARN",
        "AccessDeniedException": "may not be read by this function (AccessDeniedException): "
                                 "SlackWebhookSecretArn must be the secret's full ARN; a secret "
                                 "encrypted with a customer managed KMS key also needs "
                                 "kms:Decrypt on that key",
        "DecryptionFailure": "cannot be decrypted (DecryptionFailure): check its KMS key",
        "InvalidRequestException": "cannot be read now (InvalidRequestException): is it "
                                   "scheduled for deletion?",
        "ResourceNotFound": "does not exist",
    }.get(code, f"could not be read ({code})")
    return f"Slack webhook secret {secret} {why}"


class SecretWebhooks:
    """The webhook URLs, read from Secrets Manager through Powertools' parameters utility
    (``get_secret`` with its cache, on a client with short timeouts)."""

    def __init__(self, secret_arn: str, max_age: int = SECRET_MAX_AGE,
                 client: Any = None) -> None:
        self.secret_arn = secret_arn
        self.max_age = max_age
        self._stale = False
        self._client = client  # a Secrets Manager client of the caller's (the operator CLI)
        self._provider: parameters.SecretsProvider | None = None

    def get(self) -> Webhooks:
        if self._provider is None:  # created on first use, like Powertools' default one
            self._provider = (parameters.SecretsProvider(boto3_client=self._client)
                              if self._client is not None
                              else parameters.SecretsProvider(boto_config=SECRETS_CONFIG))
        try:
            value = self._provider.get(self.secret_arn, max_age=self.max_age,
                                       force_fetch=self._stale)
        except GetParameterError as err:
            raise SlackConfigError(_secret_problem(err, self.secret_arn)) from None
        self._stale = False
        try:
            return webhooks_from_secret(value, self.secret_arn)
        except SlackConfigError:
            self._stale = True  # read it again next time: it may have been fixed by then
            raise

    def invalidate(self) -> None:
        """The webhook was refused as wrong or revoked: read the secret again next time."""
        self._stale = True
