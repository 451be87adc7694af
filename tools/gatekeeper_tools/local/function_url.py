"""A Lambda function URL, locally: a real HTTP server on 127.0.0.1 that turns each request
into the function URL event (payload format 2.0) and the handler's answer back into HTTP.

Shared by the tests and local runs (never imported in Lambda):

    with FunctionUrlServer(handler) as api:     # http://127.0.0.1:<port>
        ...GET api.url + "/v1/verdicts/team-a/web:v1", SigV4-signed...
        api.events[0]                           # the event the handler received

As a function URL with ``AuthType: AWS_IAM`` does, it refuses with 403 a request that is not
SigV4-signed (no ``Authorization: AWS4-HMAC-SHA256 Credential=...`` header) and names the
signer's access key in ``requestContext.authorizer.iam``; unlike AWS, it does not check the
signature itself. A handler that raises answers 502, as a function URL does.

``python -m gatekeeper_tools.local.function_url --port 8080`` serves the verdict API this way
(``gatekeeper.handling.on_verdict_api``) with the environment's ``GATEKEEPER_TABLE`` and AWS
endpoint, e.g. beside ``make sandbox``.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from gatekeeper_tools.local.stack import LambdaContext

ACCOUNT = "123456789012"
REGION = "us-east-1"
URL_ID = "abcdefghijklmnopqrstuvwxyz012345"  # a function URL's id: 32 lowercase letters/digits
_CREDENTIAL = re.compile(r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/\s,]+)/")

Handler = Callable[[dict[str, Any], Any], Any]


def function_url_event(method: str, target: str, headers: dict[str, str], body: bytes,
                       *, account: str = ACCOUNT, region: str = REGION,
                       source_ip: str = "127.0.0.1",
                       access_key: str | None = None) -> dict[str, Any]:
    """The event Lambda gives a function behind a function URL for this request.

    ``target`` is the request line's path and query, as sent (still %-encoded: rawPath and
    requestContext.http.path carry it so); ``headers`` names are lower-cased."""
    parts = urlsplit(target)
    now = datetime.now(UTC)
    domain = f"{URL_ID}.lambda-url.{region}.on.aws"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": headers,
        "requestContext": {
            "accountId": account,
            "apiId": URL_ID,
            "domainName": domain,
            "domainPrefix": URL_ID,
            "http": {"method": method, "path": parts.path or "/", "protocol": "HTTP/1.1",
                     "sourceIp": source_ip, "userAgent": headers.get("user-agent", "")},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if access_key is not None:
        event["requestContext"]["authorizer"] = {"iam": {
            "accessKey": access_key, "accountId": account, "callerId": access_key,
            "cognitoIdentity": None, "principalOrgId": None,
            "userArn": f"arn:aws:iam::{account}:user/local", "userId": access_key}}
    if body:
        event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = True
    return event


class FunctionUrlServer:
    """A function URL on 127.0.0.1 (a port of its own) in a background thread."""

    def __init__(self, handler: Handler, *, port: int = 0, require_signature: bool = True,
                 region: str = REGION) -> None:
        self.handler = handler
        self.require_signature = require_signature
        self.region = region
        self.events: list[dict[str, Any]] = []
        server = self

        class Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out_headers, payload = server.invoke(self.command, self.path,
                                                             headers, body)
                self.send_response(status)
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Request)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def invoke(self, method: str, target: str, headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request through the handler, as a function URL would: (status, headers, body)."""
        found = _CREDENTIAL.match(headers.get("authorization", ""))
        if self.require_signature and found is None:
            return 403, {"content-type": "application/json"}, b'{"Message":"Forbidden"}'
        event = function_url_event(method, target, headers, body, region=self.region,
                                   access_key=found["key"] if found else None)
        self.events.append(event)
        context = LambdaContext("verdict-api-local", 256,
                                f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:verdict-api",
                                event["requestContext"]["requestId"], timeout_seconds=10)
        try:
            result = self.handler(event, context)
        except Exception:
            return 502, {"content-type": "application/json"}, \
                b'{"Message":"Internal Server Error"}'
        return response_of(result)

    def __enter__(self) -> FunctionUrlServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def response_of(result: Any) -> tuple[int, dict[str, str], bytes]:
    """A handler's return value as the HTTP response a function URL makes of it: a dict with
    ``statusCode`` is taken as the response; anything else is a 200 JSON body."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    body = result.get("body") or ""
    payload = (base64.b64decode(body) if result.get("isBase64Encoded")
               else str(body).encode("utf-8"))
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    return int(result["statusCode"]), headers, payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args(argv)
    from gatekeeper import handling

    with FunctionUrlServer(lambda event, _context: handling.on_verdict_api(event),
                           port=args.port) as api:
        print(f"verdict API on {api.url} (Ctrl-C stops it)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
