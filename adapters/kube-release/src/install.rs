//! Installing the Release CRD and waiting until the API server serves it.
//!
//! The controller installs the CRD itself (server-side apply, so a newer
//! field set replaces an older one and a second controller's apply is a
//! no-op) because a controller that runs before its CRD exists only logs
//! errors; clusters that keep CRDs in git apply `deployctl controller
//! --print-crd` and run the controller with `--no-install-crd`, which then
//! only checks that the CRD is there.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResourceExt};

use crate::KubeReleaseError;
use crate::crd::{CRD_NAME, Release};

/// The field manager of everything the controller writes.
pub const FIELD_MANAGER: &str = "deployctl-controller";

/// The CRD as JSON (for `kubectl apply -f -`).
pub fn crd_json() -> String {
    serde_json::to_string_pretty(&Release::crd()).unwrap_or_default()
}

/// Makes sure the CRD exists (installing or updating it when `install`)
/// and is Established, waiting at most `timeout`.
pub async fn ensure_crd(
    client: &Client,
    install: bool,
    timeout: Duration,
) -> Result<(), KubeReleaseError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    if install {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        crds.patch(CRD_NAME, &params, &Patch::Apply(Release::crd()))
            .await
            .map_err(|e| KubeReleaseError::api(format!("installing the CRD {CRD_NAME}"), e))?;
    } else if crds
        .get_opt(CRD_NAME)
        .await
        .map_err(|e| KubeReleaseError::api(format!("reading the CRD {CRD_NAME}"), e))?
        .is_none()
    {
        return Err(KubeReleaseError::CrdMissing(CRD_NAME));
    }
    wait_established(&crds, timeout).await
}

async fn wait_established(
    crds: &Api<CustomResourceDefinition>,
    timeout: Duration,
) -> Result<(), KubeReleaseError> {
    let deadline = Instant::now() + timeout;
    loop {
        let detail = match crds.get_opt(CRD_NAME).await {
            Ok(Some(crd)) => {
                let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
                if conditions
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                {
                    return Ok(());
                }
                conditions
                    .iter()
                    .map(|c| {
                        format!(
                            "{}={} {}",
                            c.type_,
                            c.status,
                            c.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Ok(None) => "it does not exist".to_string(),
            Err(error) => error.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(KubeReleaseError::NotEstablished {
                crd: CRD_NAME,
                seconds: timeout.as_secs(),
                detail: if detail.is_empty() {
                    "no conditions yet".into()
                } else {
                    detail
                },
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
