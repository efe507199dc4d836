//! Metric thresholds: one `GetMetricData` call (MetricStat queries) over
//! the last `period` of each metric, newest datapoint first; the newest
//! value is compared with the plan's threshold. No datapoint in the window
//! is inconclusive, never a pass.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::operation::RequestId;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    Dimension, Metric, MetricDataQuery, MetricStat, ScanBy, StatusCode,
};
use deployctl_aws::map_sdk_error;
use deployctl_plan::model::MetricCheck;

use crate::finding::{Finding, Verdict, requests};

/// GetMetricData takes at most 500 queries per call.
const QUERIES_PER_CALL: usize = 500;

/// What came back for one query.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Series {
    /// Newest first.
    pub values: Vec<f64>,
    /// CloudWatch's own remarks (partial data, an unknown statistic).
    pub messages: Vec<String>,
}

/// Measures every metric of the gate; one finding per metric.
pub(crate) async fn check(client: &Client, metrics: &[MetricCheck]) -> Vec<Finding> {
    let now = SystemTime::now();
    // The window ends a minute ahead: a deploy PC's clock running behind
    // AWS's must not hide the newest datapoint (and CloudWatch has nothing
    // after "now" to return anyway).
    let end = now + Duration::from_secs(60);
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let mut request_ids = Vec::new();
    let indexed: Vec<(usize, &MetricCheck)> = metrics.iter().enumerate().collect();
    for chunk in indexed.chunks(QUERIES_PER_CALL) {
        // One window for the call: wide enough for the longest period.
        let widest = chunk
            .iter()
            .map(|(_, metric)| metric.period)
            .max()
            .unwrap_or(Duration::from_secs(60));
        let start = now.checked_sub(widest).unwrap_or(SystemTime::UNIX_EPOCH);
        let queries: Vec<MetricDataQuery> =
            chunk.iter().map(|(i, metric)| query(*i, metric)).collect();
        let mut token: Option<String> = None;
        loop {
            let answer = client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(end))
                .scan_by(ScanBy::TimestampDescending)
                .set_next_token(token.take())
                .send()
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(error) => {
                    let error = map_sdk_error(error, "cloudwatch:GetMetricData");
                    return vec![Finding::failed_call("metrics", &error)];
                }
            };
            request_ids.extend(answer.request_id().map(str::to_owned));
            for result in answer.metric_data_results() {
                let Some(id) = result.id() else { continue };
                let entry = series.entry(id.to_owned()).or_default();
                entry.values.extend_from_slice(result.values());
                entry.messages.extend(
                    result
                        .messages()
                        .iter()
                        .filter_map(|m| m.value().map(str::to_owned)),
                );
                match result.status_code() {
                    Some(StatusCode::InternalError) => entry
                        .messages
                        .push("CloudWatch reported an internal error".to_owned()),
                    Some(StatusCode::Forbidden) => entry
                        .messages
                        .push("CloudWatch refused access to this metric".to_owned()),
                    _ => {}
                }
            }
            match answer.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
    }
    let ids = requests(&request_ids);
    metrics
        .iter()
        .enumerate()
        .map(|(i, metric)| {
            let mut finding = judge(metric, series.get(&query_id(i)));
            finding.detail.push_str(&ids);
            finding
        })
        .collect()
}

/// Query IDs must start with a lower-case letter.
fn query_id(index: usize) -> String {
    format!("m{index}")
}

fn query(index: usize, metric: &MetricCheck) -> MetricDataQuery {
    let dimensions = metric
        .dimensions
        .iter()
        .map(|(name, value)| Dimension::builder().name(name).value(value).build())
        .collect();
    MetricDataQuery::builder()
        .id(query_id(index))
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(&metric.namespace)
                        .metric_name(&metric.metric_name)
                        .set_dimensions(Some(dimensions))
                        .build(),
                )
                // Validated: 1..=30 s or a multiple of 60 s, far below i32::MAX.
                .period(i32::try_from(metric.period.as_secs()).unwrap_or(i32::MAX))
                .stat(&metric.statistic)
                .build(),
        )
        .return_data(true)
        .build()
}

