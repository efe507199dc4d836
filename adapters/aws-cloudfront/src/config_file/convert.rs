//! The mirror structs ([`super::mirror`]) mapped onto the SDK's
//! `DistributionConfig`, checking what the SDK's builders and CloudFront
//! would refuse later (unknown enumeration values, `Quantity` that does not
//! match `Items`, behaviors targeting no origin), each with its JSON path.

use std::collections::BTreeSet;

use aws_sdk_cloudfront::error::BuildError;
use aws_sdk_cloudfront::types as sdk;

use super::Problem;
use super::located::field;
use super::mirror as m;

type Result<T> = std::result::Result<T, Problem>;

/// The caller reference a file without one gets: the staging distribution
/// always keeps its own, so this never reaches CloudFront.
const NO_CALLER_REFERENCE: &str = "deployctl-config-file";

fn built<T>(result: std::result::Result<T, BuildError>, path: &str) -> Result<T> {
    result.map_err(|error| Problem::new(path, format!("incomplete: {error}")))
}

/// `value` as one of an SDK enumeration's known values.
fn known<T: for<'a> From<&'a str>>(value: &str, allowed: &[&str], path: &str) -> Result<T> {
    if allowed.contains(&value) {
        Ok(T::from(value))
    } else {
        Err(Problem::new(
            path,
            format!("{value:?} is not one of {}", allowed.join(", ")),
        ))
    }
}

fn known_opt<T: for<'a> From<&'a str>>(
    value: Option<&str>,
    allowed: &[&str],
    path: &str,
) -> Result<Option<T>> {
    value.map(|v| known(v, allowed, path)).transpose()
}

/// Items and their count, refusing a `Quantity` that disagrees with them
/// (CloudFront answers InconsistentQuantities).
fn counted<T>(quantity: Option<i32>, items: Option<Vec<T>>, path: &str) -> Result<(i32, Vec<T>)> {
    let items = items.unwrap_or_default();
    let count =
        i32::try_from(items.len()).map_err(|_| Problem::new(path, "has too many items".into()))?;
    match quantity {
        Some(quantity) if quantity != count => Err(Problem::new(
            &field(path, "Quantity"),
            format!("is {quantity} but Items has {count} entries; make them agree"),
        )),
        _ => Ok((count, items)),
    }
}

fn list<T>(list: m::List<T>, path: &str) -> Result<(i32, Vec<T>)> {
    counted(list.quantity, list.items, path)
}

/// Each item mapped with its path (`path.Items[i]`).
fn each<T, U>(items: Vec<T>, path: &str, map: impl Fn(T, &str) -> Result<U>) -> Result<Vec<U>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| map(item, &format!("{path}.Items[{i}]")))
        .collect()
}

/// A list of strings: (quantity, items or `None` when empty, as
/// CloudFront prints them).
fn strings(l: m::List<String>, path: &str) -> Result<(i32, Option<Vec<String>>)> {
    let (quantity, items) = list(l, path)?;
    Ok((quantity, (!items.is_empty()).then_some(items)))
}

