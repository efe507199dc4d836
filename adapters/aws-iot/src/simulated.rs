//! [`SimulatedFleet`]: an in-process IoT Jobs for scale runs (feature
//! `simulated`), so a fleet target drives a million devices without a
//! million AWS calls: the same [`FleetJobs`] operations, with IoT Jobs'
//! execution states and counts, over compact state (one byte per device
//! and job, device names derived from their index).
//!
//! Devices are played by the caller: [`SimulatedFleet::notified`] lists
//! queued executions (what IoT would notify devices of) and
//! [`SimulatedFleet::report`] is a device's `UpdateJobExecution`, refused
//! as IoT refuses it once the execution was canceled. The fleet writes a
//! timeline of what happened to its jobs, with instants, for the
//! benchmark to measure decision and kill latencies from. Not simulated:
//! the rollout rate (`maximumPerMinute`), device timeouts and fleet-index
//! queries; the AWS behaviour of all of them is tested against the
//! emulator, not here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use deployctl_adapter::{AdapterError, BoxFuture};

use crate::backend::{Changed, ExecutionStatus, FleetJobs, JobCounts, JobSpec};

const NONE: u8 = 0;
const QUEUED: u8 = 1;
const IN_PROGRESS: u8 = 2;
const SUCCEEDED: u8 = 3;
const FAILED: u8 = 4;
const CANCELED: u8 = 5;
/// Set beside a terminal state: the device reported an anomaly (A2).
const ANOMALY: u8 = 0x80;

/// What a device reports on its execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    InProgress,
    Succeeded { anomaly: bool },
    Failed,
}

/// Why a device's report was refused (IoT's `InvalidStateTransition` or
/// `ResourceNotFound`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What happened to a job, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happened {
    GroupMade,
    JobMade {
        executions: u32,
    },
    /// Force-canceled with this many executions queued and in progress.
    JobCanceled {
        queued: u32,
        in_progress: u32,
    },
    /// The job's abort criteria were met.
    JobAborted,
    /// Every execution reached a terminal state.
    JobCompleted,
}

#[derive(Debug, Clone)]
pub struct Mark {
    pub at: Instant,
    pub name: String,
    pub what: Happened,
}

/// A fleet of `size` devices named `{prefix}{index:07}`, all in one
/// thing group, every device the hardware model `model`.
pub struct SimulatedFleet {
    prefix: String,
    size: u32,
    model: String,
    world: Mutex<World>,
    timeline: Mutex<Vec<Mark>>,
    accepted: AtomicU64,
    refused: AtomicU64,
}

struct World {
    groups: HashMap<String, Group>,
    jobs: HashMap<String, Job>,
    /// Jobs in creation order, for notifying devices.
    order: Vec<String>,
}

struct Group {
    arn: String,
    members: Members,
}

enum Members {
    /// The fleet's own group: every device.
    All,
    Listed {
        devices: Vec<u32>,
        present: Vec<u64>,
    },
}

struct Job {
    status: &'static str,
    continuous: bool,
    groups: Vec<String>,
    /// One byte per device of the fleet: its execution's state.
    states: Vec<u8>,
    counts: JobCounts,
    abort: Option<(f64, u32)>,
    /// Devices below this index have no queued execution.
    notify_from: usize,
}

impl Job {
    fn outstanding(&self) -> u32 {
        self.counts.queued + self.counts.in_progress
    }

    fn executed(&self) -> u32 {
        self.counts.succeeded + self.counts.failed + self.counts.timed_out
    }

    /// Cancels the job: its queued executions, and with `force` those in
    /// progress too (IoT's `CancelJob --force`; an abort's CANCEL action
    /// lets them finish). How many were canceled: (queued, in progress).
    fn cancel(&mut self, force: bool) -> (u32, u32) {
        self.status = "CANCELED";
        for state in &mut self.states {
            if *state == QUEUED || (force && *state == IN_PROGRESS) {
                *state = CANCELED;
            }
        }
        let canceled = (
            self.counts.queued,
            if force { self.counts.in_progress } else { 0 },
        );
        self.counts.failed += canceled.0 + canceled.1;
        self.counts.queued = 0;
        self.counts.in_progress -= canceled.1;
        canceled
    }

