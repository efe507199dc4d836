#!/usr/bin/env python3
"""ECS rolling-update emulator for deployctl's tests (Python 3.11, stdlib only).

moto stores ECS services but never moves a deployment: rolloutState stays
IN_PROGRESS forever, UpdateService adds no deployment, and nothing fails or
rolls back. This server speaks the ECS awsJson1_1 protocol (POST /,
X-Amz-Target: AmazonEC2ContainerServiceV20141113.<Op>) for the operations a
rolling update needs and moves deployments the way the ECS documentation
describes them:

- UpdateService with a new task definition (or forceNewDeployment) adds a
  PRIMARY deployment (rolloutState IN_PROGRESS); the previous ones become
  ACTIVE.
- Each step, pending tasks start (or fail, for a task definition marked
  failing), new tasks are launched within maximumPercent, and old tasks are
  stopped while minimumHealthyPercent of the desired count stays running.
- When the PRIMARY deployment runs the desired count alone, it is COMPLETED
  and the drained deployments disappear.
- With deploymentCircuitBreaker.enable, a deployment whose failed tasks
  reach the threshold (0.5 x desired count, at least 3, at most 200) goes
  FAILED and launches nothing more; with rollback, ECS starts a new PRIMARY
  deployment of the last COMPLETED task definition.

Time moves in steps of `stepSeconds` (per account, see the control
endpoints) computed lazily on every request, or by POST /_emulator/advance.
Accounts are isolated by the `x-moto-account-id` header (as in moto).
See tests/emulators/README.md (ECS section).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
LOCK = threading.Lock()


class EcsError(Exception):
    """An ECS error answer: awsJson `__type` and HTTP 400 (500 for ServerException)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def client_error(message: str) -> EcsError:
    return EcsError("ClientException", message)


def invalid(message: str) -> EcsError:
    return EcsError("InvalidParameterException", message)


class Account:
    """One AWS account's ECS state and clock."""

    def __init__(self, account_id: str):
        self.id = account_id
        self.clusters: dict[str, dict] = {}
        self.task_definitions: dict[str, list[dict]] = {}
        self.services: dict[tuple[str, str], dict] = {}
        self.failing: set[str] = set()
        self.step_seconds = 0.5
        self.last_step = time.monotonic()
        self.ids = 0
        # Every API call, so tests can prove a command only read.
        self.calls: list[dict] = []

    def next_id(self) -> str:
        self.ids += 1
        return f"{self.ids:012d}{uuid.uuid4().hex[:8]}"

    # ---- time ---------------------------------------------------------

    def catch_up(self) -> None:
        """Runs the steps that elapsed since the last request."""
        now = time.monotonic()
        if self.step_seconds <= 0:
            self.last_step = now
            return
        steps = int((now - self.last_step) / self.step_seconds)
        if steps <= 0:
            return
        self.last_step += steps * self.step_seconds
        self.advance(min(steps, 10_000))

    def advance(self, steps: int) -> None:
        for _ in range(steps):
            for service in self.services.values():
                step_service(self, service)

    # ---- lookups ------------------------------------------------------

    def cluster(self, ref: str | None) -> dict:
        name = (ref or "default").split("/")[-1]
        found = self.clusters.get(name)
        if found is None:
            raise EcsError("ClusterNotFoundException", "Cluster not found.")
        return found

    def task_definition(self, ref: str) -> dict:
        """`family`, `family:revision` or an ARN; a bare family is its latest ACTIVE revision."""
        if not ref:
            raise client_error("TaskDefinition cannot be empty.")
        short = ref.split("task-definition/")[-1]
        family, _, revision = short.partition(":")
        revisions = self.task_definitions.get(family, [])
        if revision:
            for td in revisions:
                if str(td["revision"]) == revision:
                    return td
        else:
            active = [td for td in revisions if td["status"] == "ACTIVE"]
            if active:
                return active[-1]
        raise client_error("Unable to describe task definition.")

    def service(self, cluster: dict, ref: str | None) -> dict:
        if not ref:
            raise invalid("Service cannot be empty.")
        found = self.services.get((cluster["clusterName"], ref.split("/")[-1]))
        if found is None:
            raise EcsError("ServiceNotFoundException", "Service not found.")
        return found


ACCOUNTS: dict[str, Account] = {}


