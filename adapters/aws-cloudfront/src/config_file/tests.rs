//! The JSON → SDK mapping, on a configuration shaped like a real
//! `get-distribution-config` answer and on the mistakes people make.

use aws_sdk_cloudfront::types as sdk;

use super::{Problem, parse};

const PRODUCTION: &str = include_str!("../../tests/fixtures/get-distribution-config.json");

fn production() -> serde_json::Value {
    serde_json::from_str(PRODUCTION).expect("fixture is JSON")
}

/// `parse` of the fixture after `edit`; the problem it reports.
fn problem(edit: impl FnOnce(&mut serde_json::Value)) -> Problem {
    let mut doc = production();
    edit(&mut doc);
    parse(&doc.to_string()).expect_err("refused")
}

#[test]
fn the_get_distribution_config_answer_maps_field_by_field() {
    let config = parse(PRODUCTION).expect("parsed");
    assert_eq!(config.caller_reference, "cli-1690000000-123456");
    assert_eq!(config.comment, "production site (v2)");
    assert!(config.enabled);
    assert_eq!(config.default_root_object.as_deref(), Some("index.html"));
    assert_eq!(config.staging, Some(false));
    assert_eq!(config.is_ipv6_enabled, Some(true));
    assert_eq!(config.http_version, Some(sdk::HttpVersion::Http2and3));
    assert_eq!(config.price_class, Some(sdk::PriceClass::PriceClass100));
    assert_eq!(config.web_acl_id.as_deref(), Some(""));
    let aliases = config.aliases.as_ref().expect("aliases");
    assert_eq!(
        aliases.items.as_deref(),
        Some(&["www.example.com".to_owned()][..])
    );

    let origins = config.origins.as_ref().expect("origins");
    assert_eq!(origins.quantity, 3);
    let app = &origins.items[0];
    assert_eq!(
        (app.id.as_str(), app.domain_name.as_str()),
        ("app", "v2.origin.example.com")
    );
    assert_eq!(
        (app.connection_attempts, app.connection_timeout),
        (Some(3), Some(10))
    );
    let custom = app.custom_origin_config.as_ref().expect("custom origin");
    assert_eq!((custom.http_port, custom.https_port), (80, 443));
    assert_eq!(
        custom.origin_protocol_policy,
        sdk::OriginProtocolPolicy::HttpsOnly
    );
    assert_eq!(
        custom
            .origin_ssl_protocols
            .as_ref()
            .map(|p| p.items.clone()),
        Some(vec![sdk::SslProtocol::TlSv12])
    );
    assert_eq!(custom.origin_keepalive_timeout, Some(5));
    let header = &app
        .custom_headers
        .as_ref()
        .and_then(|h| h.items.clone())
        .expect("headers")[0];
    assert_eq!(header.header_name, "X-Origin-Verify");
    let shield = app.origin_shield.as_ref().expect("shield");
    assert!(shield.enabled);
    assert_eq!(shield.origin_shield_region.as_deref(), Some("us-east-1"));
    let assets = &origins.items[2];
    assert_eq!(assets.origin_path.as_deref(), Some("/v2"));
    assert!(assets.s3_origin_config.is_some());
    assert_eq!(
        assets.origin_access_control_id.as_deref(),
        Some("E2EXAMPLEOAC01")
    );

    let group = &config
        .origin_groups
        .as_ref()
        .and_then(|g| g.items.clone())
        .expect("groups")[0];
    assert_eq!(group.id, "app-with-failover");
    assert_eq!(
        group
            .failover_criteria
            .as_ref()
            .and_then(|f| f.status_codes.as_ref())
            .map(|s| s.items.clone()),
        Some(vec![502, 503])
    );
    assert_eq!(group.members.as_ref().map(|m| m.items.len()), Some(2));

    let default = config
        .default_cache_behavior
        .as_ref()
        .expect("default behavior");
    assert_eq!(default.target_origin_id, "app-with-failover");
    assert_eq!(
        default.viewer_protocol_policy,
        sdk::ViewerProtocolPolicy::RedirectToHttps
    );
    assert_eq!(default.compress, Some(true));
    assert_eq!(
        default.response_headers_policy_id.as_deref(),
        Some("67f7725c-6f97-4210-82d7-5512b31e9d03")
    );
    let function = &default
        .function_associations
        .as_ref()
        .and_then(|f| f.items.clone())
        .expect("functions")[0];
    assert_eq!(function.event_type, sdk::EventType::ViewerResponse);
    assert_eq!(
        default
            .trusted_signers
            .as_ref()
            .map(|t| (t.enabled, t.quantity)),
        Some((false, 0))
    );
    // Empty lists stay empty lists, with no Items, as CloudFront prints them.
    assert_eq!(
        default
            .lambda_function_associations
            .as_ref()
            .map(|l| (l.quantity, l.items.is_none())),
        Some((0, true))
    );

    let behaviors = config
        .cache_behaviors
        .as_ref()
        .and_then(|b| b.items.clone())
        .expect("behaviors");
    assert_eq!(behaviors[0].path_pattern, "/static/*");
    let legacy = &behaviors[1];
    assert_eq!(
        legacy.allowed_methods.as_ref().map(|a| a.items.len()),
        Some(7)
    );
    assert_eq!(
        (legacy.min_ttl, legacy.default_ttl, legacy.max_ttl),
        (Some(0), Some(86400), Some(31536000))
    );
    let forwarded = legacy.forwarded_values.as_ref().expect("forwarded values");
    assert!(forwarded.query_string);
    assert_eq!(
        forwarded.cookies.as_ref().map(|c| c.forward.clone()),
        Some(sdk::ItemSelection::Whitelist)
    );
    let lambda = &legacy
        .lambda_function_associations
        .as_ref()
        .and_then(|l| l.items.clone())
        .expect("lambdas")[0];
    assert_eq!(lambda.event_type, sdk::EventType::OriginRequest);
    assert_eq!(lambda.include_body, Some(false));

    let error = &config
        .custom_error_responses
        .as_ref()
        .and_then(|c| c.items.clone())
        .expect("errors")[0];
    assert_eq!(
        (error.error_code, error.error_caching_min_ttl),
        (404, Some(10))
    );
    let certificate = config.viewer_certificate.as_ref().expect("certificate");
    assert_eq!(
        certificate.ssl_support_method,
        Some(sdk::SslSupportMethod::SniOnly)
    );
    assert_eq!(
        certificate.minimum_protocol_version,
        Some(sdk::MinimumProtocolVersion::TlSv122021)
    );
    let geo = config
        .restrictions
        .as_ref()
        .and_then(|r| r.geo_restriction.as_ref())
        .expect("geo");
    assert_eq!(geo.restriction_type, sdk::GeoRestrictionType::Blacklist);
    assert_eq!(config.logging.as_ref().map(|l| l.enabled), Some(false));
}