    fn queue(&mut self, device: u32) {
        let state = &mut self.states[device as usize];
        if *state == NONE {
            *state = QUEUED;
            self.counts.queued += 1;
            self.notify_from = self.notify_from.min(device as usize);
        }
    }
}

fn arn(name: &str) -> String {
    format!("arn:aws:iot:us-east-1:000000000000:thinggroup/{name}")
}

impl SimulatedFleet {
    /// A fleet whose devices are all in thing group `group`.
    pub fn new(group: &str, prefix: &str, size: u32, model: &str) -> SimulatedFleet {
        let mut groups = HashMap::new();
        groups.insert(
            group.to_owned(),
            Group {
                arn: arn(group),
                members: Members::All,
            },
        );
        SimulatedFleet {
            prefix: prefix.to_owned(),
            size,
            model: model.to_owned(),
            world: Mutex::new(World {
                groups,
                jobs: HashMap::new(),
                order: Vec::new(),
            }),
            timeline: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mark(&self, name: &str, what: Happened) {
        self.timeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Mark {
                at: Instant::now(),
                name: name.to_owned(),
                what,
            });
    }

    /// What happened to the fleet's groups and jobs so far, in order.
    pub fn timeline(&self) -> Vec<Mark> {
        self.timeline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Device reports accepted and refused so far.
    pub fn reports(&self) -> (u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// Device `index`'s thing name.
    pub fn thing(&self, index: u32) -> String {
        format!("{}{index:07}", self.prefix)
    }

    fn index(&self, thing: &str) -> Option<u32> {
        let digits = thing.strip_prefix(&self.prefix)?;
        let index: u32 = digits.parse().ok()?;
        (index < self.size && digits.len() == 7).then_some(index)
    }

    /// Up to `max` queued executions of running jobs, oldest job first:
    /// what IoT would notify devices of. Listing changes nothing.
    pub fn notified(&self, max: usize) -> Vec<(String, String)> {
        let mut world = self.world();
        let World { jobs, order, .. } = &mut *world;
        let mut found = Vec::new();
        for job_id in order.iter() {
            let Some(job) = jobs.get_mut(job_id) else {
                continue;
            };
            if job.status != "IN_PROGRESS" || job.counts.queued == 0 {
                continue;
            }
            let mut first_queued = None;
            let mut index = job.notify_from;
            while index < job.states.len() && found.len() < max {
                if job.states[index] == QUEUED {
                    first_queued.get_or_insert(index);
                    found.push((job_id.clone(), self.thing(index as u32)));
                }
                index += 1;
            }
            // Nothing before the first queued execution found is queued;
            // what was listed stays queued until its device reports.
            if let Some(first) = first_queued {
                job.notify_from = first;
            }
            if found.len() >= max {
                break;
            }
        }
        found
    }

    /// A device's `UpdateJobExecution`: refused when there is no such
    /// execution, the job is no longer running or the transition is not
    /// one IoT allows (a canceled execution stays canceled).
    pub fn report(&self, job_id: &str, thing: &str, report: Report) -> Result<(), Refused> {
        let outcome = self.apply_report(job_id, thing, report);
        match &outcome {
            Ok(()) => self.accepted.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.refused.fetch_add(1, Ordering::Relaxed),
        };
        outcome
    }

    fn apply_report(&self, job_id: &str, thing: &str, report: Report) -> Result<(), Refused> {
        let device = self
            .index(thing)
            .ok_or_else(|| Refused(format!("no thing {thing}")))?;
        let mut world = self.world();
        let job = world
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| Refused(format!("no job {job_id}")))?;
        let state = job.states[device as usize] & !ANOMALY;
        let next = match (state, report) {
            (QUEUED, Report::InProgress) => IN_PROGRESS,
            (QUEUED | IN_PROGRESS, Report::Succeeded { anomaly: false }) => SUCCEEDED,
            (QUEUED | IN_PROGRESS, Report::Succeeded { anomaly: true }) => SUCCEEDED | ANOMALY,
            (QUEUED | IN_PROGRESS, Report::Failed) => FAILED,
            _ => {
                return Err(Refused(format!(
                    "{thing}'s execution of {job_id} cannot go from state {state} to {report:?}"
                )));
            }
        };
        job.states[device as usize] = next;
        match state {
            QUEUED => job.counts.queued -= 1,
            _ => job.counts.in_progress -= 1,
        }
        match next & !ANOMALY {
            IN_PROGRESS => job.counts.in_progress += 1,
            SUCCEEDED => job.counts.succeeded += 1,
            _ => job.counts.failed += 1,
        }
        let mut happened = None;
        if let Some((percent, min)) = job.abort
            && job.status == "IN_PROGRESS"
            && job.executed() >= min
            && f64::from(job.counts.failed) * 100.0 / f64::from(job.executed()) > percent
        {
            job.cancel(false);
            happened = Some(Happened::JobAborted);
        } else if job.status == "IN_PROGRESS" && !job.continuous && job.outstanding() == 0 {
            job.status = "COMPLETED";
            happened = Some(Happened::JobCompleted);
        }
        drop(world);
        if let Some(happened) = happened {
            self.mark(job_id, happened);
        }
        Ok(())
    }

    fn members_of(&self, group: &Group) -> Vec<String> {
        match &group.members {
            Members::All => (0..self.size).map(|i| self.thing(i)).collect(),
            Members::Listed { devices, .. } => devices.iter().map(|i| self.thing(*i)).collect(),
        }
    }
}

fn not_found(what: String) -> AdapterError {
    AdapterError::NotFound { what }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl FleetJobs for SimulatedFleet {
    fn group_arn<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<String, AdapterError>> {
        let world = self.world();
        ready(
            world
                .groups
                .get(group)
                .map(|g| g.arn.clone())
                .ok_or_else(|| not_found(format!("thing group {group}"))),
        )
    }

    fn members<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Vec<String>, AdapterError>> {
        let world = self.world();
        ready(
            world
                .groups
                .get(group)
                .map(|g| self.members_of(g))
                .ok_or_else(|| not_found(format!("thing group {group}"))),
        )
    }

    fn thing_type<'a>(
        &'a self,
        thing: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AdapterError>> {
        ready(
            self.index(thing)
                .map(|_| Some(self.model.clone()))
                .ok_or_else(|| not_found(format!("thing {thing}"))),
        )
    }

    fn group_exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, AdapterError>> {
        ready(Ok(self.world().groups.contains_key(name)))
    }

    fn ensure_group<'a>(
        &'a self,
        name: &'a str,
        _description: &'a str,
    ) -> BoxFuture<'a, Result<(String, Option<String>), AdapterError>> {
        let mut world = self.world();
        if let Some(group) = world.groups.get(name) {
            return ready(Ok((group.arn.clone(), None)));
        }
        let group = Group {
            arn: arn(name),
            members: Members::Listed {
                devices: Vec::new(),
                present: vec![0; (self.size as usize).div_ceil(64)],
            },
        };
        let made = group.arn.clone();
        world.groups.insert(name.to_owned(), group);
        drop(world);
        self.mark(name, Happened::GroupMade);
        ready(Ok((made, Some(format!("sim-create-{name}")))))
    }

    fn ensure_query_group<'a>(
        &'a self,
        name: &'a str,
        query: &'a str,
        _description: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AdapterError>> {
        // The in-process fleet has no fleet index: a plan selecting by
        // query is run against the emulator or AWS, never here.
        ready(Err(AdapterError::Rejected {
            message: format!(
                "the simulated fleet has no fleet index (dynamic group {name}, query {query:?}): select its devices by thing group"
            ),
            request_id: None,
        }))
    }

    fn add_things<'a>(
        &'a self,
        group: &'a str,
        things: &'a [String],
    ) -> BoxFuture<'a, Result<usize, AdapterError>> {
        let mut world = self.world();
        let World { groups, jobs, .. } = &mut *world;
        let Some(Group {
            members: Members::Listed { devices, present },
            ..
        }) = groups.get_mut(group)
        else {
            return ready(Err(not_found(format!("static thing group {group}"))));
        };
        let mut added = Vec::new();
        for thing in things {
            let Some(index) = self.index(thing) else {
                return ready(Err(not_found(format!("thing {thing}"))));
            };
            let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
            if present[word] & bit == 0 {
                present[word] |= bit;
                devices.push(index);
                added.push(index);
            }
        }
        // A continuous job on the group reaches its new members.
        for job in jobs.values_mut() {
            if job.continuous
                && job.status == "IN_PROGRESS"
                && job.groups.iter().any(|g| g == group)
            {
                for index in &added {
                    job.queue(*index);
                }
            }
        }
        ready(Ok(things.len()))
    }

    fn create_job<'a>(
        &'a self,
        spec: &'a JobSpec<'a>,
    ) -> BoxFuture<'a, Result<Changed, AdapterError>> {
        let mut world = self.world();
        if world.jobs.contains_key(spec.job_id) {
            return ready(Ok((false, None)));
        }
        let mut job = Job {
            status: "IN_PROGRESS",
            continuous: spec.continuous,
            groups: Vec::new(),
            states: vec![NONE; self.size as usize],
            counts: JobCounts::default(),
            abort: spec.abort,
            notify_from: 0,
        };
        for target in spec.targets {
            let name = target.rsplit('/').next().unwrap_or(target);
            let Some(group) = world.groups.get(name) else {
                return ready(Err(not_found(format!("thing group {target}"))));
            };
            match &group.members {
                Members::All => (0..self.size).for_each(|i| job.queue(i)),
                Members::Listed { devices, .. } => devices.iter().for_each(|i| job.queue(*i)),
            }
            job.groups.push(name.to_owned());
        }
        let executions = job.counts.queued;
        world.jobs.insert(spec.job_id.to_owned(), job);
        world.order.push(spec.job_id.to_owned());
        drop(world);
        self.mark(spec.job_id, Happened::JobMade { executions });
        ready(Ok((true, Some(format!("sim-job-{}", spec.job_id)))))
    }

    fn job_counts<'a>(
        &'a self,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobCounts>, AdapterError>> {
        let world = self.world();
        ready(Ok(world.jobs.get(job_id).map(|job| JobCounts {
            status: job.status.into(),
            ..job.counts.clone()
        })))
    }

    fn cancel_job<'a>(
        &'a self,
        job_id: &'a str,
        _reason: &'a str,
    ) -> BoxFuture<'a, Result<Changed, AdapterError>> {
        let mut world = self.world();
        let Some(job) = world.jobs.get_mut(job_id) else {
            return ready(Ok((false, None)));
        };
        if job.status != "IN_PROGRESS" {
            return ready(Ok((false, None)));
        }
        let (queued, in_progress) = job.cancel(true);
        drop(world);
        self.mark(
            job_id,
            Happened::JobCanceled {
                queued,
                in_progress,
            },
        );
        ready(Ok((true, Some(format!("sim-cancel-{job_id}")))))
    }

    fn things_in<'a>(
        &'a self,
        job_id: &'a str,
        statuses: &'a [ExecutionStatus],
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<String>, AdapterError>> {
        let world = self.world();
        let Some(job) = world.jobs.get(job_id) else {
            return ready(Ok(Vec::new()));
        };
        let limit = limit.unwrap_or(usize::MAX);
        let mut things = Vec::new();
        for status in statuses {
            let wanted = match status {
                ExecutionStatus::InProgress => IN_PROGRESS,
                ExecutionStatus::Succeeded => SUCCEEDED,
            };
            for (index, state) in job.states.iter().enumerate() {
                if things.len() >= limit {
                    return ready(Ok(things));
                }
                if state & !ANOMALY == wanted {
                    things.push(self.thing(index as u32));
                }
            }
        }
        ready(Ok(things))
    }

    fn status_details<'a>(
        &'a self,
        job_id: &'a str,
        thing: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, String>, AdapterError>> {
        let world = self.world();
        let state = self
            .index(thing)
            .and_then(|index| Some(world.jobs.get(job_id)?.states[index as usize]));
        ready(match state {
            None | Some(NONE) => Err(not_found(format!("{thing}'s execution of {job_id}"))),
            Some(state) => {
                let mut details = HashMap::new();
                if state & ANOMALY != 0 {
                    details.insert("anomaly".to_owned(), "true".to_owned());
                }
                Ok(details)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
            .block_on(future)
    }

    fn spec<'a>(job_id: &'a str, targets: &'a [String]) -> JobSpec<'a> {
        JobSpec {
            job_id,
            targets,
            continuous: false,
            document: "{}",
            description: String::new(),
            download_role: None,
            max_per_minute: 1000,
            abort: Some((10.0, 10)),
            timeout_minutes: None,
        }
    }

    #[test]
    fn a_wave_job_runs_its_group_to_completion_and_counts_as_iot_does() {
        let fleet = SimulatedFleet::new("all", "d-", 100, "m");
        block_on(async {
            let (arn, made) = fleet.ensure_group("w1", "").await.unwrap();
            assert!(made.is_some());
            let things: Vec<String> = (0..20).map(|i| fleet.thing(i * 5)).collect();
            fleet.add_things("w1", &things).await.unwrap();
            fleet.add_things("w1", &things[..3]).await.unwrap();
            assert_eq!(fleet.members("w1").await.unwrap().len(), 20);
            assert!(
                fleet
                    .create_job(&spec("j1", std::slice::from_ref(&arn)))
                    .await
                    .unwrap()
                    .0
            );
            assert!(!fleet.create_job(&spec("j1", &[arn])).await.unwrap().0);
            let notified = fleet.notified(1000);
            assert_eq!(notified.len(), 20);
            for (i, (job, thing)) in notified.iter().enumerate() {
                fleet.report(job, thing, Report::InProgress).unwrap();
                let outcome = if i == 0 {
                    Report::Failed
                } else {
                    Report::Succeeded { anomaly: i == 1 }
                };
                fleet.report(job, thing, outcome).unwrap();
            }
            let counts = fleet.job_counts("j1").await.unwrap().unwrap();
            assert_eq!(
                (counts.status.as_str(), counts.succeeded, counts.failed),
                ("COMPLETED", 19, 1)
            );
            let anomalous = fleet.status_details("j1", &notified[1].1).await.unwrap();
            assert_eq!(anomalous.get("anomaly").map(String::as_str), Some("true"));
            assert_eq!(
                fleet
                    .things_in("j1", &[ExecutionStatus::Succeeded], Some(5))
                    .await
                    .unwrap()
                    .len(),
                5
            );
        });
        assert!(
            fleet
                .timeline()
                .iter()
                .any(|m| m.what == Happened::JobCompleted)
        );
    }

    #[test]
    fn a_canceled_execution_refuses_the_device_and_failures_abort() {
        let fleet = SimulatedFleet::new("all", "d-", 50, "m");
        block_on(async {
            let arn = fleet.group_arn("all").await.unwrap();
            fleet
                .create_job(&spec("j1", std::slice::from_ref(&arn)))
                .await
                .unwrap();
            let (job, thing) = fleet.notified(1).remove(0);
            fleet.report(&job, &thing, Report::InProgress).unwrap();
            assert!(fleet.cancel_job("j1", "kill").await.unwrap().0);
            assert!(fleet.report(&job, &thing, Report::Failed).is_err());
            assert!(fleet.notified(10).is_empty());
            assert_eq!(fleet.reports(), (1, 1));

            fleet.create_job(&spec("j2", &[arn])).await.unwrap();
            for (job, thing) in fleet.notified(10) {
                fleet.report(&job, &thing, Report::Failed).unwrap();
            }
            let counts = fleet.job_counts("j2").await.unwrap().unwrap();
            assert_eq!((counts.status.as_str(), counts.queued), ("CANCELED", 0));
        });
    }
}
