//! The `fleet` gate: the update's outcome on the devices that reported,
//! over every started wave, and, when the plan bounds it, the share of
//! updated devices whose agent reported an anomaly (crashes, resets or a
//! low health score: the `anomaly` field of the execution's status
//! details, A2). No device reported yet is no data, never a pass.
//!
//! Anomalies are read device by device (one `DescribeJobExecution`
//! each), so on a large fleet they are a sample, grown across
//! measurements: a terminal execution's details never change, so each
//! device is read once. A sampled rate over the bound fails the gate only
//! when the whole population was read or the sample is large enough to
//! be sure (the 95 % Wilson lower bound is over it); until then it is
//! no data, and the next measurement reads more. One anomalous device
//! among the first 50 of a million is not a failed release.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use deployctl_adapter::{BoxFuture, HealthProbe, Measurement};

use crate::backend::ExecutionStatus;
use crate::target::Inner as FleetInner;

/// Updated devices whose status details are read per measurement for the
/// anomaly rate (one `DescribeJobExecution` each).
const ANOMALY_READS: usize = 50;

/// The most devices of one wave whose details are read: enough to tell
/// a rate from a bound a fraction of a percent away, few enough that
/// listing them stays a handful of pages.
const WAVE_SAMPLE_CAP: usize = 1000;

/// One-sided 95 % normal quantile, for the Wilson lower bound.
const Z: f64 = 1.645;

/// The devices whose anomaly field was read, for the attached release.
#[derive(Debug, Default)]
pub(crate) struct AnomalySample {
    read: BTreeMap<u32, HashSet<String>>,
    anomalous: u32,
}

impl AnomalySample {
    fn read_count(&self) -> u32 {
        self.read.values().map(|wave| wave.len() as u32).sum()
    }
}

/// The Wilson score interval's lower bound, in percent, of `k` in `n`.
fn wilson_lower(k: u32, n: u32) -> f64 {
    let (k, n) = (f64::from(k), f64::from(n));
    let p = k / n;
    let z2 = Z * Z;
    let center = p + z2 / (2.0 * n);
    let margin = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - margin) / (1.0 + z2 / n)).max(0.0) * 100.0
}

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
            let (anomalous, sampled) = match self.fleet.anomalies(ANOMALY_READS).await {
                Ok(sample) => sample,
                Err(error) => {
                    return Measurement::Error {
                        detail: error.to_string(),
                    };
                }
            };
            if sampled == 0 {
                return Measurement::NoData {
                    detail: format!("{detail}; no updated device to read anomalies from"),
                };
            }
            let rate = f64::from(anomalous) * 100.0 / f64::from(sampled);
            let whole = sampled >= progress.succeeded;
            detail = if whole {
                format!(
                    "{detail}; {rate:.1}% of {sampled} updated devices report anomalies (maximum {max}%)"
                )
            } else {
                format!(
                    "{detail}; {rate:.1}% of {sampled} sampled of {} updated devices report anomalies (maximum {max}%)",
                    progress.succeeded
                )
            };
            if rate > max {
                let lower = wilson_lower(anomalous, sampled);
                if whole || lower > max {
                    return Measurement::Fail {
                        value: Some(rate),
                        detail,
                    };
                }
                return Measurement::NoData {
                    detail: format!(
                        "{detail}: not conclusive yet (95% lower bound {lower:.2}%), more devices are read next"
                    ),
                };
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
    /// Reads the anomaly field of up to `reads` updated devices not read
    /// before (newest wave first, at most [`WAVE_SAMPLE_CAP`] a wave);
    /// how many of all the devices read so far report an anomaly, of how
    /// many.
    pub(crate) async fn anomalies(
        &self,
        reads: usize,
    ) -> Result<(u32, u32), deployctl_adapter::AdapterError> {
        let Some(release) = self.state().attached.clone() else {
            return Ok((0, 0));
        };
        let mut budget = reads;
        for index in (0..self.wave_count()).rev() {
            if budget == 0 {
                break;
            }
            let already = self
                .state()
                .anomalies
                .read
                .get(&index)
                .cloned()
                .unwrap_or_default();
            let room = WAVE_SAMPLE_CAP.saturating_sub(already.len()).min(budget);
            if room == 0 {
                continue;
            }
            // Listing order is not promised to be stable as devices finish,
            // so the devices read are skipped by name, not by position.
            let job = release.wave(index);
            let listed = self
                .jobs
                .things_in(
                    &job,
                    &[ExecutionStatus::Succeeded],
                    Some(already.len() + room),
                )
                .await?;
            let fresh: Vec<String> = listed
                .into_iter()
                .filter(|thing| !already.contains(thing))
                .take(room)
                .collect();
            budget -= fresh.len();
            for thing in fresh {
                let details = self.jobs.status_details(&job, &thing).await?;
                let anomalous = details.get("anomaly").is_some_and(|v| v == "true");
                let mut state = self.state();
                let sample = &mut state.anomalies;
                if sample.read.entry(index).or_default().insert(thing) && anomalous {
                    sample.anomalous += 1;
                }
            }
        }
        let state = self.state();
        Ok((state.anomalies.anomalous, state.anomalies.read_count()))
    }
}

#[cfg(test)]
mod tests {
    use super::wilson_lower;

    #[test]
    fn one_anomaly_in_fifty_is_not_sure_to_be_over_one_and_a_half_percent() {
        assert!(wilson_lower(1, 50) < 1.5);
        assert!(wilson_lower(0, 50) == 0.0);
    }

    #[test]
    fn a_large_sample_well_over_the_bound_is_sure() {
        // 3 % of 1,000: the lower bound is above 1.5 %.
        let lower = wilson_lower(30, 1000);
        assert!(lower > 1.5 && lower < 3.0, "{lower}");
        // A third of nine: over 20 % only by the whole-population rule.
        assert!(wilson_lower(3, 9) < 20.0);
    }
}
