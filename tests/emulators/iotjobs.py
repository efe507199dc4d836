#!/usr/bin/env python3
"""AWS IoT Jobs emulator for deployctl's tests (Python 3.11, stdlib only).

moto 5.2.5 answers 500 to the IoT Jobs device data plane (iot-jobs-data) and
never expands a thing-group target into per-thing job executions, so a job
never moves. This server speaks both REST-JSON protocols on one port:

- the control plane (service "iot", API 2015-05-28): things, thing groups
  (dynamic ones too, from a fleet-index query subset: `parse_query`),
  CreateJob/DescribeJob/GetJobDocument/ListJobs/CancelJob/DeleteJob and the
  job-execution calls, and
- the data plane (service "iot-jobs-data", API 2017-09-29) a device calls:
  GetPendingJobExecutions, StartNextPendingJobExecution,
  DescribeJobExecution and UpdateJobExecution,

with paths, members and output shapes taken from botocore's service models.
Two routes exist in both planes (GET /things/{thingName}/jobs and
GET /things/{thingName}/jobs/{jobId}); they are told apart by the SigV4
credential scope's service name (`.../iot-jobs-data/aws4_request` is the
data plane, anything else the control plane).

Jobs move the way the AWS IoT Jobs documentation describes: thing groups
expand into one QUEUED execution per thing (CONTINUOUS jobs also give things
added later one), executions are created at most `maximumPerMinute` per
minute since the job's creation, IN_PROGRESS executions time out
(inProgressTimeoutInMinutes, stepTimeoutInMinutes), abort criteria cancel a
job, and a SNAPSHOT job whose executions are all terminal is COMPLETED.
Everything is computed lazily on each request from a per-account clock
(time.time() plus the offset POST /_emulator/advance adds).

Accounts are isolated by the `x-moto-account-id` header (as in moto).
See tests/emulators/README.md (AWS IoT Jobs section).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
DATA_PLANE_SIGNING_NAME = "iot-jobs-data"
LOCK = threading.Lock()

TERMINAL = {"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "REMOVED", "CANCELED"}
EXECUTED = {"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT"}
FAILURE_TYPES = {"FAILED": {"FAILED"}, "REJECTED": {"REJECTED"}, "TIMED_OUT": {"TIMED_OUT"}, "ALL": {"FAILED", "REJECTED", "TIMED_OUT"}}
COUNTERS = {
    "QUEUED": "numberOfQueuedThings",
    "IN_PROGRESS": "numberOfInProgressThings",
    "SUCCEEDED": "numberOfSucceededThings",
    "FAILED": "numberOfFailedThings",
    "REJECTED": "numberOfRejectedThings",
    "CANCELED": "numberOfCanceledThings",
    "TIMED_OUT": "numberOfTimedOutThings",
    "REMOVED": "numberOfRemovedThings",
}
ARN_RE = re.compile(r"arn:aws[a-z-]*:iot:[^:]*:[^:]*:(thing|thinggroup)/(.+)")


class IotError(Exception):
    """A REST-JSON error answer: HTTP status, `x-amzn-ErrorType` and `{"message"}`."""

    def __init__(self, code: str, message: str, status: int, **extra):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra


def invalid(message: str) -> IotError:
    return IotError("InvalidRequestException", message, 400)


def not_found(message: str) -> IotError:
    return IotError("ResourceNotFoundException", message, 404)


def bad_transition(message: str) -> IotError:
    return IotError("InvalidStateTransitionException", message, 409)


class Account:
    """One AWS account's things, groups, jobs and clock."""

    def __init__(self, account_id: str):
        self.id = account_id
        self.offset = 0.0
        self.things: dict[str, dict] = {}
        self.groups: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.execution_numbers = 0
        # thing -> the access key ID only that device signs with; once any
        # is registered, the data plane answers each device only with its own.
        self.device_keys: dict[str, str] = {}

    def now(self) -> float:
        return round(time.time() + self.offset, 3)

    def thing(self, name: str) -> dict:
        found = self.things.get(name)
        if found is None:
            raise not_found(f"Thing {name} cannot be found.")
        return found

    def group(self, name: str) -> dict:
        found = self.groups.get(name)
        if found is None:
            raise not_found(f"Thing group {name} cannot be found.")
        return found

    def job(self, job_id: str) -> dict:
        found = self.jobs.get(job_id)
        if found is None:
            raise not_found(f"Job {job_id} cannot be found.")
        return found

    def execution(self, job_id: str, thing_name: str, number: int | None = None) -> dict:
        job = self.jobs.get(job_id)
        found = job["executions"].get(thing_name) if job else None
        if found is None or (number is not None and found["executionNumber"] != number):
            raise not_found(f"Job execution of job {job_id} on thing {thing_name} cannot be found.")
        return found

    # ---- time ---------------------------------------------------------

    def catch_up(self) -> None:
        for job in self.jobs.values():
            refresh_job(self, job)


ACCOUNTS: dict[str, Account] = {}


def account(account_id: str) -> Account:
    if account_id not in ACCOUNTS:
        ACCOUNTS[account_id] = Account(account_id)
    return ACCOUNTS[account_id]


# ---- the job state machine ---------------------------------------------------


def set_status(execution: dict, status: str, at: float) -> None:
    execution["status"] = status
    execution["lastUpdatedAt"] = at
    execution["versionNumber"] += 1
    if status not in ("IN_PROGRESS",):
        execution.pop("stepDeadline", None)


def deadline(job: dict, execution: dict) -> float | None:
    """When an IN_PROGRESS execution times out, or None."""
    if execution["status"] != "IN_PROGRESS":
        return None
    candidates = []
    minutes = (job.get("timeoutConfig") or {}).get("inProgressTimeoutInMinutes")
    if minutes and execution.get("startedAt") is not None:
        candidates.append(execution["startedAt"] + 60 * float(minutes))
    if execution.get("stepDeadline") is not None:
        candidates.append(execution["stepDeadline"])
    return min(candidates) if candidates else None