#[test]
fn the_bare_object_is_the_same_configuration() {
    let inner = production()["DistributionConfig"].to_string();
    assert_eq!(parse(&inner), parse(PRODUCTION));
}

#[test]
fn a_minimal_hand_written_file_is_enough() {
    let config = parse(
        r#"{"Origins": {"Items": [{"Id": "o", "DomainName": "a.example.com",
             "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "https-only"}}]},
            "DefaultCacheBehavior": {"TargetOriginId": "o", "ViewerProtocolPolicy": "allow-all"}}"#,
    )
    .expect("parsed");
    assert_eq!(config.origins.as_ref().map(|o| o.quantity), Some(1));
    assert!(config.enabled);
    assert_eq!(config.comment, "");
}

#[test]
fn an_unknown_field_is_named_with_its_json_path() {
    let p = problem(|doc| {
        let origin = &mut doc["DistributionConfig"]["Origins"]["Items"][0];
        let domain = origin["DomainName"].take();
        let map = origin.as_object_mut().expect("object");
        map.remove("DomainName");
        map.insert("DomainNme".into(), domain);
    });
    assert_eq!(p.path, "DistributionConfig.Origins.Items[0].DomainNme");
    assert!(
        p.message.contains("unknown field `DomainNme`"),
        "{}",
        p.message
    );
    assert!(p.hint().contains("not supported yet"), "{}", p.hint());

    // A field this build does not map: refused, not dropped.
    let p = problem(|doc| {
        doc["DistributionConfig"]["DefaultCacheBehavior"]["GrpcConfig"] =
            serde_json::json!({"Enabled": false});
        doc["DistributionConfig"]["TenantConfig"] = serde_json::json!({});
    });
    assert_eq!(p.path, "DistributionConfig.TenantConfig");
}

