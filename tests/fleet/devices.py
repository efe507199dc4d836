#!/usr/bin/env python3
"""A fleet of simulated devices for deployctl's fleet tests (boto3 only).

Each round, every thing in the given thing group asks the IoT Jobs data
plane (iot-jobs-data, SigV4) for its next job, "installs" the version the
job document names and reports SUCCEEDED, or FAILED with a reason when the
version is the bad one for its cohort. A device already on the version
reports SUCCEEDED without installing (a rollback to where it is). What each
device runs is written to the state file after every round, so a test can
check device by device which version it ended on.

    devices.py --iot URL --group NAME --state FILE --stop FILE
               [--installed 4.1.3] [--fail-version 4.2.0 --fail-percent 50 --lucky 1]

Stops when the stop file exists. Deterministic: a device's cohort is the
SHA-256 of its name.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

import boto3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iot", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--installed", default="4.1.3")
    parser.add_argument("--fail-version")
    parser.add_argument("--fail-percent", type=int, default=0)
    # The first N devices to install the bad version are unaffected (so a
    # test can let wave 1 pass and wave 2 fail whatever the run's seed).
    parser.add_argument("--lucky", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    kw = dict(endpoint_url=args.iot, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    control = boto3.client("iot", **kw)
    data = boto3.client("iot-jobs-data", **kw)
    things = control.list_things_in_thing_group(thingGroupName=args.group, maxResults=250)["things"]
    installed = {thing: args.installed for thing in things}
    history: dict[str, list] = {thing: [] for thing in things}
    lucky = args.lucky
    while not os.path.exists(args.stop):
        # Devices join the group while the fleet runs (late joiners).
        for thing in control.list_things_in_thing_group(thingGroupName=args.group, maxResults=250)["things"]:
            if thing not in installed:
                things.append(thing)
                installed[thing] = args.installed
                history[thing] = []
        for thing in things:
            answer = data.start_next_pending_job_execution(thingName=thing)
            execution = answer.get("execution")
            if not execution:
                continue
            document = json.loads(execution["jobDocument"])
            version = document["version"]
            cohort = int(hashlib.sha256(thing.encode()).hexdigest(), 16) % 100
            previous = installed[thing]
            bad = version == args.fail_version and cohort < args.fail_percent
            if bad and lucky > 0:
                lucky -= 1
                bad = False
            if bad:
                status, details = "FAILED", {"reason": "self-test failed after reboot; back on the old slot"}
            else:
                status, details = "SUCCEEDED", {"installed": version}
                installed[thing] = version
            try:
                data.update_job_execution(thingName=thing, jobId=execution["jobId"], status=status, statusDetails=details)
            except data.exceptions.InvalidStateTransitionException:
                # Canceled while installing (the kill switch): the agent
                # abandons the install and stays where it was.
                if status == "SUCCEEDED":
                    installed[thing] = previous
                status = "ABANDONED"
            history[thing].append({"job": execution["jobId"], "version": version, "status": status, "at": time.time()})
        with open(args.state + ".tmp", "w") as out:
            json.dump({"installed": installed, "history": history}, out)
        os.replace(args.state + ".tmp", args.state)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
