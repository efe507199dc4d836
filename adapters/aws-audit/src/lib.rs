//! `deployctl-aws-audit`: the audit trail's S3 Object Lock sink and a KMS key source (being built).