pub(crate) fn config(c: m::Config, path: &str) -> Result<sdk::DistributionConfig> {
    if c.enabled == Some(false) {
        return Err(Problem::new(
            &field(path, "Enabled"),
            "is false: promoting this configuration would take the distribution offline; \
             deployctl releases enabled configurations only (set it to true)"
                .into(),
        ));
    }
    let origins_path = field(path, "Origins");
    let (quantity, items) = list(c.origins, &origins_path)?;
    if items.is_empty() {
        return Err(Problem::new(
            &origins_path,
            "has no origins; a distribution needs at least one".into(),
        ));
    }
    let mut targets = BTreeSet::new();
    for (i, origin) in items.iter().enumerate() {
        if !targets.insert(origin.id.clone()) {
            return Err(Problem::new(
                &format!("{origins_path}.Items[{i}].Id"),
                format!(
                    "{:?} is used by two origins; origin IDs must be unique",
                    origin.id
                ),
            ));
        }
    }
    let origins = built(
        sdk::Origins::builder()
            .quantity(quantity)
            .set_items(Some(each(items, &origins_path, origin)?))
            .build(),
        &origins_path,
    )?;
    let origin_groups = match c.origin_groups {
        Some(groups) => {
            let groups_path = field(path, "OriginGroups");
            let (quantity, items) = list(groups, &groups_path)?;
            targets.extend(items.iter().map(|g| g.id.clone()));
            let items = each(items, &groups_path, origin_group)?;
            Some(built(
                sdk::OriginGroups::builder()
                    .quantity(quantity)
                    .set_items((!items.is_empty()).then_some(items))
                    .build(),
                &groups_path,
            )?)
        }
        None => None,
    };
    let default_path = field(path, "DefaultCacheBehavior");
    let default_cache_behavior =
        default_behavior(c.default_cache_behavior, &default_path, &targets)?;
    let cache_behaviors = match c.cache_behaviors {
        Some(behaviors) => {
            let behaviors_path = field(path, "CacheBehaviors");
            let (quantity, items) = list(behaviors, &behaviors_path)?;
            let items = each(items, &behaviors_path, |b, p| {
                cache_behavior(b, p, &targets)
            })?;
            Some(built(
                sdk::CacheBehaviors::builder()
                    .quantity(quantity)
                    .set_items((!items.is_empty()).then_some(items))
                    .build(),
                &behaviors_path,
            )?)
        }
        None => None,
    };
    let custom_error_responses = match c.custom_error_responses {
        Some(responses) => {
            let responses_path = field(path, "CustomErrorResponses");
            let (quantity, items) = list(responses, &responses_path)?;
            let items = each(items, &responses_path, error_response)?;
            Some(built(
                sdk::CustomErrorResponses::builder()
                    .quantity(quantity)
                    .set_items((!items.is_empty()).then_some(items))
                    .build(),
                &responses_path,
            )?)
        }
        None => None,
    };
    let aliases = match c.aliases {
        Some(aliases) => {
            let aliases_path = field(path, "Aliases");
            let (quantity, items) = strings(aliases, &aliases_path)?;
            Some(built(
                sdk::Aliases::builder()
                    .quantity(quantity)
                    .set_items(items)
                    .build(),
                &aliases_path,
            )?)
        }
        None => None,
    };
    let logging = c.logging.map(|l| {
        sdk::LoggingConfig::builder()
            .enabled(l.enabled)
            .include_cookies(l.include_cookies.unwrap_or(false))
            .bucket(l.bucket.unwrap_or_default())
            .prefix(l.prefix.unwrap_or_default())
            .build()
    });
    let viewer_certificate = c
        .viewer_certificate
        .map(|v| certificate(v, &field(path, "ViewerCertificate")))
        .transpose()?;
    let restrictions = c
        .restrictions
        .map(|r| restrictions(r, &field(path, "Restrictions")))
        .transpose()?;
    built(
        sdk::DistributionConfig::builder()
            .caller_reference(
                c.caller_reference
                    .unwrap_or_else(|| NO_CALLER_REFERENCE.to_owned()),
            )
            .set_aliases(aliases)
            .set_default_root_object(c.default_root_object)
            .origins(origins)
            .set_origin_groups(origin_groups)
            .default_cache_behavior(default_cache_behavior)
            .set_cache_behaviors(cache_behaviors)
            .set_custom_error_responses(custom_error_responses)
            .comment(c.comment.unwrap_or_default())
            .set_logging(logging)
            .set_price_class(known_opt(
                c.price_class.as_deref(),
                sdk::PriceClass::values(),
                &field(path, "PriceClass"),
            )?)
            .enabled(true)
            .set_viewer_certificate(viewer_certificate)
            .set_restrictions(restrictions)
            .set_web_acl_id(c.web_acl_id)
            .set_http_version(known_opt(
                c.http_version.as_deref(),
                sdk::HttpVersion::values(),
                &field(path, "HttpVersion"),
            )?)
            .set_is_ipv6_enabled(c.is_ipv6_enabled)
            .set_continuous_deployment_policy_id(c.continuous_deployment_policy_id)
            .set_staging(c.staging)
            .set_anycast_ip_list_id(c.anycast_ip_list_id)
            .set_connection_mode(known_opt(
                c.connection_mode.as_deref(),
                sdk::ConnectionMode::values(),
                &field(path, "ConnectionMode"),
            )?)
            .build(),
        path,
    )
}

