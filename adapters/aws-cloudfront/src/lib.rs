//! `deployctl-aws-cloudfront`: CloudFront releases by continuous deployment (being built).
