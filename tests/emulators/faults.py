"""A fault-injecting proxy in front of moto, for deployctl's AWS tests.

moto answers every call correctly and at once; AWS does not. This proxy
forwards AWS API calls to moto (or to another upstream set per account)
and, per moto account, answers some of them the way AWS fails instead:
throttling (HTTP 429 / the protocol's throttling error), server errors
(HTTP 500 ServiceException), connections closed without an answer (before
or after the call reached moto) and added latency. It also records every
call it forwarded, per account, so tests can compare the calls deployctl
really makes with the IAM policy it generates.

Python 3.11 standard library only. Started by tests/moto.sh like every
emulator: `python tests/emulators/faults.py --port N` (upstream from
`--upstream` or `$DEPLOYCTL_TEST_MOTO_URL`), exported to tests as
`$DEPLOYCTL_TEST_FAULTS_URL`. Control endpoints (JSON) under /_emulator/:

  GET    /_emulator/health
  POST   /_emulator/faults    {"account": "...", "rate": 0.2,
                               "kinds": ["throttle", "5xx", "reset", "drop", "latency"],
                               "seed": 7, "only": ["UpdateAlias"],
                               "latencyMs": [20, 200], "retryAfter": null}
  DELETE /_emulator/faults?account=...      (no faults for the account)
  POST   /_emulator/upstream  {"account": "...", "url": "http://..."}
  GET    /_emulator/calls?account=...       {"calls": [{service, operation, method,
                                             path, status, fault}, ...]}
  DELETE /_emulator/calls?account=...

The account of a call is its `x-moto-account-id` header; without one, a
12-digit access key ID (`AWS_ACCESS_KEY_ID=123456789012`, seen in the
SigV4 `Authorization` header) names it, and the proxy adds the header so
moto keeps that account's resources apart. That is how a test isolates a
`deployctl` process, which cannot add headers, in its own account.
"""

import argparse
import http.client
import json
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_ACCOUNT = "123456789012"
KINDS = ("throttle", "5xx", "reset", "drop", "latency")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}

# Lambda's REST paths → operation names (method, regex over the path).
LAMBDA_ROUTES = [
    ("GET", r"^/2015-03-31/functions/?$", "ListFunctions"),
    ("POST", r"^/2015-03-31/functions/?$", "CreateFunction"),
    ("GET", r"^/2015-03-31/functions/[^/]+/?$", "GetFunction"),
    ("DELETE", r"^/2015-03-31/functions/[^/]+/?$", "DeleteFunction"),
    ("GET", r"^/2015-03-31/functions/[^/]+/configuration/?$", "GetFunctionConfiguration"),
    ("PUT", r"^/2015-03-31/functions/[^/]+/configuration/?$", "UpdateFunctionConfiguration"),
    ("PUT", r"^/2015-03-31/functions/[^/]+/code/?$", "UpdateFunctionCode"),
    ("GET", r"^/2015-03-31/functions/[^/]+/versions/?$", "ListVersionsByFunction"),
    ("POST", r"^/2015-03-31/functions/[^/]+/versions/?$", "PublishVersion"),
    ("GET", r"^/2015-03-31/functions/[^/]+/aliases/?$", "ListAliases"),
    ("POST", r"^/2015-03-31/functions/[^/]+/aliases/?$", "CreateAlias"),
    ("GET", r"^/2015-03-31/functions/[^/]+/aliases/[^/]+/?$", "GetAlias"),
    ("PUT", r"^/2015-03-31/functions/[^/]+/aliases/[^/]+/?$", "UpdateAlias"),
    ("DELETE", r"^/2015-03-31/functions/[^/]+/aliases/[^/]+/?$", "DeleteAlias"),
    ("POST", r"^/2015-03-31/functions/[^/]+/invocations/?$", "Invoke"),
]


class Faults:
    """One account's fault settings and its seeded random draws."""

    def __init__(self, spec):
        self.rate = float(spec.get("rate", 0.0))
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate {self.rate} is outside [0, 1]")
        kinds = spec.get("kinds") or ["throttle", "5xx", "reset", "latency"]
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {list(KINDS)}")
        self.kinds = list(kinds)
        self.only = set(spec.get("only") or [])
        latency = spec.get("latencyMs") or [20, 200]
        self.latency = (float(latency[0]) / 1000.0, float(latency[1]) / 1000.0)
        self.retry_after = spec.get("retryAfter")
        self.random = random.Random(spec.get("seed", 0))

    def draw(self, operation):
        """The fault for this call, or None."""
        if self.only and operation not in self.only:
            return None
        if self.random.random() >= self.rate:
            return None
        return self.random.choice(self.kinds)

    def delay(self):
        low, high = self.latency
        return self.random.uniform(low, high)