fn origin(o: m::Origin, path: &str) -> Result<sdk::Origin> {
    let custom_headers = match o.custom_headers {
        Some(headers) => {
            let headers_path = field(path, "CustomHeaders");
            let (quantity, items) = list(headers, &headers_path)?;
            let items = each(items, &headers_path, |h, p| {
                built(
                    sdk::OriginCustomHeader::builder()
                        .header_name(h.header_name)
                        .header_value(h.header_value)
                        .build(),
                    p,
                )
            })?;
            Some(built(
                sdk::CustomHeaders::builder()
                    .quantity(quantity)
                    .set_items((!items.is_empty()).then_some(items))
                    .build(),
                &headers_path,
            )?)
        }
        None => None,
    };
    let s3_origin_config = o.s3_origin_config.map(|s3| {
        sdk::S3OriginConfig::builder()
            .origin_access_identity(s3.origin_access_identity.unwrap_or_default())
            .set_origin_read_timeout(s3.origin_read_timeout)
            .build()
    });
    let custom_origin_config = o
        .custom_origin_config
        .map(|c| custom_origin(c, &field(path, "CustomOriginConfig")))
        .transpose()?;
    let origin_shield = o
        .origin_shield
        .map(|s| {
            built(
                sdk::OriginShield::builder()
                    .enabled(s.enabled)
                    .set_origin_shield_region(s.origin_shield_region)
                    .build(),
                &field(path, "OriginShield"),
            )
        })
        .transpose()?;
    built(
        sdk::Origin::builder()
            .id(o.id)
            .domain_name(o.domain_name)
            .set_origin_path(o.origin_path)
            .set_custom_headers(custom_headers)
            .set_s3_origin_config(s3_origin_config)
            .set_custom_origin_config(custom_origin_config)
            .set_connection_attempts(o.connection_attempts)
            .set_connection_timeout(o.connection_timeout)
            .set_response_completion_timeout(o.response_completion_timeout)
            .set_origin_shield(origin_shield)
            .set_origin_access_control_id(o.origin_access_control_id)
            .build(),
        path,
    )
}

fn custom_origin(c: m::CustomOriginConfig, path: &str) -> Result<sdk::CustomOriginConfig> {
    let ssl = match c.origin_ssl_protocols {
        Some(protocols) => {
            let ssl_path = field(path, "OriginSslProtocols");
            let (quantity, items) = list(protocols, &ssl_path)?;
            let items = items
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    known(
                        p,
                        sdk::SslProtocol::values(),
                        &format!("{ssl_path}.Items[{i}]"),
                    )
                })
                .collect::<Result<Vec<sdk::SslProtocol>>>()?;
            Some(built(
                sdk::OriginSslProtocols::builder()
                    .quantity(quantity)
                    .set_items(Some(items))
                    .build(),
                &ssl_path,
            )?)
        }
        None => None,
    };
    built(
        sdk::CustomOriginConfig::builder()
            .http_port(c.http_port)
            .https_port(c.https_port)
            .origin_protocol_policy(known::<sdk::OriginProtocolPolicy>(
                &c.origin_protocol_policy,
                sdk::OriginProtocolPolicy::values(),
                &field(path, "OriginProtocolPolicy"),
            )?)
            .set_origin_ssl_protocols(ssl)
            .set_origin_read_timeout(c.origin_read_timeout)
            .set_origin_keepalive_timeout(c.origin_keepalive_timeout)
            .set_ip_address_type(known_opt(
                c.ip_address_type.as_deref(),
                sdk::IpAddressType::values(),
                &field(path, "IpAddressType"),
            )?)
            .build(),
        path,
    )
}

fn origin_group(g: m::OriginGroup, path: &str) -> Result<sdk::OriginGroup> {
    let failover_criteria = match g.failover_criteria {
        Some(criteria) => {
            let codes_path = field(&field(path, "FailoverCriteria"), "StatusCodes");
            let (quantity, items) = list(criteria.status_codes, &codes_path)?;
            Some(
                sdk::OriginGroupFailoverCriteria::builder()
                    .status_codes(built(
                        sdk::StatusCodes::builder()
                            .quantity(quantity)
                            .set_items(Some(items))
                            .build(),
                        &codes_path,
                    )?)
                    .build(),
            )
        }
        None => None,
    };
    let members_path = field(path, "Members");
    let (quantity, items) = list(g.members, &members_path)?;
    let members = each(items, &members_path, |member, p| {
        built(
            sdk::OriginGroupMember::builder()
                .origin_id(member.origin_id)
                .build(),
            p,
        )
    })?;
    built(
        sdk::OriginGroup::builder()
            .id(g.id)
            .set_failover_criteria(failover_criteria)
            .members(built(
                sdk::OriginGroupMembers::builder()
                    .quantity(quantity)
                    .set_items(Some(members))
                    .build(),
                &members_path,
            )?)
            .set_selection_criteria(known_opt(
                g.selection_criteria.as_deref(),
                sdk::OriginGroupSelectionCriteria::values(),
                &field(path, "SelectionCriteria"),
            )?)
            .build(),
        path,
    )
}