def account(account_id: str) -> Account:
    if account_id not in ACCOUNTS:
        ACCOUNTS[account_id] = Account(account_id)
    return ACCOUNTS[account_id]


def now() -> float:
    return round(time.time(), 3)


# ---- the rolling update ----------------------------------------------------


def threshold(desired: int) -> int:
    return min(max(math.ceil(0.5 * desired), 3), 200)


def new_deployment(acct: Account, service: dict, td_arn: str, reason: str | None = None) -> dict:
    deployment_id = f"ecs-svc/{acct.next_id()}"
    return {
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": td_arn,
        "desiredCount": service["desiredCount"],
        "pendingCount": 0,
        "runningCount": 0,
        "failedTasks": 0,
        "createdAt": now(),
        "updatedAt": now(),
        "launchType": service.get("launchType", "FARGATE"),
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": reason or f"ECS deployment {deployment_id} in progress.",
    }


def add_event(service: dict, message: str) -> None:
    service["events"].insert(
        0, {"id": str(uuid.uuid4()), "createdAt": now(), "message": f"(service {service['serviceName']}) {message}"}
    )
    del service["events"][100:]


def start_deployment(acct: Account, service: dict, td_arn: str, reason: str | None = None) -> dict:
    for old in service["deployments"]:
        if old["status"] == "PRIMARY":
            old["status"] = "ACTIVE"
            old["updatedAt"] = now()
    deployment = new_deployment(acct, service, td_arn, reason)
    service["deployments"].insert(0, deployment)
    service["taskDefinition"] = td_arn
    add_event(service, f"has started a deployment {deployment['id']} of {td_arn}.")
    return deployment


def step_service(acct: Account, service: dict) -> None:
    deployments = service["deployments"]
    if service["status"] != "ACTIVE" or not deployments:
        return
    desired = service["desiredCount"]
    config = service["deploymentConfiguration"]
    breaker = config.get("deploymentCircuitBreaker") or {}
    max_total = math.floor(desired * config["maximumPercent"] / 100)
    min_healthy = math.ceil(desired * config["minimumHealthyPercent"] / 100)
    primary = deployments[0]

    # 1. Tasks launched in the previous step start, or fail to start.
    for deployment in deployments:
        pending = deployment["pendingCount"]
        if pending:
            short = deployment["taskDefinition"].split("task-definition/")[-1]
            if short in acct.failing:
                deployment["failedTasks"] += pending
            else:
                deployment["runningCount"] += pending
            deployment["pendingCount"] = 0
            deployment["updatedAt"] = now()

    # 2. The circuit breaker.
    if (
        primary["rolloutState"] == "IN_PROGRESS"
        and breaker.get("enable")
        and primary["failedTasks"] >= threshold(desired)
    ):
        primary["rolloutState"] = "FAILED"
        primary["rolloutStateReason"] = "ECS deployment circuit breaker: tasks failed to start."
        primary["updatedAt"] = now()
        add_event(service, f"deployment {primary['id']} deployment failed: tasks failed to start.")
        stable = service.get("lastCompletedTaskDefinition")
        if breaker.get("rollback") and stable and stable != primary["taskDefinition"]:
            start_deployment(
                acct,
                service,
                stable,
                f"ECS deployment circuit breaker: rolling back to deploymentId {service.get('lastCompletedDeployment')}.",
            )
        refresh_counts(service)
        return

    # 3. Old tasks stop while enough healthy tasks remain.
    healthy = sum(d["runningCount"] for d in deployments)
    for deployment in reversed(deployments[1:]):
        deployment["pendingCount"] = 0
        while deployment["runningCount"] > 0 and healthy - 1 >= min_healthy:
            deployment["runningCount"] -= 1
            healthy -= 1
        # Once the new deployment runs the desired count, the rest drain.
        if primary["runningCount"] >= desired:
            healthy -= deployment["runningCount"]
            deployment["runningCount"] = 0

    # 4. New tasks launch within maximumPercent (a FAILED deployment launches none).
    if primary["rolloutState"] != "FAILED":
        in_flight = sum(d["runningCount"] + d["pendingCount"] for d in deployments)
        room = max(max_total - in_flight, 0)
        need = max(desired - primary["runningCount"] - primary["pendingCount"], 0)
        primary["pendingCount"] += min(room, need)

    # 5. Drained deployments disappear; the primary completes in steady state.
    service["deployments"] = [primary] + [
        d for d in deployments[1:] if d["runningCount"] > 0 or d["pendingCount"] > 0
    ]
    if (
        primary["rolloutState"] == "IN_PROGRESS"
        and primary["runningCount"] >= desired
        and len(service["deployments"]) == 1
    ):
        primary["rolloutState"] = "COMPLETED"
        primary["rolloutStateReason"] = f"ECS deployment {primary['id']} completed."
        primary["updatedAt"] = now()
        service["lastCompletedTaskDefinition"] = primary["taskDefinition"]
        service["lastCompletedDeployment"] = primary["id"]
        add_event(service, f"deployment {primary['id']} has completed.")
        add_event(service, "has reached a steady state.")
    refresh_counts(service)


