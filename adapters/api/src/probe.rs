//! Health probes: one measurement at a time. The gate framework in the
//! engine decides intervals, counts and limits; a probe only measures.

use crate::BoxFuture;

/// One measurement's result. "No data" is its own answer, never a pass.
#[derive(Debug, Clone, PartialEq)]
pub enum Measurement {
    /// Healthy. `value` is what was measured, when there is a number.
    Pass { value: Option<f64>, detail: String },
    /// Unhealthy.
    Fail { value: Option<f64>, detail: String },
    /// Nothing to judge by: no samples, no traffic, INSUFFICIENT_DATA.
    NoData { detail: String },
    /// The measurement itself failed (timeout, 5xx from the metrics API).
    Error { detail: String },
}

impl Measurement {
    pub fn value(&self) -> Option<f64> {
        match self {
            Measurement::Pass { value, .. } | Measurement::Fail { value, .. } => *value,
            _ => None,
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Measurement::Pass { detail, .. }
            | Measurement::Fail { detail, .. }
            | Measurement::NoData { detail }
            | Measurement::Error { detail } => detail,
        }
    }
}

/// Something that can measure health once.
pub trait HealthProbe: Send + Sync {
    /// Takes one measurement. Must not take longer than the probe's own
    /// timeout; must be safe to cancel at any `.await`.
    fn measure(&self) -> BoxFuture<'_, Measurement>;
}