/// The parts a default cache behavior and a cache behavior share, mapped.
struct BehaviorParts {
    target_origin_id: String,
    viewer_protocol_policy: sdk::ViewerProtocolPolicy,
    trusted_signers: Option<sdk::TrustedSigners>,
    trusted_key_groups: Option<sdk::TrustedKeyGroups>,
    allowed_methods: Option<sdk::AllowedMethods>,
    lambda_function_associations: Option<sdk::LambdaFunctionAssociations>,
    function_associations: Option<sdk::FunctionAssociations>,
    grpc_config: Option<sdk::GrpcConfig>,
    forwarded_values: Option<sdk::ForwardedValues>,
}

fn behavior_parts(
    b: &mut m::Behavior,
    path: &str,
    targets: &BTreeSet<String>,
) -> Result<BehaviorParts> {
    if !targets.contains(&b.target_origin_id) {
        return Err(Problem::new(
            &field(path, "TargetOriginId"),
            format!(
                "{:?} names no origin or origin group of this configuration (it has: {})",
                b.target_origin_id,
                targets.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let trusted_signers = b
        .trusted_signers
        .take()
        .map(|t| {
            let p = field(path, "TrustedSigners");
            let (quantity, items) = counted(t.quantity, t.items, &p)?;
            built(
                sdk::TrustedSigners::builder()
                    .enabled(t.enabled)
                    .quantity(quantity)
                    .set_items((!items.is_empty()).then_some(items))
                    .build(),
                &p,
            )
        })
        .transpose()?;
    let trusted_key_groups = b
        .trusted_key_groups
        .take()
        .map(|t| {
            let p = field(path, "TrustedKeyGroups");
            let (quantity, items) = counted(t.quantity, t.items, &p)?;
            built(
                sdk::TrustedKeyGroups::builder()
                    .enabled(t.enabled)
                    .quantity(quantity)
                    .set_items((!items.is_empty()).then_some(items))
                    .build(),
                &p,
            )
        })
        .transpose()?;
    let allowed_methods = b
        .allowed_methods
        .take()
        .map(|a| allowed_methods(a, &field(path, "AllowedMethods")))
        .transpose()?;
    let lambda_function_associations = b
        .lambda_function_associations
        .take()
        .map(|l| {
            let p = field(path, "LambdaFunctionAssociations");
            let (quantity, items) = list(l, &p)?;
            let items = each(items, &p, |a, ap| {
                built(
                    sdk::LambdaFunctionAssociation::builder()
                        .lambda_function_arn(a.lambda_function_arn)
                        .event_type(known::<sdk::EventType>(
                            &a.event_type,
                            sdk::EventType::values(),
                            &field(ap, "EventType"),
                        )?)
                        .set_include_body(a.include_body)
                        .build(),
                    ap,
                )
            })?;
            built(
                sdk::LambdaFunctionAssociations::builder()
                    .quantity(quantity)
                    .set_items((!items.is_empty()).then_some(items))
                    .build(),
                &p,
            )
        })
        .transpose()?;
    let function_associations = b
        .function_associations
        .take()
        .map(|f| {
            let p = field(path, "FunctionAssociations");
            let (quantity, items) = list(f, &p)?;
            let items = each(items, &p, |a, ap| {
                built(
                    sdk::FunctionAssociation::builder()
                        .function_arn(a.function_arn)
                        .event_type(known::<sdk::EventType>(
                            &a.event_type,
                            sdk::EventType::values(),
                            &field(ap, "EventType"),
                        )?)
                        .build(),
                    ap,
                )
            })?;
            built(
                sdk::FunctionAssociations::builder()
                    .quantity(quantity)
                    .set_items((!items.is_empty()).then_some(items))
                    .build(),
                &p,
            )
        })
        .transpose()?;
    let grpc_config = b
        .grpc_config
        .take()
        .map(|g| {
            built(
                sdk::GrpcConfig::builder().enabled(g.enabled).build(),
                &field(path, "GrpcConfig"),
            )
        })
        .transpose()?;
    let forwarded_values = b
        .forwarded_values
        .take()
        .map(|f| forwarded_values(f, &field(path, "ForwardedValues")))
        .transpose()?;
    Ok(BehaviorParts {
        target_origin_id: b.target_origin_id.clone(),
        viewer_protocol_policy: known(
            &b.viewer_protocol_policy,
            sdk::ViewerProtocolPolicy::values(),
            &field(path, "ViewerProtocolPolicy"),
        )?,
        trusted_signers,
        trusted_key_groups,
        allowed_methods,
        lambda_function_associations,
        function_associations,
        grpc_config,
        forwarded_values,
    })
}

/// The fields the default and the other cache behaviors share: the SDK
/// has two builder types with the same setters and no common trait.
macro_rules! behavior_fields {
    ($builder:expr, $b:ident, $parts:ident) => {
        $builder
            .target_origin_id($parts.target_origin_id)
            .viewer_protocol_policy($parts.viewer_protocol_policy)
            .set_trusted_signers($parts.trusted_signers)
            .set_trusted_key_groups($parts.trusted_key_groups)
            .set_allowed_methods($parts.allowed_methods)
            .set_smooth_streaming($b.smooth_streaming)
            .set_compress($b.compress)
            .set_lambda_function_associations($parts.lambda_function_associations)
            .set_function_associations($parts.function_associations)
            .set_field_level_encryption_id($b.field_level_encryption_id)
            .set_realtime_log_config_arn($b.realtime_log_config_arn)
            .set_cache_policy_id($b.cache_policy_id)
            .set_origin_request_policy_id($b.origin_request_policy_id)
            .set_response_headers_policy_id($b.response_headers_policy_id)
            .set_grpc_config($parts.grpc_config)
            .set_forwarded_values($parts.forwarded_values)
            .set_min_ttl($b.min_ttl)
            .set_default_ttl($b.default_ttl)
            .set_max_ttl($b.max_ttl)
    };
}

// ForwardedValues and the TTLs are deprecated in favour of cache policies,
// but existing distributions still use them and get-distribution-config
// prints them: a configuration copied from production must keep them.
#[allow(deprecated)]
fn default_behavior(
    mut b: m::Behavior,
    path: &str,
    targets: &BTreeSet<String>,
) -> Result<sdk::DefaultCacheBehavior> {
    if b.path_pattern.is_some() {
        return Err(Problem::new(
            &field(path, "PathPattern"),
            "the default cache behavior has no path pattern (it serves every path no other \
             behavior matches); remove it"
                .into(),
        ));
    }
    let parts = behavior_parts(&mut b, path, targets)?;
    built(
        behavior_fields!(sdk::DefaultCacheBehavior::builder(), b, parts).build(),
        path,
    )
}

// ForwardedValues and the TTLs are deprecated in favour of cache policies,
// but existing distributions still use them and get-distribution-config
// prints them: a configuration copied from production must keep them.
#[allow(deprecated)]
fn cache_behavior(
    mut b: m::Behavior,
    path: &str,
    targets: &BTreeSet<String>,
) -> Result<sdk::CacheBehavior> {
    let Some(path_pattern) = b.path_pattern.take() else {
        return Err(Problem::new(
            path,
            "missing field `PathPattern` (which requests this behavior serves, e.g. \"/api/*\")"
                .into(),
        ));
    };
    let parts = behavior_parts(&mut b, path, targets)?;
    built(
        behavior_fields!(
            sdk::CacheBehavior::builder().path_pattern(path_pattern),
            b,
            parts
        )
        .build(),
        path,
    )
}

fn methods(items: &[String], path: &str) -> Result<Vec<sdk::Method>> {
    items
        .iter()
        .enumerate()
        .map(|(i, method)| known(method, sdk::Method::values(), &format!("{path}.Items[{i}]")))
        .collect()
}

fn allowed_methods(a: m::AllowedMethods, path: &str) -> Result<sdk::AllowedMethods> {
    let (quantity, items) = counted(a.quantity, Some(a.items), path)?;
    let cached = match a.cached_methods {
        Some(cached) => {
            let cached_path = field(path, "CachedMethods");
            let (quantity, items) = list(cached, &cached_path)?;
            Some(built(
                sdk::CachedMethods::builder()
                    .quantity(quantity)
                    .set_items(Some(methods(&items, &cached_path)?))
                    .build(),
                &cached_path,
            )?)
        }
        None => None,
    };
    built(
        sdk::AllowedMethods::builder()
            .quantity(quantity)
            .set_items(Some(methods(&items, path)?))
            .set_cached_methods(cached)
            .build(),
        path,
    )
}

fn forwarded_values(f: m::ForwardedValues, path: &str) -> Result<sdk::ForwardedValues> {
    let cookies = match f.cookies {
        Some(cookies) => {
            let cookies_path = field(path, "Cookies");
            let names = match cookies.whitelisted_names {
                Some(names) => {
                    let names_path = field(&cookies_path, "WhitelistedNames");
                    let (quantity, items) = strings(names, &names_path)?;
                    Some(built(
                        sdk::CookieNames::builder()
                            .quantity(quantity)
                            .set_items(items)
                            .build(),
                        &names_path,
                    )?)
                }
                None => None,
            };
            Some(built(
                sdk::CookiePreference::builder()
                    .forward(known::<sdk::ItemSelection>(
                        &cookies.forward,
                        sdk::ItemSelection::values(),
                        &field(&cookies_path, "Forward"),
                    )?)
                    .set_whitelisted_names(names)
                    .build(),
                &cookies_path,
            )?)
        }
        None => None,
    };
    let headers = match f.headers {
        Some(headers) => {
            let headers_path = field(path, "Headers");
            let (quantity, items) = strings(headers, &headers_path)?;
            Some(built(
                sdk::Headers::builder()
                    .quantity(quantity)
                    .set_items(items)
                    .build(),
                &headers_path,
            )?)
        }
        None => None,
    };
    let keys = match f.query_string_cache_keys {
        Some(keys) => {
            let keys_path = field(path, "QueryStringCacheKeys");
            let (quantity, items) = strings(keys, &keys_path)?;
            Some(built(
                sdk::QueryStringCacheKeys::builder()
                    .quantity(quantity)
                    .set_items(items)
                    .build(),
                &keys_path,
            )?)
        }
        None => None,
    };
    built(
        sdk::ForwardedValues::builder()
            .query_string(f.query_string)
            .set_cookies(cookies)
            .set_headers(headers)
            .set_query_string_cache_keys(keys)
            .build(),
        path,
    )
}

fn error_response(e: m::ErrorResponse, path: &str) -> Result<sdk::CustomErrorResponse> {
    built(
        sdk::CustomErrorResponse::builder()
            .error_code(e.error_code)
            .set_response_page_path(e.response_page_path)
            .set_response_code(e.response_code)
            .set_error_caching_min_ttl(e.error_caching_min_ttl)
            .build(),
        path,
    )
}

// Certificate and CertificateSource are deprecated, but
// get-distribution-config still prints them.
#[allow(deprecated)]
fn certificate(v: m::Certificate, path: &str) -> Result<sdk::ViewerCertificate> {
    Ok(sdk::ViewerCertificate::builder()
        .set_cloud_front_default_certificate(v.cloud_front_default_certificate)
        .set_iam_certificate_id(v.iam_certificate_id)
        .set_acm_certificate_arn(v.acm_certificate_arn)
        .set_ssl_support_method(known_opt(
            v.ssl_support_method.as_deref(),
            sdk::SslSupportMethod::values(),
            &field(path, "SSLSupportMethod"),
        )?)
        .set_minimum_protocol_version(known_opt(
            v.minimum_protocol_version.as_deref(),
            sdk::MinimumProtocolVersion::values(),
            &field(path, "MinimumProtocolVersion"),
        )?)
        .set_certificate(v.certificate)
        .set_certificate_source(known_opt(
            v.certificate_source.as_deref(),
            sdk::CertificateSource::values(),
            &field(path, "CertificateSource"),
        )?)
        .build())
}

fn restrictions(r: m::Restrictions, path: &str) -> Result<sdk::Restrictions> {
    let geo_path = field(path, "GeoRestriction");
    let geo = r.geo_restriction;
    let (quantity, items) = counted(geo.quantity, geo.items, &geo_path)?;
    let geo = built(
        sdk::GeoRestriction::builder()
            .restriction_type(known::<sdk::GeoRestrictionType>(
                &geo.restriction_type,
                sdk::GeoRestrictionType::values(),
                &field(&geo_path, "RestrictionType"),
            )?)
            .quantity(quantity)
            .set_items((!items.is_empty()).then_some(items))
            .build(),
        &geo_path,
    )?;
    Ok(sdk::Restrictions::builder().geo_restriction(geo).build())
}