def refresh_counts(service: dict) -> None:
    service["runningCount"] = sum(d["runningCount"] for d in service["deployments"])
    service["pendingCount"] = sum(d["pendingCount"] for d in service["deployments"])


# ---- operations --------------------------------------------------------------


def op_create_cluster(acct: Account, region: str, body: dict) -> dict:
    name = body.get("clusterName") or "default"
    if name not in acct.clusters:
        acct.clusters[name] = {
            "clusterArn": f"arn:aws:ecs:{region}:{acct.id}:cluster/{name}",
            "clusterName": name,
            "status": "ACTIVE",
            "registeredContainerInstancesCount": 0,
            "runningTasksCount": 0,
            "pendingTasksCount": 0,
            "activeServicesCount": 0,
        }
    return {"cluster": acct.clusters[name]}


def op_register_task_definition(acct: Account, region: str, body: dict) -> dict:
    family = body.get("family")
    if not family or not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", family):
        raise client_error("Family must be 1-255 letters, numbers, hyphens and underscores.")
    containers = body.get("containerDefinitions")
    if not containers:
        raise client_error("Container list cannot be empty.")
    for container in containers:
        if not container.get("name") or not container.get("image"):
            raise client_error("Container.name and Container.image should not be null or empty.")
    revisions = acct.task_definitions.setdefault(family, [])
    revision = len(revisions) + 1
    td = {
        "taskDefinitionArn": f"arn:aws:ecs:{region}:{acct.id}:task-definition/{family}:{revision}",
        "family": family,
        "revision": revision,
        "status": "ACTIVE",
        "containerDefinitions": containers,
        "requiresCompatibilities": body.get("requiresCompatibilities", []),
        "networkMode": body.get("networkMode", "bridge"),
        "registeredAt": now(),
    }
    for key in ("cpu", "memory"):
        if key in body:
            td[key] = body[key]
    revisions.append(td)
    return {"taskDefinition": td}


def op_describe_task_definition(acct: Account, region: str, body: dict) -> dict:
    return {"taskDefinition": acct.task_definition(body.get("taskDefinition", ""))}


def op_deregister_task_definition(acct: Account, region: str, body: dict) -> dict:
    ref = body.get("taskDefinition", "")
    if ":" not in ref.split("task-definition/")[-1]:
        raise client_error("A revision must be specified to deregister a task definition.")
    td = acct.task_definition(ref)
    td["status"] = "INACTIVE"
    return {"taskDefinition": td}


def deployment_configuration(given: dict | None, current: dict | None = None) -> dict:
    config = dict(current or {"maximumPercent": 200, "minimumHealthyPercent": 100})
    for key, value in (given or {}).items():
        config[key] = value
    if not 100 <= int(config["maximumPercent"]) <= 2000:
        raise invalid("maximumPercent must be between 100 and 2000.")
    if not 0 <= int(config["minimumHealthyPercent"]) <= 100:
        raise invalid("minimumHealthyPercent must be between 0 and 100.")
    breaker = config.get("deploymentCircuitBreaker")
    if breaker is not None and ("enable" not in breaker or "rollback" not in breaker):
        raise invalid("deploymentCircuitBreaker needs both enable and rollback.")
    return config


