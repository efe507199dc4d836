//! The JSON shape of a DistributionConfig as the AWS CLI prints and takes
//! it (PascalCase names, `Quantity`/`Items` lists), as serde structs: the
//! SDK's types have no serde support.
//!
//! Every struct denies unknown fields, so a field deployctl does not map
//! (or a typo) is refused by name instead of being silently dropped from
//! the configuration that goes to production. Enumerations are kept as
//! strings here and checked against the SDK's known values when mapped
//! ([`super::convert`]), so that the error can list what is allowed.

use serde::Deserialize;

/// `{"Quantity": n, "Items": [...]}`; `Quantity` may be left out (it is
/// then the number of items).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct List<T> {
    pub quantity: Option<i32>,
    pub items: Option<Vec<T>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Config {
    pub caller_reference: Option<String>,
    pub aliases: Option<List<String>>,
    pub default_root_object: Option<String>,
    pub origins: List<Origin>,
    pub origin_groups: Option<List<OriginGroup>>,
    pub default_cache_behavior: Behavior,
    pub cache_behaviors: Option<List<Behavior>>,
    pub custom_error_responses: Option<List<ErrorResponse>>,
    pub comment: Option<String>,
    pub logging: Option<Logging>,
    pub price_class: Option<String>,
    pub enabled: Option<bool>,
    pub viewer_certificate: Option<Certificate>,
    pub restrictions: Option<Restrictions>,
    #[serde(rename = "WebACLId")]
    pub web_acl_id: Option<String>,
    pub http_version: Option<String>,
    #[serde(rename = "IsIPV6Enabled")]
    pub is_ipv6_enabled: Option<bool>,
    pub continuous_deployment_policy_id: Option<String>,
    pub staging: Option<bool>,
    pub anycast_ip_list_id: Option<String>,
    pub connection_mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Origin {
    pub id: String,
    pub domain_name: String,
    pub origin_path: Option<String>,
    pub custom_headers: Option<List<Header>>,
    pub s3_origin_config: Option<S3OriginConfig>,
    pub custom_origin_config: Option<CustomOriginConfig>,
    pub connection_attempts: Option<i32>,
    pub connection_timeout: Option<i32>,
    pub response_completion_timeout: Option<i32>,
    pub origin_shield: Option<OriginShield>,
    pub origin_access_control_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Header {
    pub header_name: String,
    pub header_value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct S3OriginConfig {
    pub origin_access_identity: Option<String>,
    pub origin_read_timeout: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct CustomOriginConfig {
    #[serde(rename = "HTTPPort")]
    pub http_port: i32,
    #[serde(rename = "HTTPSPort")]
    pub https_port: i32,
    pub origin_protocol_policy: String,
    pub origin_ssl_protocols: Option<List<String>>,
    pub origin_read_timeout: Option<i32>,
    pub origin_keepalive_timeout: Option<i32>,
    pub ip_address_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct OriginShield {
    pub enabled: bool,
    pub origin_shield_region: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct OriginGroup {
    pub id: String,
    pub failover_criteria: Option<FailoverCriteria>,
    pub members: List<Member>,
    pub selection_criteria: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct FailoverCriteria {
    pub status_codes: List<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Member {
    pub origin_id: String,
}

/// A cache behavior; the default one is the same shape without a
/// `PathPattern` (checked when mapped).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Behavior {
    pub path_pattern: Option<String>,
    pub target_origin_id: String,
    pub trusted_signers: Option<Trusted>,
    pub trusted_key_groups: Option<Trusted>,
    pub viewer_protocol_policy: String,
    pub allowed_methods: Option<AllowedMethods>,
    pub smooth_streaming: Option<bool>,
    pub compress: Option<bool>,
    pub lambda_function_associations: Option<List<LambdaAssociation>>,
    pub function_associations: Option<List<FunctionAssociation>>,
    pub field_level_encryption_id: Option<String>,
    pub realtime_log_config_arn: Option<String>,
    pub cache_policy_id: Option<String>,
    pub origin_request_policy_id: Option<String>,
    pub response_headers_policy_id: Option<String>,
    pub grpc_config: Option<GrpcConfig>,
    pub forwarded_values: Option<ForwardedValues>,
    #[serde(rename = "MinTTL")]
    pub min_ttl: Option<i64>,
    #[serde(rename = "DefaultTTL")]
    pub default_ttl: Option<i64>,
    #[serde(rename = "MaxTTL")]
    pub max_ttl: Option<i64>,
}

/// TrustedSigners and TrustedKeyGroups.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Trusted {
    pub enabled: bool,
    pub quantity: Option<i32>,
    pub items: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct AllowedMethods {
    pub quantity: Option<i32>,
    pub items: Vec<String>,
    pub cached_methods: Option<List<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct LambdaAssociation {
    #[serde(rename = "LambdaFunctionARN")]
    pub lambda_function_arn: String,
    pub event_type: String,
    pub include_body: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct FunctionAssociation {
    #[serde(rename = "FunctionARN")]
    pub function_arn: String,
    pub event_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct GrpcConfig {
    pub enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct ForwardedValues {
    pub query_string: bool,
    pub cookies: Option<Cookies>,
    pub headers: Option<List<String>>,
    pub query_string_cache_keys: Option<List<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Cookies {
    pub forward: String,
    pub whitelisted_names: Option<List<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct ErrorResponse {
    pub error_code: i32,
    pub response_page_path: Option<String>,
    pub response_code: Option<String>,
    #[serde(rename = "ErrorCachingMinTTL")]
    pub error_caching_min_ttl: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Logging {
    pub enabled: bool,
    pub include_cookies: Option<bool>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Certificate {
    pub cloud_front_default_certificate: Option<bool>,
    #[serde(rename = "IAMCertificateId")]
    pub iam_certificate_id: Option<String>,
    #[serde(rename = "ACMCertificateArn")]
    pub acm_certificate_arn: Option<String>,
    #[serde(rename = "SSLSupportMethod")]
    pub ssl_support_method: Option<String>,
    pub minimum_protocol_version: Option<String>,
    pub certificate: Option<String>,
    pub certificate_source: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct Restrictions {
    pub geo_restriction: GeoRestriction,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(crate) struct GeoRestriction {
    pub restriction_type: String,
    pub quantity: Option<i32>,
    pub items: Option<Vec<String>>,
}