def add_execution(acct: Account, job: dict, thing_name: str, queued_at: float) -> None:
    acct.execution_numbers += 1
    job["executions"][thing_name] = {
        "jobId": job["jobId"],
        "thingName": thing_name,
        "status": "QUEUED",
        "statusDetails": {},
        "queuedAt": queued_at,
        "lastUpdatedAt": queued_at,
        "executionNumber": acct.execution_numbers,
        "versionNumber": 1,
        "forceCanceled": False,
    }
    job["created"] += 1
    job["lastUpdatedAt"] = queued_at


def materialize(acct: Account, job: dict, now: float) -> None:
    """Creates the executions the rollout rate allows by now."""
    rate = (job.get("jobExecutionsRolloutConfig") or {}).get("maximumPerMinute")
    while job["pending"]:
        if rate:
            slot_minute = job["created"] // int(rate)
            slot_time = job["createdAt"] + 60 * slot_minute
            if slot_time > now:
                return
            queued_at = max(slot_time, job["pendingSince"].get(job["pending"][0], job["createdAt"]))
        else:
            queued_at = job["pendingSince"].get(job["pending"][0], job["createdAt"])
        thing_name = job["pending"].pop(0)
        job["pendingSince"].pop(thing_name, None)
        if thing_name not in job["executions"]:
            add_execution(acct, job, thing_name, queued_at)


def cancel_job(job: dict, now: float, force: bool, reason_code: str | None, comment: str | None) -> None:
    job["status"] = "CANCELED"
    job["forceCanceled"] = bool(force) or job.get("forceCanceled", False)
    if reason_code is not None:
        job["reasonCode"] = reason_code
    if comment is not None:
        job["comment"] = comment
    job["lastUpdatedAt"] = now
    job["completedAt"] = now
    job["pending"].clear()
    job["pendingSince"].clear()
    for execution in job["executions"].values():
        was = execution["status"]
        if was == "QUEUED" or (force and was == "IN_PROGRESS"):
            set_status(execution, "CANCELED", now)
            execution["forceCanceled"] = was == "IN_PROGRESS"


def refresh_job(acct: Account, job: dict) -> None:
    now = acct.now()
    if job["status"] == "IN_PROGRESS":
        materialize(acct, job, now)
    # Timeouts apply to every IN_PROGRESS execution, whatever the job's status.
    for execution in job["executions"].values():
        when = deadline(job, execution)
        if when is not None and when <= now:
            set_status(execution, "TIMED_OUT", round(when, 3))
            job["lastUpdatedAt"] = now
    if job["status"] != "IN_PROGRESS":
        return
    statuses = [e["status"] for e in job["executions"].values()]
    executed = sum(1 for s in statuses if s in EXECUTED)
    for criterion in (job.get("abortConfig") or {}).get("criteriaList", []):
        failures = sum(1 for s in statuses if s in FAILURE_TYPES[criterion["failureType"]])
        if (
            executed > 0
            and executed >= int(criterion.get("minNumberOfExecutedThings", 1))
            and 100.0 * failures / executed >= float(criterion["thresholdPercentage"])
        ):
            cancel_job(
                job,
                now,
                False,
                "FAILURE_THRESHOLD_EXCEEDED",
                f"Job aborted: {failures} of {executed} executed things {criterion['failureType']} "
                f"(threshold {criterion['thresholdPercentage']}%, minimum {criterion.get('minNumberOfExecutedThings')} things).",
            )
            return
    if (
        job["targetSelection"] == "SNAPSHOT"
        and not job["pending"]
        and all(s in TERMINAL for s in statuses)
    ):
        job["status"] = "COMPLETED"
        job["completedAt"] = now
        job["lastUpdatedAt"] = now


def group_members(acct: Account, name: str) -> list[str]:
    group = acct.group(name)
    if "query" in group:
        return [thing["thingName"] for thing in acct.things.values() if thing_matches(acct, thing, group["query"])]
    return list(group["things"])


# ---- fleet-index queries (dynamic thing groups) ----------------------------

QUERY_TERM = re.compile(r"(thingName|thingTypeName|thingGroupNames|attributes\.[A-Za-z0-9_.:-]+):(\S+)")


def parse_query(text: str) -> list[list[tuple[str, re.Pattern]]]:
    """The fleet-index query subset served here: `field:value` terms
    (`thingName`, `thingTypeName`, `thingGroupNames`, `attributes.NAME`;
    `*` matches any run of characters) joined by AND and OR, AND binding
    tighter. Anything else is AWS's InvalidQueryException."""
    alternatives = []
    for part in re.split(r"\s+OR\s+", text.strip()):
        terms = []
        for term in re.split(r"\s+AND\s+", part.strip()):
            match = QUERY_TERM.fullmatch(term.strip())
            if not match:
                raise IotError("InvalidQueryException", f"Syntax error in query string: {term!r} "
                               "(this emulator serves field:value terms joined by AND and OR)", 400)
            field, value = match.groups()
            value = value.strip('"')
            pattern = re.compile("^" + ".*".join(re.escape(piece) for piece in value.split("*")) + "$")
            terms.append((field, pattern))
        alternatives.append(terms)
    return alternatives


def thing_matches(acct: Account, thing: dict, query: list) -> bool:
    def values(field: str) -> list[str]:
        if field == "thingName":
            return [thing["thingName"]]
        if field == "thingTypeName":
            return [thing.get("thingTypeName") or ""]
        if field == "thingGroupNames":
            return [g["thingGroupName"] for g in acct.groups.values()
                    if "query" not in g and thing["thingName"] in g["things"]]
        name = field[len("attributes."):]
        return [str(thing["attributes"][name])] if name in thing["attributes"] else []

    return any(all(any(pattern.match(v) for v in values(field)) for field, pattern in terms)
               for terms in query)