def op_create_service(acct: Account, region: str, body: dict) -> dict:
    cluster = acct.cluster(body.get("cluster"))
    name = body.get("serviceName")
    if not name:
        raise invalid("serviceName cannot be empty.")
    controller = (body.get("deploymentController") or {}).get("type", "ECS")
    if controller != "ECS":
        raise invalid(
            f"deployctl's ECS emulator covers the ECS (rolling update) deployment controller only, not {controller}; task sets run on moto"
        )
    if (cluster["clusterName"], name) in acct.services:
        raise invalid("Creation of service was not idempotent.")
    td = acct.task_definition(body.get("taskDefinition", ""))
    if td["status"] != "ACTIVE":
        raise invalid(f"TaskDefinition is inactive: {td['taskDefinitionArn']}")
    desired = int(body.get("desiredCount", 0))
    if desired < 0:
        raise invalid("desiredCount must be at least 0.")
    service = {
        "serviceArn": f"arn:aws:ecs:{region}:{acct.id}:service/{cluster['clusterName']}/{name}",
        "serviceName": name,
        "clusterArn": cluster["clusterArn"],
        "loadBalancers": body.get("loadBalancers", []),
        "serviceRegistries": [],
        "status": "ACTIVE",
        "desiredCount": desired,
        "runningCount": 0,
        "pendingCount": 0,
        "launchType": body.get("launchType", "FARGATE"),
        "taskDefinition": td["taskDefinitionArn"],
        "deploymentConfiguration": deployment_configuration(body.get("deploymentConfiguration")),
        "deployments": [],
        "events": [],
        "createdAt": now(),
        "schedulingStrategy": "REPLICA",
        "deploymentController": {"type": "ECS"},
    }
    start_deployment(acct, service, td["taskDefinitionArn"])
    acct.services[(cluster["clusterName"], name)] = service
    cluster["activeServicesCount"] += 1
    return {"service": public(service)}


def op_update_service(acct: Account, region: str, body: dict) -> dict:
    cluster = acct.cluster(body.get("cluster"))
    service = acct.service(cluster, body.get("service"))
    if service["status"] != "ACTIVE":
        raise EcsError("ServiceNotActiveException", "Service was not ACTIVE.")
    if "deploymentConfiguration" in body:
        service["deploymentConfiguration"] = deployment_configuration(
            body["deploymentConfiguration"], service["deploymentConfiguration"]
        )
    if "desiredCount" in body:
        desired = int(body["desiredCount"])
        if desired < 0:
            raise invalid("desiredCount must be at least 0.")
        service["desiredCount"] = desired
        for deployment in service["deployments"]:
            if deployment["status"] == "PRIMARY":
                deployment["desiredCount"] = desired
    td_arn = service["taskDefinition"]
    if body.get("taskDefinition"):
        td = acct.task_definition(body["taskDefinition"])
        if td["status"] != "ACTIVE":
            raise invalid(f"TaskDefinition is inactive: {td['taskDefinitionArn']}")
        td_arn = td["taskDefinitionArn"]
    if td_arn != service["taskDefinition"] or body.get("forceNewDeployment"):
        start_deployment(acct, service, td_arn)
    return {"service": public(service)}


def op_describe_services(acct: Account, region: str, body: dict) -> dict:
    cluster = acct.cluster(body.get("cluster"))
    names = body.get("services") or []
    if not names or len(names) > 10:
        raise invalid("services must name 1 to 10 services.")
    services, failures = [], []
    for ref in names:
        found = acct.services.get((cluster["clusterName"], ref.split("/")[-1]))
        if found is None:
            failures.append(
                {
                    "arn": f"arn:aws:ecs:{region}:{acct.id}:service/{cluster['clusterName']}/{ref.split('/')[-1]}",
                    "reason": "MISSING",
                }
            )
        else:
            services.append(public(found))
    return {"services": services, "failures": failures}


def public(service: dict) -> dict:
    """The service as ECS shows it (without the emulator's bookkeeping)."""
    return {k: v for k, v in service.items() if not k.startswith("lastCompleted")}


OPERATIONS = {
    "CreateCluster": op_create_cluster,
    "RegisterTaskDefinition": op_register_task_definition,
    "DescribeTaskDefinition": op_describe_task_definition,
    "DeregisterTaskDefinition": op_deregister_task_definition,
    "CreateService": op_create_service,
    "UpdateService": op_update_service,
    "DescribeServices": op_describe_services,
}