#[test]
fn wrong_types_missing_fields_and_bad_values_are_located() {
    let p = problem(|doc| {
        doc["DistributionConfig"]["Origins"]["Items"][1]["CustomOriginConfig"]["HTTPPort"] =
            "80".into();
    });
    assert_eq!(
        p.path,
        "DistributionConfig.Origins.Items[1].CustomOriginConfig.HTTPPort"
    );
    assert!(p.message.contains("invalid type"), "{}", p.message);

    let p = problem(|doc| {
        doc["DistributionConfig"]
            .as_object_mut()
            .expect("object")
            .remove("DefaultCacheBehavior");
    });
    assert_eq!(p.path, "DistributionConfig");
    assert!(
        p.message.contains("missing field `DefaultCacheBehavior`"),
        "{}",
        p.message
    );

    let p = problem(|doc| {
        doc["DistributionConfig"]["CacheBehaviors"]["Items"][1]["AllowedMethods"]["Items"][2] =
            "FETCH".into();
    });
    assert_eq!(
        p.path,
        "DistributionConfig.CacheBehaviors.Items[1].AllowedMethods.Items[2]"
    );
    assert!(
        p.message.contains("\"FETCH\" is not one of") && p.message.contains("PATCH"),
        "{}",
        p.message
    );

    let p = problem(|doc| {
        doc["DistributionConfig"]["Origins"]["Quantity"] = 2.into();
    });
    assert_eq!(p.path, "DistributionConfig.Origins.Quantity");

    let p = problem(|doc| {
        doc["DistributionConfig"]["CacheBehaviors"]["Items"][0]["TargetOriginId"] = "gone".into();
    });
    assert_eq!(
        p.path,
        "DistributionConfig.CacheBehaviors.Items[0].TargetOriginId"
    );
    assert!(p.message.contains("app-with-failover"), "{}", p.message);

    let p = problem(|doc| {
        doc["DistributionConfig"]["Enabled"] = false.into();
    });
    assert_eq!(p.path, "DistributionConfig.Enabled");

    let p = problem(|doc| {
        doc["DistributionConfig"]["DefaultCacheBehavior"]["PathPattern"] = "/*".into();
    });
    assert_eq!(
        p.path,
        "DistributionConfig.DefaultCacheBehavior.PathPattern"
    );
}

#[test]
fn documents_that_are_not_a_config_are_refused() {
    let p = parse("{\"DistributionConfig\": ").expect_err("refused");
    assert!(p.message.starts_with("not JSON (line 1"), "{}", p.message);
    assert_eq!(parse("[1]").expect_err("refused").path, "");
    let p = parse(r#"{"ETag": "x", "DistributionConfig": {}, "Extra": 1}"#).expect_err("refused");
    assert_eq!(p.path, "Extra");
    let p = parse(r#"{"ETag": "x", "Distribution": {}}"#).expect_err("refused");
    assert!(
        p.message.contains("get-distribution-config"),
        "{}",
        p.message
    );
}
