//! `deployctl-aws-signals`: CloudWatch gates and SNS notifications (being built).