def queue_for_continuous_jobs(acct: Account, thing_name: str, now: float) -> None:
    """CONTINUOUS jobs on a group `thing_name` is now a member of give it
    an execution (a static group it was added to, or a dynamic group it
    now matches)."""
    for job in acct.jobs.values():
        if job["targetSelection"] != "CONTINUOUS" or job["status"] != "IN_PROGRESS":
            continue
        if thing_name in job["executions"] or thing_name in job["pending"]:
            continue
        if thing_name in target_things(acct, job["targets"]):
            job["pending"].append(thing_name)
            job["pendingSince"][thing_name] = now
            refresh_job(acct, job)


def target_things(acct: Account, targets: list[str]) -> list[str]:
    things: list[str] = []
    for arn in targets:
        match = ARN_RE.fullmatch(arn or "")
        if not match:
            raise invalid(f"Invalid target ARN: {arn}")
        kind, name = match.groups()
        names = [acct.thing(name)["thingName"]] if kind == "thing" else group_members(acct, name)
        for thing_name in names:
            if thing_name not in things:
                things.append(thing_name)
    return things


def time_out_in(job: dict, execution: dict, now: float) -> int | None:
    when = deadline(job, execution)
    return None if when is None else max(int(math.ceil(when - now)), 0)


# ---- shapes ------------------------------------------------------------------


def job_shape(job: dict) -> dict:
    counts = {name: 0 for name in COUNTERS.values()}
    for execution in job["executions"].values():
        counts[COUNTERS[execution["status"]]] += 1
    shape = {
        key: job[key]
        for key in (
            "jobArn", "jobId", "targetSelection", "status", "forceCanceled", "reasonCode", "comment",
            "targets", "description", "jobExecutionsRolloutConfig", "abortConfig", "createdAt",
            "lastUpdatedAt", "completedAt", "timeoutConfig", "isConcurrent", "presignedUrlConfig",
        )
        if job.get(key) is not None
    }
    shape["jobProcessDetails"] = counts
    return shape


def job_summary(job: dict) -> dict:
    return {
        key: job[key]
        for key in ("jobArn", "jobId", "thingGroupId", "targetSelection", "status", "createdAt", "lastUpdatedAt", "completedAt", "isConcurrent")
        if job.get(key) is not None
    }


def control_execution(acct: Account, job: dict, execution: dict, now: float) -> dict:
    shape = {
        "jobId": execution["jobId"],
        "status": execution["status"],
        "forceCanceled": execution["forceCanceled"],
        "statusDetails": {"detailsMap": dict(execution["statusDetails"])},
        "thingArn": acct.thing(execution["thingName"])["thingArn"] if execution["thingName"] in acct.things else None,
        "queuedAt": execution["queuedAt"],
        "startedAt": execution.get("startedAt"),
        "lastUpdatedAt": execution["lastUpdatedAt"],
        "executionNumber": execution["executionNumber"],
        "versionNumber": execution["versionNumber"],
        "approximateSecondsBeforeTimedOut": time_out_in(job, execution, now),
    }
    return {k: v for k, v in shape.items() if v is not None}


def summary_for_control(execution: dict) -> dict:
    shape = {
        "status": execution["status"],
        "queuedAt": execution["queuedAt"],
        "startedAt": execution.get("startedAt"),
        "lastUpdatedAt": execution["lastUpdatedAt"],
        "executionNumber": execution["executionNumber"],
        "retryAttempt": 0,
    }
    return {k: v for k, v in shape.items() if v is not None}


def epoch(value: float | None) -> int | None:
    return None if value is None else int(value)


# ---- presigned downloads ---------------------------------------------------

# The placeholder IoT Jobs replaces per execution when the job has a
# presignedUrlConfig, and the S3 URL forms it names.
PRESIGN_RE = re.compile(r"\$\{aws:iot:s3-presigned-url:(https://[^}]+)\}")
S3_PATH_RE = re.compile(r"https://s3[.-]([a-z0-9-]+\.)?amazonaws\.com/([^/]+)/(.+)")
S3_HOST_RE = re.compile(r"https://([^./]+)\.s3[.-]([a-z0-9-]+\.)?amazonaws\.com/(.+)")
# token -> (account, bucket, key, thing, expires at)
TOKENS: dict[str, tuple[str, str, str, str, float]] = {}
DOWNLOADS = {"base": None, "s3": None}


def presign(acct: "Account", job: dict, thing_name: str, document: str) -> str:
    """The document as the device gets it: each placeholder an HTTPS URL
    valid for the job's expiresInSec, for this device's execution."""
    config = job.get("presignedUrlConfig")
    if not config or DOWNLOADS["base"] is None:
        return document
    lifetime = int(config.get("expiresInSec", 3600))

    def resolve(match: re.Match) -> str:
        url = match.group(1)
        found = S3_PATH_RE.fullmatch(url)
        if found:
            bucket, key = found.group(2), found.group(3)
        else:
            found = S3_HOST_RE.fullmatch(url)
            if not found:
                return match.group(0)
            bucket, key = found.group(1), found.group(3)
        token = uuid.uuid4().hex
        TOKENS[token] = (acct.id, bucket, key, thing_name, time.time() + lifetime)
        return f"{DOWNLOADS['base']}/presigned/{token}"

    return PRESIGN_RE.sub(resolve, document)


