//! EKS clusters by name (`eks: {cluster, region}`), the way `aws eks
//! update-kubeconfig` and `aws eks get-token` reach them: the endpoint and
//! CA from EKS DescribeCluster, and a bearer token that is a presigned STS
//! `GetCallerIdentity` URL (signed with the `x-k8s-aws-id: CLUSTER` header,
//! valid 60 s to present and 15 min once accepted), `k8s-aws-v1.` +
//! base64url. The cluster's authenticator resolves the token to the AWS
//! principal, so access entries / `aws-auth` decide what it may do.
//!
//! The token is made again whenever the client is (every 10 minutes, see
//! `connect::Connection`), from the credentials resolved at connection.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use deployctl_plan::raw::EksCluster;
use kube::Config;

use crate::connect::ConnectError;

/// How long a presigned token may wait before it is presented.
const PRESIGN_EXPIRY: Duration = Duration::from_secs(60);

/// What a fresh token is made from.
#[derive(Clone)]
pub struct EksAuth {
    pub cluster: String,
    pub region: String,
    credentials: Credentials,
}

impl std::fmt::Debug for EksAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksAuth")
            .field("cluster", &self.cluster)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl EksAuth {
    /// A bearer token for the cluster, signed now.
    pub fn token(&self) -> Result<String, ConnectError> {
        token(
            &self.credentials,
            &self.region,
            &self.cluster,
            SystemTime::now(),
        )
    }
}

/// The token `aws eks get-token --cluster-name CLUSTER` prints, signed at
/// `now` with `credentials` for STS in `region`.
pub fn token(
    credentials: &Credentials,
    region: &str,
    cluster: &str,
    now: SystemTime,
) -> Result<String, ConnectError> {
    let failed =
        |e: &dyn std::fmt::Display| ConnectError::Eks(format!("cannot sign the EKS token: {e}"));
    let host = format!("sts.{region}.amazonaws.com");
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRY);
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let headers = [("host", host.as_str()), ("x-k8s-aws-id", cluster)];
    let signable = SignableRequest::new("GET", &url, headers.into_iter(), SignableBody::Bytes(&[]))
        .map_err(|e| failed(&e))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    let mut request = http::Request::builder()
        .method("GET")
        .uri(&url)
        .body(())
        .map_err(|e| failed(&e))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(format!(
        "k8s-aws-v1.{}",
        URL_SAFE_NO_PAD.encode(request.uri().to_string())
    ))
}

/// DER certificates from `data`, EKS's `certificateAuthority.data`:
/// base64 of a PEM bundle.
pub fn ca_certificates(data: &str) -> Result<Vec<Vec<u8>>, ConnectError> {
    let bad =
        |why: String| ConnectError::Eks(format!("the cluster's certificate authority: {why}"));
    let pem = STANDARD
        .decode(data.trim())
        .map_err(|e| bad(e.to_string()))?;
    let pem = String::from_utf8(pem).map_err(|e| bad(e.to_string()))?;
    let mut certificates = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            body = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE") {
            let text = body.take().unwrap_or_default();
            certificates.push(STANDARD.decode(text).map_err(|e| bad(e.to_string()))?);
        } else if let Some(text) = body.as_mut() {
            text.push_str(line);
        }
    }
    if certificates.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(certificates)
}

/// The cluster as DescribeCluster tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub arn: String,
    pub endpoint: String,
    pub certificate_authority: String,
}

/// Resolves `eks` through the standard AWS chain (region from the plan,
/// else the chain's; `AWS_ENDPOINT_URL` honoured): the cluster's endpoint
/// and CA, and the credentials its tokens are signed with.
pub async fn resolve(eks: &EksCluster) -> Result<(Described, EksAuth), ConnectError> {
    let sdk = deployctl_aws::config::load(eks.region.as_deref()).await;
    resolve_with(&sdk, eks).await
}

/// [`resolve`] with a loaded SDK configuration (tests add their endpoint
/// and call recorder to it).
pub async fn resolve_with(
    sdk: &aws_config::SdkConfig,
    eks: &EksCluster,
) -> Result<(Described, EksAuth), ConnectError> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| ConnectError::Eks("no AWS region: set `eks.region` or AWS_REGION".into()))?;
    let client = aws_sdk_eks::Client::from_conf(
        aws_sdk_eks::config::Builder::from(sdk)
            .retry_config(deployctl_aws::config::retry())
            .timeout_config(deployctl_aws::config::timeouts())
            .build(),
    );
    let out = client
        .describe_cluster()
        .name(&eks.cluster)
        .send()
        .await
        .map_err(|e| {
            ConnectError::Eks(format!(
                "eks:DescribeCluster {}: {}",
                eks.cluster,
                deployctl_aws::map_sdk_error(e, "eks:DescribeCluster")
            ))
        })?;
    let cluster = out
        .cluster()
        .ok_or_else(|| ConnectError::Eks(format!("EKS answered no cluster {}", eks.cluster)))?;
    let endpoint = cluster.endpoint().ok_or_else(|| {
        ConnectError::Eks(format!(
            "EKS cluster {} has no endpoint yet (is it ACTIVE?)",
            eks.cluster
        ))
    })?;
    let certificate_authority = cluster
        .certificate_authority()
        .and_then(|ca| ca.data())
        .ok_or_else(|| {
            ConnectError::Eks(format!(
                "EKS cluster {} has no certificate authority",
                eks.cluster
            ))
        })?;
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| ConnectError::Eks("no AWS credentials provider".into()))?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| ConnectError::Eks(format!("no AWS credentials for the EKS token: {e}")))?;
    Ok((
        Described {
            arn: cluster.arn().unwrap_or_default().to_owned(),
            endpoint: endpoint.to_owned(),
            certificate_authority: certificate_authority.to_owned(),
        },
        EksAuth {
            cluster: eks.cluster.clone(),
            region,
            credentials,
        },
    ))
}

/// The client configuration for a described cluster, with a token.
pub fn config(described: &Described, auth: &EksAuth) -> Result<Config, ConnectError> {
    let uri = described
        .endpoint
        .parse()
        .map_err(|e| ConnectError::Eks(format!("endpoint {}: {e}", described.endpoint)))?;
    let mut config = Config::new(uri);
    config.root_cert = Some(ca_certificates(&described.certificate_authority)?);
    config.auth_info.token = Some(auth.token()?.into());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_a_presigned_get_caller_identity_naming_the_cluster() {
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session".into()),
            None,
            "test",
        );
        let token = token(
            &credentials,
            "eu-west-1",
            "prod-euw1",
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        )
        .expect("a token");
        let encoded = token
            .strip_prefix("k8s-aws-v1.")
            .expect("the EKS token prefix");
        assert!(!encoded.contains('='), "unpadded base64url");
        let url =
            String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).expect("base64url")).expect("a URL");
        assert!(
            url.starts_with(
                "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Expires=60",
            "X-Amz-Signature=",
            "X-Amz-Security-Token=session",
            "x-k8s-aws-id",
        ] {
            assert!(url.contains(part), "{part} missing: {url}");
        }
        assert!(
            url.contains("AKIDEXAMPLE%2F20231114%2Feu-west-1%2Fsts%2Faws4_request"),
            "{url}"
        );
    }

    #[test]
    fn the_ca_is_read_from_base64_pem() {
        let der = [0x30u8, 0x82, 0x01, 0x0a];
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            STANDARD.encode(der)
        );
        assert_eq!(
            ca_certificates(&STANDARD.encode(pem)).expect("a CA"),
            vec![der.to_vec()]
        );
        assert!(ca_certificates(&STANDARD.encode("no certificate")).is_err());
    }
}
