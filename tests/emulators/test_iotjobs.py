#!/usr/bin/env python3
"""Tests of iotjobs.py with the real boto3 "iot" and "iot-jobs-data" clients.

Run: /work/main/.venv/bin/python tests/emulators/test_iotjobs.py -v
Each test uses its own account (x-moto-account-id), as the Rust tests do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.request
import uuid

import boto3
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
URL = ""
PROC: subprocess.Popen | None = None
DOC = json.dumps({"operation": "deploy", "version": "1.2.3"})


def setUpModule() -> None:
    global URL, PROC
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    PROC = subprocess.Popen([sys.executable, os.path.join(HERE, "iotjobs.py"), "--port", str(port)])
    URL = f"http://127.0.0.1:{port}"
    deadline = time.time() + 10
    while True:
        try:
            with urllib.request.urlopen(URL + "/_emulator/health", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def tearDownModule() -> None:
    if PROC is not None:
        PROC.kill()
        PROC.wait()


def control(path: str, body: dict, acct: str) -> dict:
    request = urllib.request.Request(
        URL + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "x-moto-account-id": acct},
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def clients(acct: str):
    made = []
    for service in ("iot", "iot-jobs-data"):
        client = boto3.client(
            service, endpoint_url=URL, region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
        )

        def add_header(request, **_kwargs):
            request.headers["x-moto-account-id"] = acct

        client.meta.events.register("before-sign.*.*", add_header)
        made.append(client)
    return made


class IotJobsTest(unittest.TestCase):
    def setUp(self) -> None:
        self.acct = str(100000000000 + uuid.uuid4().int % 899999999999)
        self.iot, self.data = clients(self.acct)

    def advance(self, seconds: float) -> None:
        control("/_emulator/advance", {"seconds": seconds}, self.acct)

    def fleet(self, group: str, count: int) -> tuple[str, list[str]]:
        arn = self.iot.create_thing_group(thingGroupName=group)["thingGroupArn"]
        names = []
        for i in range(count):
            name = f"{group}-dev{i}"
            self.iot.create_thing(thingName=name)
            self.iot.add_thing_to_thing_group(thingGroupName=group, thingName=name)
            names.append(name)
        return arn, names

    def statuses(self, job_id: str) -> dict[str, str]:
        out = {}
        for s in self.iot.list_job_executions_for_job(jobId=job_id)["executionSummaries"]:
            out[s["thingArn"].rpartition("/")[2]] = s["jobExecutionSummary"]["status"]
        return out

    def error_code(self, call, **kwargs) -> tuple[str, int]:
        with self.assertRaises(ClientError) as caught:
            call(**kwargs)
        return caught.exception.response["Error"]["Code"], caught.exception.response["ResponseMetadata"]["HTTPStatusCode"]

    def test_group_expands_to_one_execution_per_thing(self) -> None:
        arn, names = self.fleet("fleet", 3)
        self.assertEqual(sorted(self.iot.list_things_in_thing_group(thingGroupName="fleet")["things"]), names)
        self.iot.create_thing(thingName="solo")
        solo = self.iot.describe_thing(thingName="solo")["thingArn"]
        self.iot.create_job(jobId="j1", targets=[arn, solo, f"arn:aws:iot:us-east-1:{self.acct}:thing/fleet-dev0"], document=DOC)
        self.assertEqual(self.statuses("j1"), {n: "QUEUED" for n in names + ["solo"]})
        job = self.iot.describe_job(jobId="j1")["job"]
        self.assertEqual(job["status"], "IN_PROGRESS")
        self.assertEqual(job["jobProcessDetails"]["numberOfQueuedThings"], 4)
        self.assertEqual(self.iot.get_job_document(jobId="j1")["document"], DOC)
        pending = self.data.get_pending_job_executions(thingName="fleet-dev1")
        self.assertEqual([j["jobId"] for j in pending["queuedJobs"]], ["j1"])
        self.assertEqual(pending["inProgressJobs"], [])
        numbers = {self.iot.describe_job_execution(jobId="j1", thingName=n)["execution"]["executionNumber"] for n in names}
        self.assertEqual(len(numbers), 3)
        # Control-plane ListJobExecutionsForThing shares the path with GetPendingJobExecutions.
        listed = self.iot.list_job_executions_for_thing(thingName="fleet-dev1")["executionSummaries"]
        self.assertEqual([(s["jobId"], s["jobExecutionSummary"]["status"]) for s in listed], [("j1", "QUEUED")])
        # Pagination.
        page = self.iot.list_job_executions_for_job(jobId="j1", maxResults=3)
        self.assertEqual(len(page["executionSummaries"]), 3)
        rest = self.iot.list_job_executions_for_job(jobId="j1", maxResults=3, nextToken=page["nextToken"])
        self.assertEqual(len(rest["executionSummaries"]), 1)
        self.assertNotIn("nextToken", rest)

    def test_device_loop_completes_snapshot_job(self) -> None:
        arn, names = self.fleet("loop", 2)
        self.iot.create_job(jobId="rel", targets=[arn], document=DOC, targetSelection="SNAPSHOT")
        for name in names:
            started = self.data.start_next_pending_job_execution(thingName=name, statusDetails={"step": "download"})
            execution = started["execution"]
            self.assertEqual(execution["status"], "IN_PROGRESS")
            self.assertEqual(json.loads(execution["jobDocument"]), json.loads(DOC))
            self.assertEqual(execution["statusDetails"], {"step": "download"})
            self.assertEqual(execution["versionNumber"], 2)
            # The data plane's timestamps are Long epoch seconds, not timestamps.
            self.assertIsInstance(execution["queuedAt"], int)
            self.assertLess(abs(execution["startedAt"] - time.time()), 5)
            described = self.data.describe_job_execution(thingName=name, jobId="$next", includeJobDocument=True)
            self.assertEqual(described["execution"]["jobId"], "rel")
            self.assertEqual(described["execution"]["jobDocument"], DOC)
            ctrl = self.iot.describe_job_execution(jobId="rel", thingName=name)["execution"]
            self.assertEqual(ctrl["statusDetails"], {"detailsMap": {"step": "download"}})
            self.assertEqual(self.iot.describe_job(jobId="rel")["job"]["status"], "IN_PROGRESS")
            updated = self.data.update_job_execution(
                thingName=name, jobId="rel", status="SUCCEEDED", expectedVersion=2,
                includeJobExecutionState=True, includeJobDocument=True,
            )
            self.assertEqual(updated["executionState"]["status"], "SUCCEEDED")
            self.assertEqual(updated["executionState"]["versionNumber"], 3)
            self.assertEqual(updated["jobDocument"], DOC)
            self.assertEqual(self.data.start_next_pending_job_execution(thingName=name).get("execution"), None)
        job = self.iot.describe_job(jobId="rel")["job"]
        self.assertEqual(job["status"], "COMPLETED")
        self.assertEqual(job["jobProcessDetails"]["numberOfSucceededThings"], 2)
        self.assertIn("completedAt", job)
        self.assertEqual([j["jobId"] for j in self.iot.list_jobs(status="COMPLETED")["jobs"]], ["rel"])
        code = self.error_code(self.data.update_job_execution, thingName=names[0], jobId="rel", status="FAILED")
        self.assertEqual(code, ("InvalidStateTransitionException", 409))

    def test_continuous_job_adds_later_members(self) -> None:
        arn, names = self.fleet("cont", 1)
        self.iot.create_job(jobId="c", targets=[arn], document=DOC, targetSelection="CONTINUOUS")
        self.data.start_next_pending_job_execution(thingName=names[0])
        self.data.update_job_execution(thingName=names[0], jobId="c", status="SUCCEEDED")
        self.assertEqual(self.iot.describe_job(jobId="c")["job"]["status"], "IN_PROGRESS")
        self.iot.create_thing(thingName="late")
        self.iot.add_thing_to_thing_group(thingGroupName="cont", thingName="late")
        self.assertEqual(self.statuses("c"), {names[0]: "SUCCEEDED", "late": "QUEUED"})

    def test_a_dynamic_group_is_its_query_and_a_continuous_job_reaches_later_matches(self) -> None:
        self.iot.create_thing_group(thingGroupName="beta")
        for name, model, channel in [("h2-a", "hub-h2", "stable"), ("h2-b", "hub-h2", "beta"),
                                     ("h1-a", "hub-h1", "stable"), ("h2-c", "hub-h2", "stable")]:
            self.iot.create_thing(thingName=name, thingTypeName=model,
                                  attributePayload={"attributes": {"updateChannel": channel}})
        self.iot.add_thing_to_thing_group(thingGroupName="beta", thingName="h1-a")
        query = "thingTypeName:hub-h2 AND attributes.updateChannel:stable OR thingGroupNames:beta"
        made = self.iot.create_dynamic_thing_group(thingGroupName="q", queryString=query)
        self.assertEqual(made["queryString"], query)
        self.assertEqual(sorted(self.iot.list_things_in_thing_group(thingGroupName="q")["things"]),
                         ["h1-a", "h2-a", "h2-c"])
        described = self.iot.describe_thing_group(thingGroupName="q")
        self.assertEqual((described["queryString"], described["indexName"]), (query, "AWS_Things"))
        code = self.error_code(self.iot.create_dynamic_thing_group, thingGroupName="q", queryString=query)
        self.assertEqual(code, ("ResourceAlreadyExistsException", 409))
        code = self.error_code(self.iot.create_dynamic_thing_group, thingGroupName="bad",
                               queryString="thingTypeName:hub-h2 AND (connectivity.connected:true)")
        self.assertEqual(code, ("InvalidQueryException", 400))
        code = self.error_code(self.iot.add_thing_to_thing_group, thingGroupName="q", thingName="h2-b")
        self.assertEqual(code[1], 400)
        self.iot.create_job(jobId="dyn", targets=[made["thingGroupArn"]], document=DOC, targetSelection="CONTINUOUS")
        self.assertEqual(self.statuses("dyn"), {"h1-a": "QUEUED", "h2-a": "QUEUED", "h2-c": "QUEUED"})
        # A hub that starts matching later (made, or added to `beta`) is sent the job.
        self.iot.create_thing(thingName="h2-d", thingTypeName="hub-h2",
                              attributePayload={"attributes": {"updateChannel": "stable"}})
        self.iot.add_thing_to_thing_group(thingGroupName="beta", thingName="h2-b")
        self.assertEqual(self.statuses("dyn")["h2-d"], "QUEUED")
        self.assertEqual(self.statuses("dyn")["h2-b"], "QUEUED")

    def test_failures_trip_abort_criteria(self) -> None:
        arn, names = self.fleet("abort", 5)
        self.iot.create_job(
            jobId="bad", targets=[arn], document=DOC,
            abortConfig={"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50, "minNumberOfExecutedThings": 2}]},
        )
        # One failure out of one executed thing: below the minimum, the job runs on.
        self.data.start_next_pending_job_execution(thingName=names[0])
        self.data.update_job_execution(thingName=names[0], jobId="bad", status="FAILED")
        self.assertEqual(self.iot.describe_job(jobId="bad")["job"]["status"], "IN_PROGRESS")
        self.data.start_next_pending_job_execution(thingName=names[1])  # stays IN_PROGRESS
        self.data.start_next_pending_job_execution(thingName=names[2])
        self.data.update_job_execution(thingName=names[2], jobId="bad", status="FAILED")
        job = self.iot.describe_job(jobId="bad")["job"]
        self.assertEqual(job["status"], "CANCELED")
        self.assertEqual(job["reasonCode"], "FAILURE_THRESHOLD_EXCEEDED")
        self.assertEqual(self.statuses("bad"), {
            names[0]: "FAILED", names[1]: "IN_PROGRESS", names[2]: "FAILED", names[3]: "CANCELED", names[4]: "CANCELED",
        })
        self.assertEqual(self.data.get_pending_job_executions(thingName=names[3])["queuedJobs"], [])

    def test_cancel_job_without_and_with_force(self) -> None:
        arn, names = self.fleet("cancel", 3)
        for job_id in ("soft", "hard"):
            self.iot.create_job(jobId=job_id, targets=[arn], document=DOC)
            self.data.start_next_pending_job_execution(thingName=names[0])
        # names[0] runs "soft" (the oldest); the second StartNext returns it again, "hard" stays QUEUED.
        self.iot.cancel_job(jobId="soft", reasonCode="OPERATOR", comment="stop")
        job = self.iot.describe_job(jobId="soft")["job"]
        self.assertEqual((job["status"], job["forceCanceled"], job["reasonCode"], job["comment"]), ("CANCELED", False, "OPERATOR", "stop"))
        self.assertEqual(self.statuses("soft"), {names[0]: "IN_PROGRESS", names[1]: "CANCELED", names[2]: "CANCELED"})
        # The in-progress execution may still finish.
        self.data.update_job_execution(thingName=names[0], jobId="soft", status="SUCCEEDED")
        self.assertEqual(self.statuses("soft")[names[0]], "SUCCEEDED")
        self.data.start_next_pending_job_execution(thingName=names[0])
        self.assertEqual(self.statuses("hard")[names[0]], "IN_PROGRESS")
        code = self.error_code(self.iot.delete_job, jobId="hard")
        self.assertEqual(code, ("InvalidStateTransitionException", 409))
        self.iot.cancel_job(jobId="hard", force=True)
        job = self.iot.describe_job(jobId="hard")["job"]
        self.assertEqual((job["status"], job["forceCanceled"]), ("CANCELED", True))
        self.assertEqual(set(self.statuses("hard").values()), {"CANCELED"})
        self.assertTrue(self.iot.describe_job_execution(jobId="hard", thingName=names[0])["execution"]["forceCanceled"])
        code = self.error_code(self.data.update_job_execution, thingName=names[0], jobId="hard", status="SUCCEEDED")
        self.assertEqual(code, ("InvalidStateTransitionException", 409))
        self.iot.delete_job(jobId="hard")
        self.assertEqual(self.error_code(self.iot.describe_job, jobId="hard"), ("ResourceNotFoundException", 404))

    def test_cancel_job_execution(self) -> None:
        arn, names = self.fleet("cje", 2)
        self.iot.create_job(jobId="j", targets=[arn], document=DOC)
        self.iot.cancel_job_execution(jobId="j", thingName=names[0])
        self.data.start_next_pending_job_execution(thingName=names[1])
        code = self.error_code(self.iot.cancel_job_execution, jobId="j", thingName=names[1])
        self.assertEqual(code, ("InvalidStateTransitionException", 409))
        code = self.error_code(self.iot.cancel_job_execution, jobId="j", thingName=names[1], force=True, expectedVersion=1)
        self.assertEqual(code, ("VersionConflictException", 409))
        self.iot.cancel_job_execution(jobId="j", thingName=names[1], force=True, expectedVersion=2)
        self.assertEqual(self.statuses("j"), {names[0]: "CANCELED", names[1]: "CANCELED"})
        self.assertEqual(self.iot.describe_job(jobId="j")["job"]["status"], "COMPLETED")

    def test_expected_version_conflict(self) -> None:
        self.iot.create_thing(thingName="v")
        arn = self.iot.describe_thing(thingName="v")["thingArn"]
        self.iot.create_job(jobId="ver", targets=[arn], document=DOC)
        version = self.data.start_next_pending_job_execution(thingName="v")["execution"]["versionNumber"]
        self.data.update_job_execution(thingName="v", jobId="ver", status="IN_PROGRESS", statusDetails={"p": "50"}, expectedVersion=version)
        code = self.error_code(self.data.update_job_execution, thingName="v", jobId="ver", status="SUCCEEDED", expectedVersion=version)
        self.assertEqual(code, ("VersionConflictException", 409))
        execution = self.data.describe_job_execution(thingName="v", jobId="ver")["execution"]
        self.assertEqual((execution["status"], execution["versionNumber"], execution["statusDetails"]), ("IN_PROGRESS", version + 1, {"p": "50"}))
        self.assertNotIn("jobDocument", execution)

    def test_rollout_rate_holds_executions_back(self) -> None:
        arn, names = self.fleet("rate", 5)
        self.iot.create_job(jobId="slow", targets=[arn], document=DOC, jobExecutionsRolloutConfig={"maximumPerMinute": 2})
        self.assertEqual(len(self.statuses("slow")), 2)
        self.assertEqual(self.iot.describe_job(jobId="slow")["job"]["jobExecutionsRolloutConfig"]["maximumPerMinute"], 2)
        released = [n for n in names if self.data.get_pending_job_executions(thingName=n)["queuedJobs"]]
        self.assertEqual(released, names[:2])
        self.assertNotIn("execution", self.data.start_next_pending_job_execution(thingName=names[4]))
        self.advance(59)
        self.assertEqual(len(self.statuses("slow")), 2)
        self.advance(1)
        self.assertEqual(len(self.statuses("slow")), 4)
        self.advance(60)
        self.assertEqual(len(self.statuses("slow")), 5)
        self.assertEqual(self.data.start_next_pending_job_execution(thingName=names[4])["execution"]["jobId"], "slow")

    def test_in_progress_timeout(self) -> None:
        arn, names = self.fleet("slowdev", 2)
        self.iot.create_job(
            jobId="t", targets=[arn], document=DOC, timeoutConfig={"inProgressTimeoutInMinutes": 5},
            abortConfig={"criteriaList": [{"failureType": "TIMED_OUT", "action": "CANCEL", "thresholdPercentage": 100, "minNumberOfExecutedThings": 2}]},
        )
        started = self.data.start_next_pending_job_execution(thingName=names[0])["execution"]
        self.assertEqual(started["approximateSecondsBeforeTimedOut"], 300)
        self.data.start_next_pending_job_execution(thingName=names[1], stepTimeoutInMinutes=1)
        self.advance(61)
        self.assertEqual(self.statuses("t"), {names[0]: "IN_PROGRESS", names[1]: "TIMED_OUT"})
        self.advance(240)
        self.assertEqual(self.statuses("t"), {names[0]: "TIMED_OUT", names[1]: "TIMED_OUT"})
        job = self.iot.describe_job(jobId="t")["job"]
        self.assertEqual(job["jobProcessDetails"]["numberOfTimedOutThings"], 2)
        self.assertEqual(job["status"], "CANCELED")  # 100% TIMED_OUT over 2 things trips the criterion.
        code = self.error_code(self.data.update_job_execution, thingName=names[0], jobId="t", status="SUCCEEDED")
        self.assertEqual(code, ("InvalidStateTransitionException", 409))

    def test_accounts_are_isolated(self) -> None:
        arn, _ = self.fleet("iso", 1)
        self.iot.create_job(jobId="mine", targets=[arn], document=DOC)
        other_iot, other_data = clients("999999999999" if self.acct != "999999999999" else "888888888888")
        self.assertEqual(self.error_code(other_iot.describe_job, jobId="mine"), ("ResourceNotFoundException", 404))
        self.assertEqual(self.error_code(other_data.get_pending_job_executions, thingName="iso-dev0"), ("ResourceNotFoundException", 404))
        self.assertNotIn("mine", [j["jobId"] for j in other_iot.list_jobs()["jobs"]])
        self.assertEqual([j["jobId"] for j in self.iot.list_jobs()["jobs"]], ["mine"])

    def test_error_codes(self) -> None:
        arn, _ = self.fleet("err", 1)
        self.iot.create_job(jobId="dup", targets=[arn], document=DOC)
        with self.assertRaises(ClientError) as caught:
            self.iot.create_job(jobId="dup", targets=[arn], document=DOC)
        self.assertEqual(caught.exception.response["Error"]["Code"], "ResourceAlreadyExistsException")
        self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 409)
        self.assertEqual(caught.exception.response["resourceId"], "dup")
        self.assertEqual(self.error_code(self.iot.create_job, jobId="nodoc", targets=[arn]), ("InvalidRequestException", 400))
        missing = f"arn:aws:iot:us-east-1:{self.acct}:thinggroup/none"
        self.assertEqual(self.error_code(self.iot.create_job, jobId="x", targets=[missing], document=DOC), ("ResourceNotFoundException", 404))
        self.assertEqual(self.error_code(self.iot.get_job_document, jobId="nope"), ("ResourceNotFoundException", 404))
        self.assertEqual(self.error_code(self.data.describe_job_execution, thingName="err-dev0", jobId="nope"), ("ResourceNotFoundException", 404))
        self.assertEqual(self.error_code(self.data.update_job_execution, thingName="err-dev0", jobId="dup", status="QUEUED"), ("InvalidRequestException", 400))
        self.assertEqual(self.error_code(self.iot.cancel_job, jobId="nope"), ("ResourceNotFoundException", 404))
        self.assertEqual(
            self.error_code(self.iot.add_thing_to_thing_group, thingGroupName="err", thingName="ghost"),
            ("ResourceNotFoundException", 404),
        )


if __name__ == "__main__":
    unittest.main()
