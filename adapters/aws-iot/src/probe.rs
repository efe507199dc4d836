//! The `fleet` gate: the update's outcome on the devices that reported,
//! over every started wave, and, when the plan bounds it, the share of
//! updated devices whose agent reported an anomaly (crashes, resets or a
//! low health score: the `anomaly` field of the execution's status
//! details, A2). No device reported yet is no data, never a pass.

use std::sync::Arc;

use deployctl_adapter::{BoxFuture, HealthProbe, Measurement};

use crate::backend::ExecutionStatus;
use crate::target::Inner as FleetInner;

/// Updated devices whose status details are read per measurement for the
/// anomaly rate (one `DescribeJobExecution` each).
const ANOMALY_SAMPLE: usize = 50;

pub(crate) struct FleetProbe {
    fleet: Arc<FleetInner>,
    min_success_rate: f64,
    max_anomaly_rate: Option<f64>,
}

impl FleetProbe {
    pub(crate) fn new(
        fleet: Arc<FleetInner>,
        min_success_rate: f64,
        max_anomaly_rate: Option<f64>,
    ) -> FleetProbe {
        FleetProbe {
            fleet,
            min_success_rate,
            max_anomaly_rate,
        }
    }

    async fn measure_once(&self) -> Measurement {
        let progress = match self.fleet.progress().await {
            Ok(progress) => progress,
            Err(error) => {
                return Measurement::Error {
                    detail: error.to_string(),
                };
            }
        };
        let reported = progress.succeeded + progress.failed + progress.timed_out;
        if reported == 0 {
            return Measurement::NoData {
                detail: format!(
                    "no device reported yet ({} dispatched)",
                    progress.dispatched
                ),
            };
        }
        let success = f64::from(progress.succeeded) * 100.0 / f64::from(reported);
        let mut detail = format!(
            "{:.1}% of {reported} devices that reported succeeded (minimum {}%)",
            success, self.min_success_rate
        );
        if success < self.min_success_rate {
            return Measurement::Fail {
                value: Some(success),
                detail,
            };
        }
        if let Some(max) = self.max_anomaly_rate {
            match self.fleet.anomalies(ANOMALY_SAMPLE).await {
                Ok((_, 0)) => {
                    return Measurement::NoData {
                        detail: format!("{detail}; no updated device to read anomalies from"),
                    };
                }
                Ok((anomalous, sampled)) => {
                    let rate = f64::from(anomalous) * 100.0 / f64::from(sampled);
                    detail = format!(
                        "{detail}; {rate:.1}% of {sampled} updated devices report anomalies (maximum {max}%)"
                    );
                    if rate > max {
                        return Measurement::Fail {
                            value: Some(rate),
                            detail,
                        };
                    }
                }
                Err(error) => {
                    return Measurement::Error {
                        detail: error.to_string(),
                    };
                }
            }
        }
        Measurement::Pass {
            value: Some(success),
            detail,
        }
    }
}

impl HealthProbe for FleetProbe {
    fn measure(&self) -> BoxFuture<'_, Measurement> {
        Box::pin(self.measure_once())
    }
}

impl FleetInner {
    /// Of up to `sample` devices that installed the update (newest wave
    /// first), how many report an anomaly.
    pub(crate) async fn anomalies(
        &self,
        sample: usize,
    ) -> Result<(u32, u32), deployctl_adapter::AdapterError> {
        let Some(release) = self.state().attached.clone() else {
            return Ok((0, 0));
        };
        let mut things = Vec::new();
        for index in (0..self.wave_count()).rev() {
            let job = release.wave(index);
            let wanted = sample - things.len();
            for thing in self
                .jobs
                .things_in(&job, &[ExecutionStatus::Succeeded], Some(wanted))
                .await?
            {
                things.push((job.clone(), thing));
                if things.len() >= sample {
                    break;
                }
            }
            if things.len() >= sample {
                break;
            }
        }
        let mut anomalous = 0;
        for (job, thing) in &things {
            let details = self.jobs.status_details(job, thing).await?;
            if details.get("anomaly").is_some_and(|v| v == "true") {
                anomalous += 1;
            }
        }
        Ok((anomalous, things.len() as u32))
    }
}