# ---- HTTP --------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the body waits
    # for the client's delayed ACK (40 ms on Linux) on every keep-alive
    # request. Real API servers (Go, AWS front ends) set TCP_NODELAY.
    disable_nagle_algorithm = True
    server_version = "deployctl-ecs-emulator"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass

    def account_id(self, body: dict | None = None) -> str:
        return (body or {}).get("account") or self.headers.get("x-moto-account-id") or DEFAULT_ACCOUNT

    def region(self) -> str:
        match = re.search(r"Credential=[^/]+/\d+/([^/]+)/", self.headers.get("Authorization", ""))
        return match.group(1) if match else DEFAULT_REGION

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, payload: dict, content_type: str = "application/x-amz-json-1.1") -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/_emulator/health":
            self.send(200, {"status": "ok"}, "application/json")
        elif self.path == "/_emulator/calls":
            with LOCK:
                calls = list(account(self.account_id()).calls)
            self.send(200, {"calls": calls}, "application/json")
        elif self.path == "/_emulator/state":
            with LOCK:
                acct = account(self.account_id())
                acct.catch_up()
                state = {
                    "services": [public(s) for s in acct.services.values()],
                    "failing": sorted(acct.failing),
                    "stepSeconds": acct.step_seconds,
                }
            self.send(200, state, "application/json")
        else:
            self.send(404, {"message": f"no such path {self.path}"}, "application/json")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        raw = self.read_body()
        try:
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as error:
            self.send(400, {"__type": "SerializationException", "message": str(error)})
            return
        if self.path.startswith("/_emulator/"):
            self.control(self.path, body)
            return
        target = self.headers.get("X-Amz-Target", "")
        name = target.removeprefix(TARGET_PREFIX)
        call = {"operation": name, "status": None}
        with LOCK:
            account(self.account_id()).calls.append(call)
        operation = OPERATIONS.get(name) if target.startswith(TARGET_PREFIX) else None
        if operation is None:
            call["status"] = 400
            self.send(400, {"__type": "UnknownOperationException", "message": f"unknown operation {target!r}"})
            return
        try:
            with LOCK:
                acct = account(self.account_id())
                acct.catch_up()
                result = operation(acct, self.region(), body)
        except EcsError as error:
            call["status"] = error.status
            self.send(error.status, {"__type": error.code, "message": error.message})
            return
        except (KeyError, TypeError, ValueError) as error:
            call["status"] = 400
            self.send(400, {"__type": "InvalidParameterException", "message": f"invalid request: {error}"})
            return
        call["status"] = 200
        self.send(200, result)

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/_emulator/calls":
            with LOCK:
                account(self.account_id()).calls.clear()
            self.send(200, {"status": "ok"}, "application/json")
        else:
            self.send(404, {"message": f"no such path {self.path}"}, "application/json")

    def control(self, path: str, body: dict) -> None:
        with LOCK:
            if path == "/_emulator/reset":
                if body.get("account"):
                    ACCOUNTS.pop(body["account"], None)
                else:
                    ACCOUNTS.clear()
                self.send(200, {"status": "ok"}, "application/json")
                return
            acct = account(self.account_id(body))
            acct.catch_up()
            if path == "/_emulator/config":
                step = body.get("stepSeconds")
                if not isinstance(step, (int, float)) or step < 0:
                    self.send(400, {"message": "stepSeconds must be a number >= 0 (0: steps only by /_emulator/advance)"}, "application/json")
                    return
                acct.step_seconds = float(step)
                acct.last_step = time.monotonic()
                self.send(200, {"stepSeconds": acct.step_seconds}, "application/json")
            elif path == "/_emulator/fail-task-definition":
                ref = body.get("taskDefinition", "")
                try:
                    td = acct.task_definition(ref)
                except EcsError as error:
                    self.send(400, {"message": error.message}, "application/json")
                    return
                short = f"{td['family']}:{td['revision']}"
                if body.get("failing", True):
                    acct.failing.add(short)
                else:
                    acct.failing.discard(short)
                self.send(200, {"failing": sorted(acct.failing)}, "application/json")
            elif path == "/_emulator/advance":
                steps = body.get("steps", 1)
                if not isinstance(steps, int) or not 0 <= steps <= 10_000:
                    self.send(400, {"message": "steps must be an integer from 0 to 10000"}, "application/json")
                    return
                acct.advance(steps)
                self.send(200, {"advanced": steps}, "application/json")
            else:
                self.send(404, {"message": f"no such control endpoint {path}"}, "application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"ecs emulator listening on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