class State:
    def __init__(self, upstream):
        self.lock = threading.Lock()
        self.upstream = upstream
        self.upstreams = {}
        self.faults = {}
        self.calls = {}

    def fault_for(self, account, operation):
        with self.lock:
            faults = self.faults.get(account)
            if faults is None:
                return None, 0.0
            kind = faults.draw(operation)
            delay = faults.delay() if kind == "latency" else 0.0
            return kind, delay

    def retry_after(self, account):
        with self.lock:
            faults = self.faults.get(account)
            return None if faults is None else faults.retry_after

    def record(self, account, call):
        with self.lock:
            self.calls.setdefault(account, []).append(call)

    def upstream_for(self, account):
        with self.lock:
            return self.upstreams.get(account, self.upstream)


def credential_scope(headers):
    """(access key ID, service) from a SigV4 Authorization header."""
    auth = headers.get("Authorization", "")
    match = re.search(r"Credential=([^/,\s]+)/\d{8}/[^/]+/([^/]+)/aws4_request", auth)
    if not match:
        return None, None
    return match.group(1), match.group(2)


def operation_of(service, method, path, query, headers, body):
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    params = urllib.parse.parse_qs(query)
    if "Action" in params:
        return params["Action"][0]
    content_type = headers.get("Content-Type", "")
    if "x-www-form-urlencoded" in content_type and body:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:
            return form["Action"][0]
    if service == "lambda":
        for route_method, pattern, name in LAMBDA_ROUTES:
            if method == route_method and re.match(pattern, path):
                return name
    if service == "s3":
        return s3_operation(method, path, params)
    return f"{method} {path}"


def s3_operation(method, path, params):
    parts = [p for p in path.split("/") if p]
    if len(parts) <= 1:
        return {
            "GET": "ListObjectsV2" if parts else "ListBuckets",
            "PUT": "CreateBucket",
            "HEAD": "HeadBucket",
            "DELETE": "DeleteBucket",
        }.get(method, f"{method} bucket")
    if "versionId" in params and method == "GET":
        return "GetObjectVersion"
    return {
        "GET": "GetObject",
        "PUT": "PutObject",
        "HEAD": "HeadObject",
        "DELETE": "DeleteObject",
    }.get(method, f"{method} object")


def protocol_of(service, headers):
    if service == "lambda":
        return "rest-json"
    if service in ("s3", "cloudfront"):
        return "rest-xml"
    if headers.get("X-Amz-Target"):
        return "json"
    return "query"


