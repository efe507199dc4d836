//! `deployctl-probes`: the health probes behind the `http` and `prometheus`
//! gate kinds, and webhook notifications ([`WebhookNotifier`]), which share
//! their HTTP transport.
//!
//! Start at [`probe_for`], which turns a validated [`GateCheck`] into a
//! [`HealthProbe`]; [`HttpProbe`] and [`PrometheusProbe`] are the two
//! probes it builds.
//!
//! These gates are not bound to a target (every target kind may use them),
//! so they live in their own adapter crate rather than in a target's, and
//! they keep the HTTP client out of the engine and the plan crate, which
//! must never import one (ARCHITECTURE.md).
//!
//! Every probe follows the "Probes" rules of `docs/adapter-contract.md`:
//! one request per [`HealthProbe::measure`], bounded by the probe's own
//! timeout, and a measurement that could not be taken (timeout, refused
//! connection, TLS failure, unreadable answer) is
//! [`Measurement::Error`](deployctl_adapter::Measurement::Error), never
//! `Fail`, because an unreachable endpoint is not evidence that the release
//! is unhealthy. The transport rules both probes share (https only unless
//! the plan allows plain HTTP, TLS 1.2+ over rustls, same-origin redirects
//! only, a bounded body) are in `transport.rs`.

mod error;
mod http;
mod misconfigured;
mod prometheus;
mod query_result;
mod transport;
mod webhook;

pub use error::ProbeError;
pub use http::HttpProbe;
pub use prometheus::PrometheusProbe;
pub use webhook::WebhookNotifier;

use deployctl_adapter::HealthProbe;
use deployctl_plan::model::GateCheck;

use misconfigured::Misconfigured;

/// The probe for a gate this crate measures: `Some` for `http` and
/// `prometheus` gates, `None` for every other kind (those are bound to a
/// target and come from its adapter's `probe`).
///
/// Plain `http://` is allowed only when both `allow_insecure_http` (the
/// caller's word) and the check's own `allow_insecure_http` (the plan's
/// `allowInsecureHttp`) allow it: neither can widen what the other refused.
/// A gate whose probe cannot be
/// built (an invalid header, say) still gets a probe: one that reports
/// `Error` with the reason on every measurement, so the gate's
/// consecutive-error limit fails it visibly instead of the gate being
/// skipped. Callers that want the reason up front use [`HttpProbe::new`] or
/// [`PrometheusProbe::new`].
pub fn probe_for(check: &GateCheck, allow_insecure_http: bool) -> Option<Box<dyn HealthProbe>> {
    let built: Result<Box<dyn HealthProbe>, ProbeError> = match check {
        GateCheck::Http { .. } => HttpProbe::new(check, allow_insecure_http)
            .map(|probe| Box::new(probe) as Box<dyn HealthProbe>),
        GateCheck::Prometheus { .. } => PrometheusProbe::new(check, allow_insecure_http)
            .map(|probe| Box::new(probe) as Box<dyn HealthProbe>),
        // Listed one by one so a new gate kind has to decide here.
        GateCheck::CloudWatch { .. }
        | GateCheck::Kubernetes { .. }
        | GateCheck::Fleet { .. }
        | GateCheck::Sim { .. } => return None,
    };
    Some(built.unwrap_or_else(|error| Box::new(Misconfigured::new(&error))))
}
