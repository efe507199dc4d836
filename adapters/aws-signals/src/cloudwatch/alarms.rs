//! Alarm checks: every named alarm must be OK. One in ALARM fails the
//! measurement; INSUFFICIENT_DATA is inconclusive (a quiet service is not
//! a healthy one); a name that matches no alarm is inconclusive too, and
//! said loudly, because it is almost always a typo or the wrong region and
//! would otherwise hold the gate at "no data" until its limit.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::operation::RequestId;
use aws_sdk_cloudwatch::types::{AlarmType, StateValue};
use deployctl_aws::map_sdk_error;

use crate::finding::{Finding, Verdict, requests};

/// DescribeAlarms takes at most 100 names per call.
const NAMES_PER_CALL: usize = 100;

/// Reads the state of every alarm in `names` (metric and composite) and
/// judges them.
pub(crate) async fn check(client: &Client, names: &[String], region: &str) -> Finding {
    let mut states = BTreeMap::new();
    let mut request_ids = Vec::new();
    for chunk in names.chunks(NAMES_PER_CALL) {
        let mut token: Option<String> = None;
        loop {
            let answer = client
                .describe_alarms()
                .set_alarm_names(Some(chunk.to_vec()))
                // Without AlarmTypes only metric alarms are returned, and a
                // composite alarm named in the plan would look missing.
                .alarm_types(AlarmType::MetricAlarm)
                .alarm_types(AlarmType::CompositeAlarm)
                .set_next_token(token.take())
                .send()
                .await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(error) => {
                    let error = map_sdk_error(error, "cloudwatch:DescribeAlarms");
                    return Finding::failed_call("alarms", &error);
                }
            };
            request_ids.extend(answer.request_id().map(str::to_owned));
            for alarm in answer.metric_alarms() {
                if let Some(name) = alarm.alarm_name() {
                    states.insert(name.to_owned(), alarm.state_value().cloned());
                }
            }
            for alarm in answer.composite_alarms() {
                if let Some(name) = alarm.alarm_name() {
                    states.insert(name.to_owned(), alarm.state_value().cloned());
                }
            }
            match answer.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
    }
    let mut finding = judge(names, &states, region);
    finding.detail.push_str(&requests(&request_ids));
    finding
}

/// The verdict on `names` given the states found (`None`: AWS gave no
/// state). Pure, so the rules are tested without an emulator.
pub(crate) fn judge(
    names: &[String],
    states: &BTreeMap<String, Option<StateValue>>,
    region: &str,
) -> Finding {
    let mut alarming = Vec::new();
    let mut missing = Vec::new();
    let mut unsure = Vec::new();
    let mut shown = Vec::new();
    for name in names {
        match states.get(name) {
            None => {
                missing.push(name.as_str());
                shown.push(format!("{name}=MISSING"));
            }
            Some(Some(StateValue::Ok)) => shown.push(format!("{name}=OK")),
            Some(Some(StateValue::Alarm)) => {
                alarming.push(name.as_str());
                shown.push(format!("{name}=ALARM"));
            }
            Some(state) => {
                let state = state
                    .as_ref()
                    .map_or("no state", |state| state.as_str())
                    .to_owned();
                unsure.push(name.as_str());
                shown.push(format!("{name}={state}"));
            }
        }
    }
    let listed = shown.join(", ");
    if !alarming.is_empty() {
        return Finding::new(
            Verdict::Fail,
            None,
            format!("in ALARM: {}; alarms {listed}", alarming.join(", ")),
        );
    }
    if !missing.is_empty() {
        return Finding::new(
            Verdict::NoData,
            None,
            format!(
                "no alarm named {} exists in {region}: check the names and the gate's `region` (a missing alarm never counts as OK); alarms {listed}",
                missing
                    .iter()
                    .map(|name| format!("`{name}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if !unsure.is_empty() {
        return Finding::new(
            Verdict::NoData,
            None,
            format!(
                "not enough data to judge: {}; alarms {listed}",
                unsure.join(", ")
            ),
        );
    }
    Finding::new(Verdict::Pass, None, format!("alarms {listed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn states(list: &[(&str, StateValue)]) -> BTreeMap<String, Option<StateValue>> {
        list.iter()
            .map(|(name, state)| ((*name).to_owned(), Some(state.clone())))
            .collect()
    }

    #[test]
    fn every_alarm_ok_passes() {
        let found = judge(
            &names(&["errors", "latency"]),
            &states(&[("errors", StateValue::Ok), ("latency", StateValue::Ok)]),
            "us-east-1",
        );
        assert_eq!(found.verdict, Verdict::Pass);
        assert_eq!(found.detail, "alarms errors=OK, latency=OK");
    }

    #[test]
    fn one_alarm_in_alarm_fails_even_beside_missing_ones() {
        let found = judge(
            &names(&["errors", "typo", "latency"]),
            &states(&[("errors", StateValue::Ok), ("latency", StateValue::Alarm)]),
            "us-east-1",
        );
        assert_eq!(found.verdict, Verdict::Fail);
        assert!(
            found.detail.starts_with("in ALARM: latency;"),
            "{}",
            found.detail
        );
        assert!(found.detail.contains("typo=MISSING"), "{}", found.detail);
    }

    #[test]
    fn insufficient_data_is_inconclusive() {
        let found = judge(
            &names(&["errors"]),
            &states(&[("errors", StateValue::InsufficientData)]),
            "us-east-1",
        );
        assert_eq!(found.verdict, Verdict::NoData);
        assert!(
            found.detail.contains("errors=INSUFFICIENT_DATA"),
            "{}",
            found.detail
        );
    }

    #[test]
    fn a_missing_alarm_is_inconclusive_and_named_with_the_region() {
        let found = judge(
            &names(&["errors", "eroors"]),
            &states(&[("errors", StateValue::Ok)]),
            "eu-west-1",
        );
        assert_eq!(found.verdict, Verdict::NoData);
        assert!(
            found
                .detail
                .contains("no alarm named `eroors` exists in eu-west-1"),
            "{}",
            found.detail
        );
    }

    #[test]
    fn an_alarm_without_a_state_is_inconclusive() {
        let mut found = BTreeMap::new();
        found.insert("errors".to_owned(), None);
        let found = judge(&names(&["errors"]), &found, "us-east-1");
        assert_eq!(found.verdict, Verdict::NoData);
    }
}