def error_response(protocol, kind, retry_after):
    """(status, headers, body) of the AWS error for a throttle or 5xx."""
    request_id = str(uuid.uuid4())
    throttle = kind == "throttle"
    headers = {"x-amzn-RequestId": request_id, "x-amz-request-id": request_id}
    if throttle and retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if protocol == "rest-json":
        # Lambda: the error type travels in x-amzn-ErrorType.
        code = "TooManyRequestsException" if throttle else "ServiceException"
        status = 429 if throttle else 500
        headers["x-amzn-ErrorType"] = code
        headers["Content-Type"] = "application/json"
        payload = (
            {"Type": "User", "message": "Rate exceeded", "Reason": "CallerRateLimitExceeded"}
            if throttle
            else {"Type": "Service", "message": "An internal error occurred (injected)"}
        )
        return status, headers, json.dumps(payload).encode()
    if protocol == "json":
        code = "ThrottlingException" if throttle else "InternalFailure"
        headers["Content-Type"] = "application/x-amz-json-1.0"
        body = json.dumps({"__type": code, "message": "Rate exceeded" if throttle else "injected"})
        return (400 if throttle else 500), headers, body.encode()
    if protocol == "rest-xml":
        code = "SlowDown" if throttle else "InternalError"
        headers["Content-Type"] = "application/xml"
        body = (
            f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
            f"<Message>injected</Message><RequestId>{request_id}</RequestId></Error>"
        )
        return 503 if throttle else 500, headers, body.encode()
    code = "Throttling" if throttle else "InternalFailure"
    headers["Content-Type"] = "text/xml"
    body = (
        f"<ErrorResponse><Error><Type>{'Sender' if throttle else 'Receiver'}</Type>"
        f"<Code>{code}</Code><Message>{'Rate exceeded' if throttle else 'injected'}</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return (400 if throttle else 500), headers, body.encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the body waits
    # for the client's delayed ACK (40 ms on Linux) on every keep-alive
    # request. Real API servers (Go, AWS front ends) set TCP_NODELAY.
    disable_nagle_algorithm = True
    server_version = "deployctl-faults"
    state: State = None  # set in main

    def log_message(self, fmt, *args):
        if os.environ.get("FAULTS_VERBOSE"):
            sys.stderr.write("faults: " + fmt % args + "\n")

    # -- plumbing -----------------------------------------------------------

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, headers, body):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json_reply(self, status, payload):
        self.reply(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())

    def reset(self):
        """Closes the connection with a TCP reset, no response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        except OSError:
            pass

    # -- control ------------------------------------------------------------

    def control(self, body):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        account = query.get("account", [None])[0]
        route = (self.command, url.path.rstrip("/"))
        state = self.state
        try:
            if route == ("GET", "/_emulator/health"):
                return self.json_reply(200, {"ok": True, "upstream": state.upstream})
            if route == ("POST", "/_emulator/faults"):
                spec = json.loads(body or b"{}")
                account = spec.get("account")
                if not account:
                    return self.json_reply(400, {"error": "`account` is required"})
                faults = Faults(spec)
                with state.lock:
                    state.faults[account] = faults
                return self.json_reply(200, {"ok": True})
            if route == ("DELETE", "/_emulator/faults"):
                with state.lock:
                    state.faults.pop(account, None)
                return self.json_reply(200, {"ok": True})
            if route == ("POST", "/_emulator/upstream"):
                spec = json.loads(body or b"{}")
                if not spec.get("account") or not spec.get("url"):
                    return self.json_reply(400, {"error": "`account` and `url` are required"})
                with state.lock:
                    state.upstreams[spec["account"]] = spec["url"]
                return self.json_reply(200, {"ok": True})
            if route == ("GET", "/_emulator/calls"):
                with state.lock:
                    calls = list(state.calls.get(account or DEFAULT_ACCOUNT, []))
                return self.json_reply(200, {"calls": calls})
            if route == ("DELETE", "/_emulator/calls"):
                with state.lock:
                    state.calls.pop(account or DEFAULT_ACCOUNT, None)
                return self.json_reply(200, {"ok": True})
        except (ValueError, TypeError, KeyError, IndexError) as error:
            return self.json_reply(400, {"error": str(error)})
        return self.json_reply(404, {"error": f"no control endpoint {self.command} {url.path}"})

    # -- proxying -----------------------------------------------------------

    def handle_any(self):
        body = self.read_body()
        if self.path.startswith("/_emulator/"):
            return self.control(body)
        url = urllib.parse.urlsplit(self.path)
        access_key, service = credential_scope(self.headers)
        account = self.headers.get("x-moto-account-id")
        add_account = None
        if not account and access_key and re.fullmatch(r"\d{12}", access_key):
            account = add_account = access_key
        account = account or DEFAULT_ACCOUNT
        operation = operation_of(service, self.command, url.path, url.query, self.headers, body)
        kind, delay = self.state.fault_for(account, operation)
        call = {
            "service": service,
            "operation": operation,
            "method": self.command,
            "path": url.path,
            "status": None,
            "fault": kind,
        }
        if kind in ("throttle", "5xx"):
            status, headers, payload = error_response(
                protocol_of(service, self.headers), kind, self.state.retry_after(account)
            )
            call["status"] = status
            self.state.record(account, call)
            return self.reply(status, headers, payload)
        if kind == "drop":
            self.state.record(account, call)
            return self.reset()
        if kind == "latency":
            time.sleep(delay)
        try:
            status, headers, payload = self.forward(account, add_account, body)
        except OSError as error:
            call["status"] = 502
            self.state.record(account, call)
            return self.reply(502, {"Content-Type": "text/plain"}, f"upstream: {error}".encode())
        call["status"] = status
        self.state.record(account, call)
        if kind == "reset":
            # The call reached moto; its answer is lost.
            return self.reset()
        return self.reply(status, headers, payload)

    def forward(self, account, add_account, body):
        upstream = urllib.parse.urlsplit(self.state.upstream_for(account))
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if add_account:
                headers["x-moto-account-id"] = add_account
            headers["Content-Length"] = str(len(body))
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            out = {
                k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP
            }
            return response.status, out, payload
        finally:
            connection.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default=os.environ.get("DEPLOYCTL_TEST_MOTO_URL"))
    args = parser.parse_args()
    if not args.upstream:
        parser.error("no upstream: pass --upstream or set DEPLOYCTL_TEST_MOTO_URL")
    Handler.state = State(args.upstream.rstrip("/"))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"faults: proxying 127.0.0.1:{args.port} → {args.upstream}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