/// How a metric reads in a detail: `AWS/Lambda Errors{FunctionName=x} Sum/60s`.
pub(crate) fn describe(metric: &MetricCheck) -> String {
    let dimensions = if metric.dimensions.is_empty() {
        String::new()
    } else {
        format!(
            "{{{}}}",
            metric
                .dimensions
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    format!(
        "{} {}{dimensions} {}/{}s",
        metric.namespace,
        metric.metric_name,
        metric.statistic,
        metric.period.as_secs()
    )
}

/// The verdict on one metric from its series (newest value first). Pure.
pub(crate) fn judge(metric: &MetricCheck, series: Option<&Series>) -> Finding {
    let name = describe(metric);
    let remarks = series
        .filter(|s| !s.messages.is_empty())
        .map(|s| format!(" ({})", s.messages.join("; ")))
        .unwrap_or_default();
    let Some(&value) = series.and_then(|s| s.values.first()) else {
        return Finding::new(
            Verdict::NoData,
            None,
            format!(
                "{name}: no datapoints in the last {}s{remarks}",
                metric.period.as_secs()
            ),
        );
    };
    let wanted = format!("{} {}", metric.comparison.symbol(), metric.threshold);
    if metric.comparison.holds(value, metric.threshold) {
        Finding::new(
            Verdict::Pass,
            Some(value),
            format!("{name} = {value} (needs {wanted}){remarks}"),
        )
    } else {
        Finding::new(
            Verdict::Fail,
            Some(value),
            format!("{name} = {value}, breaching {wanted}{remarks}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use deployctl_plan::model::Comparison;

    use super::*;

    fn errors_below(threshold: f64) -> MetricCheck {
        MetricCheck {
            namespace: "AWS/Lambda".to_owned(),
            metric_name: "Errors".to_owned(),
            dimensions: [("FunctionName".to_owned(), "checkout".to_owned())].into(),
            statistic: "Sum".to_owned(),
            period: Duration::from_secs(60),
            comparison: Comparison::Less,
            threshold,
        }
    }

    fn series(values: &[f64]) -> Series {
        Series {
            values: values.to_vec(),
            messages: Vec::new(),
        }
    }

    #[test]
    fn the_newest_value_is_compared() {
        let found = judge(&errors_below(1.0), Some(&series(&[0.0, 9.0])));
        assert_eq!(found.verdict, Verdict::Pass);
        assert_eq!(found.value, Some(0.0));
        assert_eq!(
            found.detail,
            "AWS/Lambda Errors{FunctionName=checkout} Sum/60s = 0 (needs < 1)"
        );
        let found = judge(&errors_below(1.0), Some(&series(&[3.0, 0.0])));
        assert_eq!(found.verdict, Verdict::Fail);
        assert_eq!(found.value, Some(3.0));
        assert!(found.detail.contains("breaching < 1"), "{}", found.detail);
    }

    #[test]
    fn no_datapoints_is_inconclusive() {
        for missing in [None, Some(&series(&[]))] {
            let found = judge(&errors_below(1.0), missing);
            assert_eq!(found.verdict, Verdict::NoData);
            assert!(
                found.detail.contains("no datapoints in the last 60s"),
                "{}",
                found.detail
            );
        }
    }

    #[test]
    fn nan_never_passes() {
        let found = judge(&errors_below(1.0), Some(&series(&[f64::NAN])));
        assert_eq!(found.verdict, Verdict::Fail);
    }

    #[test]
    fn cloudwatch_remarks_are_kept() {
        let remarked = Series {
            values: Vec::new(),
            messages: vec!["Unsupported statistic".to_owned()],
        };
        let found = judge(&errors_below(1.0), Some(&remarked));
        assert!(
            found.detail.ends_with("(Unsupported statistic)"),
            "{}",
            found.detail
        );
    }

    #[test]
    fn queries_carry_the_plans_statistic_period_and_dimensions() {
        let built = query(3, &errors_below(1.0));
        assert_eq!(built.id(), Some("m3"));
        let stat = built.metric_stat().expect("a MetricStat query");
        assert_eq!((stat.period(), stat.stat()), (Some(60), Some("Sum")));
        let metric = stat.metric().expect("a metric");
        assert_eq!(metric.namespace(), Some("AWS/Lambda"));
        assert_eq!(metric.dimensions()[0].value(), Some("checkout"));
    }
}