class DownloadHandler(BaseHTTPRequestHandler):
    """HTTPS GET of a presigned URL: the object from S3 (moto) while the
    token lives; anything else is 403, as S3 answers a bad signature."""

    protocol_version = "HTTP/1.1"
    server_version = "deployctl-iotjobs-downloads"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def deny(self, message: str) -> None:
        data = f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>".encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = urlsplit(self.path).path
        token = path.removeprefix("/presigned/")
        with LOCK:
            grant = TOKENS.get(token) if path.startswith("/presigned/") else None
        if grant is None:
            self.deny("Request has an invalid or missing signature")
            return
        account_id, bucket, key, _thing, expires = grant
        if time.time() > expires:
            self.deny("Request has expired")
            return
        import urllib.request
        url = f"{DOWNLOADS['s3']}/{bucket}/{key}"
        request = urllib.request.Request(url, headers={"x-moto-account-id": account_id, **sigv4_get_headers(url)})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                data = answer.read()
        except Exception as error:  # noqa: BLE001 - any S3 failure is the device's 403/404
            self.deny(f"the object cannot be read: {error}")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def sigv4_get_headers(url: str, region: str = DEFAULT_REGION) -> dict:
    """SigV4 headers for an S3 GET with the tests' dummy credentials (moto
    refuses an unsigned read of a private object, as S3 does)."""
    import hashlib
    import hmac
    from datetime import datetime, timezone

    parts = urlsplit(url)
    now = datetime.now(timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join([
        "GET", parts.path or "/", parts.query,
        "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = b"AWS4testing"
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-content-sha256": payload,
        "x-amz-date": amz_date,
        "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/{scope}, SignedHeaders={signed}, Signature={signature}",
    }


def start_downloads(cert: str, key: str, s3: str) -> str:
    import ssl
    server = ThreadingHTTPServer(("127.0.0.1", 0), DownloadHandler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    DOWNLOADS["base"] = f"https://127.0.0.1:{server.server_address[1]}"
    DOWNLOADS["s3"] = s3.rstrip("/")
    return DOWNLOADS["base"]


def data_execution(job: dict, execution: dict, now: float, include_document: bool, acct: "Account | None" = None) -> dict:
    shape = {
        "jobId": execution["jobId"],
        "thingName": execution["thingName"],
        "status": execution["status"],
        "statusDetails": dict(execution["statusDetails"]),
        "queuedAt": epoch(execution["queuedAt"]),
        "startedAt": epoch(execution.get("startedAt")),
        "lastUpdatedAt": epoch(execution["lastUpdatedAt"]),
        "approximateSecondsBeforeTimedOut": time_out_in(job, execution, now),
        "versionNumber": execution["versionNumber"],
        "executionNumber": execution["executionNumber"],
    }
    if include_document:
        document = job["document"]
        if acct is not None:
            document = presign(acct, job, execution["thingName"], document)
        shape["jobDocument"] = document
    return {k: v for k, v in shape.items() if v is not None}


def data_summary(execution: dict) -> dict:
    shape = {
        "jobId": execution["jobId"],
        "queuedAt": epoch(execution["queuedAt"]),
        "startedAt": epoch(execution.get("startedAt")),
        "lastUpdatedAt": epoch(execution["lastUpdatedAt"]),
        "versionNumber": execution["versionNumber"],
        "executionNumber": execution["executionNumber"],
    }
    return {k: v for k, v in shape.items() if v is not None}


def paginate(items: list, query: dict) -> dict:
    try:
        start = int(query.get("nextToken") or 0)
        size = int(query.get("maxResults") or 50)
    except ValueError:
        raise invalid("nextToken or maxResults is not valid.")
    if size < 1 or size > 250 or start < 0:
        raise invalid("maxResults must be between 1 and 250.")
    page = {"items": items[start:start + size]}
    if start + size < len(items):
        page["nextToken"] = str(start + size)
    return page


def flag(query: dict, name: str) -> bool:
    return str(query.get(name, "")).lower() == "true"


def step_minutes(value) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not (1 <= value <= 10080 or value == -1):
        raise invalid("stepTimeoutInMinutes must be between 1 and 10080 (or -1 to clear it).")
    return float(value)


def executions_of_thing(acct: Account, thing_name: str) -> list[tuple[dict, dict]]:
    found = [(job, job["executions"][thing_name]) for job in acct.jobs.values() if thing_name in job["executions"]]
    found.sort(key=lambda pair: (pair[1]["queuedAt"], pair[1]["executionNumber"]))
    return found


# ---- control plane -----------------------------------------------------------


def op_create_thing(acct, region, params, query, body):
    name = params["thingName"]
    attributes = (body.get("attributePayload") or {}).get("attributes") or {}
    existing = acct.things.get(name)
    if existing is not None:
        if existing["attributes"] != attributes or existing.get("thingTypeName") != body.get("thingTypeName"):
            raise IotError("ResourceAlreadyExistsException", f"Thing {name} already exists with different attributes",
                           409, resourceId=existing["thingId"], resourceArn=existing["thingArn"])
    else:
        existing = acct.things[name] = {
            "thingName": name,
            "thingArn": f"arn:aws:iot:{region}:{acct.id}:thing/{name}",
            "thingId": str(uuid.uuid4()),
            "attributes": attributes,
            "thingTypeName": body.get("thingTypeName"),
            "version": 1,
        }
        queue_for_continuous_jobs(acct, name, acct.now())
    return {k: existing[k] for k in ("thingName", "thingArn", "thingId")}


def op_describe_thing(acct, region, params, query, body):
    thing = acct.thing(params["thingName"])
    shape = {
        "defaultClientId": thing["thingName"],
        "thingName": thing["thingName"],
        "thingId": thing["thingId"],
        "thingArn": thing["thingArn"],
        "attributes": thing["attributes"],
        "version": thing["version"],
    }
    if thing.get("thingTypeName"):
        shape["thingTypeName"] = thing["thingTypeName"]
    return shape


def new_group(acct: Account, region: str, name: str, body: dict) -> dict:
    return {
        "thingGroupName": name,
        "thingGroupArn": f"arn:aws:iot:{region}:{acct.id}:thinggroup/{name}",
        "thingGroupId": str(uuid.uuid4()),
        "things": [],
        "properties": body.get("thingGroupProperties") or {},
        "createdAt": acct.now(),
    }


def op_create_thing_group(acct, region, params, query, body):
    name = params["thingGroupName"]
    if name not in acct.groups:
        acct.groups[name] = new_group(acct, region, name, body)
    group = acct.groups[name]
    return {k: group[k] for k in ("thingGroupName", "thingGroupArn", "thingGroupId")}


def op_create_dynamic_thing_group(acct, region, params, query, body):
    name = params["thingGroupName"]
    text = body.get("queryString") or ""
    index = body.get("indexName") or "AWS_Things"
    if index != "AWS_Things":
        raise invalid(f"Index {index} does not exist; dynamic thing groups use AWS_Things")
    parsed = parse_query(text)
    if name in acct.groups:
        group = acct.groups[name]
        raise IotError("ResourceAlreadyExistsException", f"Thing group {name} already exists", 409,
                       resourceId=group["thingGroupId"], resourceArn=group["thingGroupArn"])
    group = acct.groups[name] = dict(new_group(acct, region, name, body), query=parsed, queryString=text,
                                     indexName=index)
    out = {k: group[k] for k in ("thingGroupName", "thingGroupArn", "thingGroupId", "indexName", "queryString")}
    out["queryVersion"] = "2017-09-30"
    return out


def op_describe_thing_group(acct, region, params, query, body):
    group = acct.group(params["thingGroupName"])
    out = {
        "thingGroupName": group["thingGroupName"],
        "thingGroupId": group["thingGroupId"],
        "thingGroupArn": group["thingGroupArn"],
        "version": 1,
        "thingGroupProperties": group.get("properties") or {},
        "thingGroupMetadata": {"creationDate": group.get("createdAt", 0)},
    }
    if "query" in group:
        out.update(indexName=group["indexName"], queryString=group["queryString"],
                   queryVersion="2017-09-30", status="ACTIVE")
    return out


def op_add_thing_to_thing_group(acct, region, params, query, body):
    group_name = body.get("thingGroupName") or (body.get("thingGroupArn") or "").rpartition("/")[2]
    thing_name = body.get("thingName") or (body.get("thingArn") or "").rpartition("/")[2]
    if not group_name or not thing_name:
        raise invalid("A thing group and a thing must be given.")
    group = acct.group(group_name)
    acct.thing(thing_name)
    if "query" in group:
        raise invalid(f"Cannot add things to dynamic thing group {group_name}: its query decides its members")
    if thing_name in group["things"]:
        return {}
    group["things"].append(thing_name)
    # CONTINUOUS jobs targeting the group (or a dynamic group the thing
    # now matches by `thingGroupNames`) give the new member an execution.
    queue_for_continuous_jobs(acct, thing_name, acct.now())
    return {}


def op_list_things_in_thing_group(acct, region, params, query, body):
    page = paginate(group_members(acct, params["thingGroupName"]), query)
    out = {"things": page["items"]}
    if "nextToken" in page:
        out["nextToken"] = page["nextToken"]
    return out


def op_create_job(acct, region, params, query, body):
    job_id = params["jobId"]
    if not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", job_id):
        raise invalid(f"Invalid jobId: {job_id}")
    arn = f"arn:aws:iot:{region}:{acct.id}:job/{job_id}"
    if job_id in acct.jobs:
        raise IotError("ResourceAlreadyExistsException", f"Job {job_id} already exists.", 409, resourceId=job_id, resourceArn=arn)
    targets = body.get("targets")
    if not isinstance(targets, list) or not targets:
        raise invalid("targets must list at least one thing or thing group ARN.")
    if len(targets) > 100:
        raise invalid("A job may have at most 100 targets; aim it at a thing group instead.")
    presigned = body.get("presignedUrlConfig")
    if presigned is not None:
        role = presigned.get("roleArn")
        if not isinstance(role, str) or not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/.+", role):
            raise invalid("presignedUrlConfig.roleArn must be an IAM role ARN.")
        lifetime = presigned.get("expiresInSec", 3600)
        if not isinstance(lifetime, int) or not 60 <= lifetime <= 3600:
            raise invalid("presignedUrlConfig.expiresInSec must be between 60 and 3600.")
    document = body.get("document")
    if body.get("documentSource") or body.get("jobTemplateArn"):
        raise invalid("deployctl's IoT Jobs emulator takes the job document inline (document) only.")
    if not isinstance(document, str):
        raise invalid("A job document is required.")
    try:
        json.loads(document)
    except ValueError:
        raise invalid("The job document is not valid JSON.")
    selection = body.get("targetSelection") or "SNAPSHOT"
    if selection not in ("SNAPSHOT", "CONTINUOUS"):
        raise invalid(f"Invalid targetSelection: {selection}")
    rollout = body.get("jobExecutionsRolloutConfig")
    if rollout is not None:
        rate = rollout.get("maximumPerMinute")
        if rate is not None and (not isinstance(rate, int) or rate < 1 or rate > 1000):
            raise invalid("maximumPerMinute must be between 1 and 1000.")
    abort = body.get("abortConfig")
    if abort is not None:
        criteria = abort.get("criteriaList")
        if not isinstance(criteria, list) or not criteria:
            raise invalid("abortConfig.criteriaList must have at least one criterion.")
        for criterion in criteria:
            if criterion.get("failureType") not in FAILURE_TYPES:
                raise invalid(f"Invalid failureType: {criterion.get('failureType')}")
            if criterion.get("action") != "CANCEL":
                raise invalid(f"Invalid abort action: {criterion.get('action')}")
            threshold = criterion.get("thresholdPercentage")
            if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 100:
                raise invalid("thresholdPercentage must be between 0 and 100.")
            minimum = criterion.get("minNumberOfExecutedThings")
            if not isinstance(minimum, int) or minimum < 1:
                raise invalid("minNumberOfExecutedThings must be at least 1.")
    timeout = body.get("timeoutConfig")
    if timeout is not None:
        minutes = timeout.get("inProgressTimeoutInMinutes")
        if minutes is not None and (not isinstance(minutes, int) or not 1 <= minutes <= 10080):
            raise invalid("inProgressTimeoutInMinutes must be between 1 and 10080.")
    things = target_things(acct, targets)
    now = acct.now()
    groups = [ARN_RE.fullmatch(t).group(2) for t in targets if ARN_RE.fullmatch(t).group(1) == "thinggroup"]
    job = {
        "jobArn": arn,
        "jobId": job_id,
        "targetSelection": selection,
        "status": "IN_PROGRESS",
        "forceCanceled": False,
        "targets": targets,
        "description": body.get("description"),
        "document": document,
        "jobExecutionsRolloutConfig": rollout,
        "abortConfig": abort,
        "timeoutConfig": timeout,
        "presignedUrlConfig": presigned,
        "createdAt": now,
        "lastUpdatedAt": now,
        "isConcurrent": False,
        "thingGroupId": acct.groups[groups[0]]["thingGroupId"] if groups else None,
        "executions": {},
        "pending": things,
        "pendingSince": {},
        "created": 0,
    }
    acct.jobs[job_id] = job
    refresh_job(acct, job)
    out = {"jobArn": arn, "jobId": job_id}
    if job["description"] is not None:
        out["description"] = job["description"]
    return out


def op_describe_job(acct, region, params, query, body):
    return {"job": job_shape(acct.job(params["jobId"]))}


def op_get_job_document(acct, region, params, query, body):
    return {"document": acct.job(params["jobId"])["document"]}


def op_list_jobs(acct, region, params, query, body):
    jobs = list(acct.jobs.values())
    if query.get("status"):
        jobs = [j for j in jobs if j["status"] == query["status"]]
    if query.get("targetSelection"):
        jobs = [j for j in jobs if j["targetSelection"] == query["targetSelection"]]
    if query.get("thingGroupName"):
        group = acct.group(query["thingGroupName"])
        jobs = [j for j in jobs if group["thingGroupArn"] in j["targets"]]
    if query.get("thingGroupId"):
        jobs = [j for j in jobs if j.get("thingGroupId") == query["thingGroupId"]]
    page = paginate([job_summary(j) for j in jobs], query)
    out = {"jobs": page["items"]}
    if "nextToken" in page:
        out["nextToken"] = page["nextToken"]
    return out


def op_list_job_executions_for_job(acct, region, params, query, body):
    job = acct.job(params["jobId"])
    executions = list(job["executions"].values())
    if query.get("status"):
        executions = [e for e in executions if e["status"] == query["status"]]
    page = paginate(executions, query)
    out = {
        "executionSummaries": [
            {"thingArn": acct.things[e["thingName"]]["thingArn"], "jobExecutionSummary": summary_for_control(e)}
            for e in page["items"]
            if e["thingName"] in acct.things
        ]
    }
    if "nextToken" in page:
        out["nextToken"] = page["nextToken"]
    return out


def op_list_job_executions_for_thing(acct, region, params, query, body):
    thing_name = params["thingName"]
    acct.thing(thing_name)
    pairs = executions_of_thing(acct, thing_name)
    if query.get("status"):
        pairs = [p for p in pairs if p[1]["status"] == query["status"]]
    if query.get("jobId"):
        pairs = [p for p in pairs if p[0]["jobId"] == query["jobId"]]
    page = paginate(pairs, query)
    out = {"executionSummaries": [{"jobId": job["jobId"], "jobExecutionSummary": summary_for_control(e)} for job, e in page["items"]]}
    if "nextToken" in page:
        out["nextToken"] = page["nextToken"]
    return out


def execution_number(query: dict) -> int | None:
    value = query.get("executionNumber")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid("executionNumber must be a number.")


def op_describe_job_execution(acct, region, params, query, body):
    execution = acct.execution(params["jobId"], params["thingName"], execution_number(query))
    return {"execution": control_execution(acct, acct.jobs[params["jobId"]], execution, acct.now())}


def op_cancel_job(acct, region, params, query, body):
    job = acct.job(params["jobId"])
    force = flag(query, "force")
    if job["status"] == "COMPLETED":
        raise invalid(f"Job {job['jobId']} is COMPLETED and cannot be canceled.")
    if job["status"] == "DELETION_IN_PROGRESS":
        raise invalid(f"Job {job['jobId']} is being deleted.")
    if job["status"] == "CANCELED" and not force:
        raise invalid(f"Job {job['jobId']} is already canceled; only a forced cancel can follow.")
    cancel_job(job, acct.now(), force, body.get("reasonCode"), body.get("comment"))
    out = {"jobArn": job["jobArn"], "jobId": job["jobId"]}
    if job.get("description") is not None:
        out["description"] = job["description"]
    return out


def check_version(execution: dict, body: dict) -> None:
    expected = body.get("expectedVersion")
    if expected is not None and int(expected) != execution["versionNumber"]:
        raise IotError(
            "VersionConflictException",
            f"expectedVersion {expected} does not match the job execution's version {execution['versionNumber']}.",
            409,
        )


def op_cancel_job_execution(acct, region, params, query, body):
    execution = acct.execution(params["jobId"], params["thingName"])
    force = flag(query, "force")
    check_version(execution, body)
    status = execution["status"]
    if status in TERMINAL:
        raise bad_transition(f"The job execution is {status} and cannot be canceled.")
    if status == "IN_PROGRESS" and not force:
        raise bad_transition("The job execution is IN_PROGRESS; canceling it needs force=true.")
    if body.get("statusDetails") is not None:
        execution["statusDetails"] = dict(body["statusDetails"])
    set_status(execution, "CANCELED", acct.now())
    execution["forceCanceled"] = status == "IN_PROGRESS"
    refresh_job(acct, acct.jobs[params["jobId"]])
    return {}


def op_delete_job(acct, region, params, query, body):
    job = acct.job(params["jobId"])
    if job["status"] == "IN_PROGRESS" and not flag(query, "force"):
        raise bad_transition(f"Job {job['jobId']} is IN_PROGRESS; deleting it needs force=true.")
    if not flag(query, "force") and any(e["status"] == "IN_PROGRESS" for e in job["executions"].values()):
        raise bad_transition(f"Job {job['jobId']} has IN_PROGRESS executions; deleting it needs force=true.")
    del acct.jobs[job["jobId"]]
    return {}


def op_delete_job_execution(acct, region, params, query, body):
    try:
        number = int(params["executionNumber"])
    except ValueError:
        raise invalid("executionNumber must be a number.")
    execution = acct.execution(params["jobId"], params["thingName"], number)
    if execution["status"] not in TERMINAL and not flag(query, "force"):
        raise bad_transition(f"The job execution is {execution['status']}; deleting it needs force=true.")
    del acct.jobs[params["jobId"]]["executions"][params["thingName"]]
    return {}


# ---- data plane --------------------------------------------------------------


def op_get_pending_job_executions(acct, region, params, query, body):
    thing_name = params["thingName"]
    acct.thing(thing_name)
    pairs = executions_of_thing(acct, thing_name)
    return {
        "inProgressJobs": [data_summary(e) for _, e in pairs if e["status"] == "IN_PROGRESS"],
        "queuedJobs": [data_summary(e) for _, e in pairs if e["status"] == "QUEUED"],
    }


def next_pending(acct: Account, thing_name: str) -> tuple[dict, dict] | None:
    pairs = executions_of_thing(acct, thing_name)
    for wanted in ("IN_PROGRESS", "QUEUED"):
        for job, execution in pairs:
            if execution["status"] == wanted:
                return job, execution
    return None


def apply_step_timeout(execution: dict, minutes: float | None, now: float) -> None:
    if minutes is None:
        return
    if minutes == -1:
        execution.pop("stepDeadline", None)
    else:
        execution["stepDeadline"] = now + 60 * minutes


def op_start_next_pending_job_execution(acct, region, params, query, body):
    thing_name = params["thingName"]
    acct.thing(thing_name)
    minutes = step_minutes(body.get("stepTimeoutInMinutes"))
    found = next_pending(acct, thing_name)
    if found is None:
        return {}
    job, execution = found
    now = acct.now()
    if execution["status"] == "QUEUED":
        if body.get("statusDetails") is not None:
            execution["statusDetails"] = dict(body["statusDetails"])
        execution["startedAt"] = now
        set_status(execution, "IN_PROGRESS", now)
        apply_step_timeout(execution, minutes, now)
        job["lastUpdatedAt"] = now
    return {"execution": data_execution(job, execution, now, True, acct)}


def op_data_describe_job_execution(acct, region, params, query, body):
    thing_name = params["thingName"]
    acct.thing(thing_name)
    include = flag(query, "includeJobDocument")
    now = acct.now()
    if params["jobId"] == "$next":
        found = next_pending(acct, thing_name)
        if found is None:
            return {}
        job, execution = found
    else:
        execution = acct.execution(params["jobId"], thing_name, execution_number(query))
        job = acct.jobs[params["jobId"]]
    return {"execution": data_execution(job, execution, now, include, acct)}


def op_update_job_execution(acct, region, params, query, body):
    status = body.get("status")
    if status not in ("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"):
        raise invalid(f"status must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED, not {status}.")
    minutes = step_minutes(body.get("stepTimeoutInMinutes"))
    number = body.get("executionNumber")
    execution = acct.execution(params["jobId"], params["thingName"], int(number) if number is not None else None)
    job = acct.jobs[params["jobId"]]
    check_version(execution, body)
    if execution["status"] in TERMINAL:
        raise bad_transition(f"The job execution is {execution['status']} and cannot be updated.")
    now = acct.now()
    if body.get("statusDetails") is not None:
        execution["statusDetails"] = dict(body["statusDetails"])
    if execution["status"] == "QUEUED" and status == "IN_PROGRESS":
        execution["startedAt"] = now
    elif execution.get("startedAt") is None and status in TERMINAL:
        execution["startedAt"] = now
    set_status(execution, status, now)
    if status == "IN_PROGRESS":
        apply_step_timeout(execution, minutes, now)
    job["lastUpdatedAt"] = now
    refresh_job(acct, job)
    out = {}
    if body.get("includeJobExecutionState"):
        out["executionState"] = {
            "status": execution["status"],
            "statusDetails": dict(execution["statusDetails"]),
            "versionNumber": execution["versionNumber"],
        }
    if body.get("includeJobDocument"):
        out["jobDocument"] = presign(acct, job, execution["thingName"], job["document"])
    return out


# ---- routing -----------------------------------------------------------------

# (method, path pattern, control-plane operation, data-plane operation).
# Where both planes share a route, the SigV4 scope's service name chooses.
ROUTES = [
    ("POST", "/things/{thingName}", op_create_thing, None),
    ("GET", "/things/{thingName}", op_describe_thing, None),
    ("PUT", "/thing-groups/addThingToThingGroup", op_add_thing_to_thing_group, None),
    ("POST", "/thing-groups/{thingGroupName}", op_create_thing_group, None),
    ("GET", "/thing-groups/{thingGroupName}", op_describe_thing_group, None),
    ("GET", "/thing-groups/{thingGroupName}/things", op_list_things_in_thing_group, None),
    ("POST", "/dynamic-thing-groups/{thingGroupName}", op_create_dynamic_thing_group, None),
    ("GET", "/jobs", op_list_jobs, None),
    ("PUT", "/jobs/{jobId}", op_create_job, None),
    ("GET", "/jobs/{jobId}", op_describe_job, None),
    ("DELETE", "/jobs/{jobId}", op_delete_job, None),
    ("GET", "/jobs/{jobId}/job-document", op_get_job_document, None),
    ("GET", "/jobs/{jobId}/things", op_list_job_executions_for_job, None),
    ("PUT", "/jobs/{jobId}/cancel", op_cancel_job, None),
    ("GET", "/things/{thingName}/jobs", op_list_job_executions_for_thing, op_get_pending_job_executions),
    ("PUT", "/things/{thingName}/jobs/$next", None, op_start_next_pending_job_execution),
    ("GET", "/things/{thingName}/jobs/{jobId}", op_describe_job_execution, op_data_describe_job_execution),
    ("POST", "/things/{thingName}/jobs/{jobId}", None, op_update_job_execution),
    ("PUT", "/things/{thingName}/jobs/{jobId}/cancel", op_cancel_job_execution, None),
    ("DELETE", "/things/{thingName}/jobs/{jobId}/executionNumber/{executionNumber}", op_delete_job_execution, None),
]


def match_route(method: str, segments: list[str]):
    for route_method, pattern, control, data in ROUTES:
        parts = pattern.strip("/").split("/")
        if route_method != method or len(parts) != len(segments):
            continue
        params = {}
        for part, segment in zip(parts, segments):
            if part.startswith("{"):
                params[part[1:-1]] = segment
            elif part != segment:
                break
        else:
            return control, data, params
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "deployctl-iotjobs-emulator"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def account_id(self, body: dict | None = None) -> str:
        # As moto: the header, else an access key ID of 12 digits (how a
        # process that cannot add headers, the device agent, picks one).
        key = self.access_key() or ""
        by_key = key if re.fullmatch(r"\d{12}", key) else None
        return (body or {}).get("account") or self.headers.get("x-moto-account-id") or by_key or DEFAULT_ACCOUNT

    def access_key(self) -> str | None:
        match = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", ""))
        return match.group(1) if match else None

    def scope(self) -> tuple[str, str | None]:
        match = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/aws4_request", self.headers.get("Authorization", ""))
        return (match.group(1), match.group(2)) if match else (DEFAULT_REGION, None)

    def send(self, status: int, payload: dict, error: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.end_headers()
        self.wfile.write(data)

    def fail(self, error: IotError) -> None:
        self.send(error.status, {"message": error.message, **error.extra}, error.code)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.handle_any("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self.handle_any("POST")

    def do_PUT(self) -> None:  # noqa: N802 - stdlib name
        self.handle_any("PUT")

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib name
        self.handle_any("DELETE")

    def handle_any(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as error:
            self.fail(IotError("SerializationException", f"invalid JSON body: {error}", 400))
            return
        if url.path.startswith("/_emulator/"):
            self.control(method, url.path, body)
            return
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        segments = [unquote(s) for s in url.path.strip("/").split("/")] if url.path.strip("/") else []
        route = match_route(method, segments)
        region, service = self.scope()
        data_plane = service == DATA_PLANE_SIGNING_NAME
        operation = None
        if route is not None:
            control, data, params = route
            operation = (data or control) if data_plane else (control or data)
        if operation is None:
            self.fail(IotError("UnknownOperationException", f"no operation for {method} {url.path}", 404))
            return
        try:
            with LOCK:
                acct = account(self.account_id())
                if data_plane and acct.device_keys:
                    thing = params.get("thingName")
                    if acct.device_keys.get(thing) != self.access_key():
                        raise IotError(
                            "ForbiddenException",
                            f"the request is not signed with {thing}'s own credentials",
                            403,
                        )
                acct.catch_up()
                result = operation(acct, region, params, query, body)
        except IotError as error:
            self.fail(error)
            return
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            self.fail(invalid(f"invalid request: {error!r}"))
            return
        self.send(200, result)

    def control(self, method: str, path: str, body: dict) -> None:
        with LOCK:
            if method == "GET" and path == "/_emulator/health":
                self.send(200, {"status": "ok"})
            elif method == "POST" and path == "/_emulator/reset":
                if body.get("account"):
                    ACCOUNTS.pop(body["account"], None)
                else:
                    ACCOUNTS.clear()
                self.send(200, {"status": "ok"})
            elif method == "POST" and path == "/_emulator/advance":
                seconds = body.get("seconds")
                if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
                    self.send(400, {"message": "seconds must be a number >= 0"})
                    return
                acct = account(self.account_id(body))
                acct.offset += float(seconds)
                acct.catch_up()
                self.send(200, {"offset": acct.offset, "now": acct.now()})
            elif method == "POST" and path == "/_emulator/device-credentials":
                thing, key = body.get("thing"), body.get("accessKeyId")
                if not isinstance(thing, str) or not isinstance(key, str):
                    self.send(400, {"message": "thing and accessKeyId are required"})
                    return
                account(self.account_id(body)).device_keys[thing] = key
                self.send(200, {"status": "ok"})
            elif method == "GET" and path == "/_emulator/downloads":
                self.send(200, {"url": DOWNLOADS["base"]})
            elif method == "GET" and path == "/_emulator/clock":
                acct = account(self.account_id())
                self.send(200, {"offset": acct.offset, "now": acct.now()})
            else:
                self.send(404, {"message": f"no such control endpoint {method} {path}"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"iotjobs emulator listening on http://127.0.0.1:{args.port}", flush=True)
    # Presigned downloads over HTTPS, from moto's S3, when a test
    # certificate is there (tests/moto.sh makes one).
    cert, key = os.environ.get("DEPLOYCTL_TEST_TLS_CERT"), os.environ.get("DEPLOYCTL_TEST_TLS_KEY")
    s3 = os.environ.get("DEPLOYCTL_TEST_MOTO_URL")
    if cert and key and s3:
        print(f"iotjobs emulator serving downloads on {start_downloads(cert, key, s3)}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
