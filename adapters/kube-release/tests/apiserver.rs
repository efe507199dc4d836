//! Conformance of the repo's test Kubernetes API server
//! (`tests/emulators/kubeapi.py`) with what the real kube client and
//! kube-lease-manager send and expect: every test here goes over HTTP
//! through `kube::Client`, `kube::runtime::watcher` or `LeaseManager`.
//!
//! `bash tests/moto.sh -- cargo test -p deployctl-kube-release --test
//! apiserver` starts the server and sets `DEPLOYCTL_TEST_KUBEAPI_URL`;
//! without it every test is skipped with a message. Tests run in parallel
//! on one server and are isolated by namespace (each test creates its own).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::runtime::watcher;
use kube::{Api, Client, Config, CustomResource, CustomResourceExt, ResourceExt};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

const CRD_NAME: &str = "widgets.conformance.deployctl.test";

/// The custom resource these tests use; its own group, so the Release CRD
/// of the controller's tests never collides with it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "conformance.deployctl.test",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct WidgetSpec {
    size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    color: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phase: Option<String>,
}

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The server's URL, or `None` after saying why `test` is skipped.
fn kubeapi(test: &str) -> Option<String> {
    match std::env::var("DEPLOYCTL_TEST_KUBEAPI_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            // Straight to stderr: libtest captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: DEPLOYCTL_TEST_KUBEAPI_URL is not set; `bash tests/moto.sh -- \
                 cargo test -p deployctl-kube-release --test apiserver` starts the server and sets it"
            );
            None
        }
    }
}

async fn client(url: &str) -> Result<Client, Box<dyn std::error::Error>> {
    let config = Config::new(url.parse()?);
    Ok(Client::try_from(config)?)
}

/// A namespace of the test's own (`NAME-PID-MILLIS`: unique across runs
/// against one long-lived server too), created on the server.
async fn namespace(client: &Client, name: &str) -> Result<String, Box<dyn std::error::Error>> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let ns = format!("{name}-{}-{}", std::process::id(), millis % 1_000_000);
    let api: Api<Namespace> = Api::all(client.clone());
    let body = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &body).await?;
    Ok(ns)
}

/// Installs the Widget CRD the way a controller does (server-side apply,
/// then waiting for Established) and returns it.
async fn install_crd(
    client: &Client,
) -> Result<CustomResourceDefinition, Box<dyn std::error::Error>> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        CRD_NAME,
        &PatchParams::apply("apiserver-conformance").force(),
        &Patch::Apply(Widget::crd()),
    )
    .await?;
    let established = await_condition(crds, CRD_NAME, conditions::is_crd_established());
    let crd = tokio::time::timeout(Duration::from_secs(10), established).await??;
    crd.ok_or_else(|| "the CRD vanished while waiting for Established".into())
}

fn widget(name: &str, size: i64) -> Widget {
    Widget::new(name, WidgetSpec { size, color: None })
}

/// The `kube::Error::Api` status code and reason of a failed call.
fn api_error<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

fn rv(obj: &impl ResourceExt) -> u64 {
    obj.resource_version()
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// One raw HTTP/1.1 request (for what kube-rs has no typed call for here:
/// the control endpoints and JSON patch, whose kube feature is off):
/// the status code and the body.
async fn raw(
    url: &str,
    method: &str,
    path_and_query: &str,
    content_type: &str,
    body: &str,
) -> Result<(u16, String), Box<dyn std::error::Error>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let request = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(format!("no HTTP status line in {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// POSTs to a control endpoint of the server (`/_emulator/...`).
async fn control(url: &str, path_and_query: &str) -> Result<String, Box<dyn std::error::Error>> {
    match raw(url, "POST", path_and_query, "application/json", "").await? {
        (200, body) => Ok(body),
        (code, body) => Err(format!("control {path_and_query} answered {code}: {body}").into()),
    }
}

#[tokio::test]
async fn crd_install_waits_for_established_and_registers_the_kind() -> TestResult {
    let Some(url) = kubeapi("crd_install_waits_for_established_and_registers_the_kind") else {
        return Ok(());
    };
    let client = client(&url).await?;
    let crd = install_crd(&client).await?;
    let status = crd.status.ok_or("an established CRD has a status")?;
    let conditions = status.conditions.unwrap_or_default();
    for kind in ["Established", "NamesAccepted"] {
        let condition = conditions
            .iter()
            .find(|c| c.type_ == kind)
            .ok_or(format!("no {kind} condition"))?;
        assert_eq!(condition.status, "True", "{kind}");
    }
    let accepted = status.accepted_names.ok_or("no acceptedNames")?;
    assert_eq!(
        (accepted.kind.as_str(), accepted.plural.as_str()),
        ("Widget", "widgets")
    );
    assert_eq!(status.stored_versions, Some(vec!["v1".to_string()]));

    // Discovery serves the kind and its status subresource.
    let resources = client
        .list_api_group_resources("conformance.deployctl.test/v1")
        .await?;
    let names: Vec<_> = resources
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert!(
        names.contains(&"widgets") && names.contains(&"widgets/status"),
        "{names:?}"
    );
    let groups = client.list_api_groups().await?;
    assert!(
        groups
            .groups
            .iter()
            .any(|g| g.name == "conformance.deployctl.test")
    );
    assert!(
        groups
            .groups
            .iter()
            .any(|g| g.name == "coordination.k8s.io")
    );
    let version = client.apiserver_version().await?;
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );

    // Applying the same CRD again changes nothing: no new resourceVersion.
    let again = install_crd(&client).await?;
    assert_eq!(again.resource_version(), crd.metadata.resource_version);

    // A kind no CRD registers is not served.
    let gvk = GroupVersionKind::gvk("unregistered.deployctl.test", "v1", "Gadget");
    let gadgets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk(&gvk));
    assert_eq!(api_error(gadgets.list(&ListParams::default()).await).0, 404);

    // A CRD whose name is not PLURAL.GROUP is invalid.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut bad = Widget::crd();
    bad.metadata.name = Some("wrong.conformance.deployctl.test".into());
    let (code, reason) = api_error(crds.create(&PostParams::default(), &bad).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    Ok(())
}

#[tokio::test]
async fn create_get_list_and_stale_replace_conflicts() -> TestResult {
    let Some(url) = kubeapi("create_get_list_and_stale_replace_conflicts") else {
        return Ok(());
    };
    let client = client(&url).await?;
    install_crd(&client).await?;
    let ns = namespace(&client, "crud").await?;
    let api: Api<Widget> = Api::namespaced(client.clone(), &ns);

    let created = api
        .create(&PostParams::default(), &widget("one", 1))
        .await?;
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert!(rv(&created) > 0);
    let (code, reason) = api_error(api.create(&PostParams::default(), &widget("one", 1)).await);
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let mut labelled = widget("two", 2);
    labelled.metadata.labels = Some(BTreeMap::from([("tier".into(), "gold".into())]));
    api.create(&PostParams::default(), &labelled).await?;
    let mut generated = widget("", 3);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = api.create(&PostParams::default(), &generated).await?;
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);

    let got = api.get("one").await?;
    assert_eq!(got.spec.size, 1);
    // Metadata-only reads (PartialObjectMetadata), as metadata watchers use.
    let meta = api.get_metadata("one").await?;
    assert_eq!(meta.metadata.uid, got.metadata.uid);
    let metas = api
        .list_metadata(&ListParams::default().labels("tier=gold"))
        .await?;
    assert_eq!(metas.items.len(), 1);
    assert_eq!(api_error(api.get("absent").await), (404, "NotFound".into()));

    let all = api.list(&ListParams::default()).await?;
    assert_eq!(all.items.len(), 3);
    let gold = api.list(&ListParams::default().labels("tier=gold")).await?;
    assert_eq!(
        gold.iter().map(|w| w.name_any()).collect::<Vec<_>>(),
        ["two"]
    );
    let not_gold = api
        .list(&ListParams::default().labels("tier!=gold"))
        .await?;
    assert_eq!(not_gold.items.len(), 2);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=one"))
        .await?;
    assert_eq!(
        by_name.iter().map(|w| w.name_any()).collect::<Vec<_>>(),
        ["one"]
    );
    // Pages of one, chained with continue tokens, list everything once.
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(1);
    loop {
        let page = api.list(&params).await?;
        seen.extend(page.iter().map(|w| w.name_any()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    seen.sort();
    let mut expected: Vec<_> = all.iter().map(|w| w.name_any()).collect();
    expected.sort();
    assert_eq!(seen, expected);

    // Replace with the current resourceVersion works and bumps it...
    let mut fresh = got.clone();
    fresh.spec.size = 10;
    let replaced = api.replace("one", &PostParams::default(), &fresh).await?;
    assert!(rv(&replaced) > rv(&got));
    assert_eq!(replaced.metadata.generation, Some(2));
    // ...and with the stale one it is a 409 Conflict.
    let mut stale = got.clone();
    stale.spec.size = 20;
    let (code, reason) = api_error(api.replace("one", &PostParams::default(), &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(api.get("one").await?.spec.size, 10);
    // A custom resource update without a resourceVersion is invalid.
    let mut unconditional = replaced.clone();
    unconditional.metadata.resource_version = None;
    assert_eq!(
        api_error(
            api.replace("one", &PostParams::default(), &unconditional)
                .await
        )
        .0,
        422
    );

    // Objects live only in namespaces that exist.
    let elsewhere: Api<Widget> = Api::namespaced(client.clone(), "no-such-namespace-here");
    assert_eq!(
        api_error(
            elsewhere
                .create(&PostParams::default(), &widget("x", 1))
                .await
        )
        .0,
        404
    );
    Ok(())
}

#[tokio::test]
async fn generation_counts_spec_changes_and_status_is_a_separate_subresource() -> TestResult {
    let Some(url) = kubeapi("generation_counts_spec_changes_and_status_is_a_separate_subresource")
    else {
        return Ok(());
    };
    let client = client(&url).await?;
    install_crd(&client).await?;
    let ns = namespace(&client, "status").await?;
    let api: Api<Widget> = Api::namespaced(client.clone(), &ns);

    // Status sent on create is dropped: status belongs to /status.
    let mut with_status = widget("w", 1);
    with_status.status = Some(WidgetStatus {
        phase: Some("Sneaky".into()),
        ..Default::default()
    });
    let created = api.create(&PostParams::default(), &with_status).await?;
    assert_eq!(created.status, None);

    // /status changes only status: the spec part of the patch is ignored.
    let patch =
        json!({"status": {"phase": "Ready", "observedGeneration": 1}, "spec": {"size": 99}});
    let after_status = api
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    assert_eq!(after_status.spec.size, 1);
    assert_eq!(after_status.metadata.generation, Some(1));
    assert_eq!(
        after_status
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref()),
        Some("Ready")
    );
    assert!(rv(&after_status) > rv(&created));

    // The main resource changes spec (generation + 1) and ignores status.
    let patch = json!({"spec": {"size": 2}, "status": {"phase": "Overwritten"}});
    let after_spec = api
        .patch("w", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    assert_eq!(after_spec.spec.size, 2);
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(
        after_spec.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Ready")
    );

    // Metadata changes bump the resourceVersion, not the generation.
    let patch = json!({"metadata": {"labels": {"a": "b"}}});
    let after_label = api
        .patch("w", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    assert_eq!(after_label.metadata.generation, Some(2));
    assert!(rv(&after_label) > rv(&after_spec));

    // A write that changes nothing stores nothing.
    let noop = api
        .patch("w", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    assert_eq!(rv(&noop), rv(&after_label));

    // replace_status with a stale resourceVersion conflicts; with the
    // current one it replaces the status only.
    let mut stale = after_status.clone();
    stale.status = Some(WidgetStatus {
        phase: Some("Stale".into()),
        ..Default::default()
    });
    let (code, _) = api_error(
        api.replace_status("w", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!(code, 409);
    let mut current = api.get_status("w").await?;
    current.status = Some(WidgetStatus {
        phase: Some("Done".into()),
        observed_generation: Some(2),
    });
    current.spec.size = 1000;
    let replaced = api
        .replace_status("w", &PostParams::default(), &current)
        .await?;
    assert_eq!(replaced.spec.size, 2);
    assert_eq!(replaced.status.and_then(|s| s.phase), Some("Done".into()));

    // Server-side apply on /status (what a controller does for status).
    let status_config = json!({
        "apiVersion": "conformance.deployctl.test/v1", "kind": "Widget",
        "status": {"phase": "Applied"}, "spec": {"size": 12345}
    });
    let applied = api
        .patch_status(
            "w",
            &PatchParams::apply("controller").force(),
            &Patch::Apply(&status_config),
        )
        .await?;
    assert_eq!(applied.spec.size, 2);
    assert_eq!(applied.status.and_then(|s| s.phase), Some("Applied".into()));
    let owner = applied
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|m| m.manager.as_deref() == Some("controller"))
        .ok_or("the status applier is recorded in managedFields")?;
    assert_eq!(owner.subresource.as_deref(), Some("status"));
    Ok(())
}

#[tokio::test]
async fn merge_json_strategic_and_server_side_apply_patches() -> TestResult {
    let Some(url) = kubeapi("merge_json_strategic_and_server_side_apply_patches") else {
        return Ok(());
    };
    let client = client(&url).await?;
    install_crd(&client).await?;
    let ns = namespace(&client, "patch").await?;
    let api: Api<Widget> = Api::namespaced(client.clone(), &ns);

    // Apply creates a missing object and owns exactly what it sent.
    let config = json!({
        "apiVersion": "conformance.deployctl.test/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 1, "color": "red"}
    });
    let created = api
        .patch("w", &PatchParams::apply("alice"), &Patch::Apply(&config))
        .await?;
    assert_eq!(
        created.spec,
        WidgetSpec {
            size: 1,
            color: Some("red".into())
        }
    );
    let managers: Vec<_> = created
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| (m.manager.clone(), m.operation.clone()))
        .collect();
    assert_eq!(managers, [(Some("alice".into()), Some("Apply".into()))]);

    // Another applier changing alice's field conflicts...
    let bob = json!({
        "apiVersion": "conformance.deployctl.test/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 2}
    });
    let (code, reason) = api_error(
        api.patch("w", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    // ...unless it forces, and then it owns the field.
    let forced = api
        .patch("w", &PatchParams::apply("bob").force(), &Patch::Apply(&bob))
        .await?;
    assert_eq!(forced.spec.size, 2);
    // Alice stops applying color: her field goes; size stays bob's.
    let alice_again = json!({
        "apiVersion": "conformance.deployctl.test/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 2}
    });
    let dropped = api
        .patch(
            "w",
            &PatchParams::apply("alice"),
            &Patch::Apply(&alice_again),
        )
        .await?;
    assert_eq!(
        dropped.spec,
        WidgetSpec {
            size: 2,
            color: None
        }
    );

    // Merge patch.
    let merged = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"color": "blue"}})),
        )
        .await?;
    assert_eq!(merged.spec.color.as_deref(), Some("blue"));
    // A merge patch carrying a stale resourceVersion is a conflict.
    let stale =
        json!({"metadata": {"resourceVersion": created.resource_version()}, "spec": {"size": 5}});
    assert_eq!(
        api_error(
            api.patch("w", &PatchParams::default(), &Patch::Merge(&stale))
                .await
        )
        .0,
        409
    );

    // JSON patch, including a failing test operation.
    let path = format!("/apis/conformance.deployctl.test/v1/namespaces/{ns}/widgets/w");
    let ops = json!([
        {"op": "test", "path": "/spec/color", "value": "blue"},
        {"op": "replace", "path": "/spec/size", "value": 7}
    ]);
    let (code, body) = raw(
        &url,
        "PATCH",
        &path,
        "application/json-patch+json",
        &ops.to_string(),
    )
    .await?;
    assert_eq!(code, 200, "{body}");
    let patched = api.get("w").await?;
    assert_eq!(patched.spec.size, 7);
    let ops = json!([
        {"op": "test", "path": "/spec/color", "value": "green"},
        {"op": "replace", "path": "/spec/size", "value": 8}
    ]);
    let (code, body) = raw(
        &url,
        "PATCH",
        &path,
        "application/json-patch+json",
        &ops.to_string(),
    )
    .await?;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("\"reason\": \"Invalid\""), "{body}");

    // Strategic merge patch is not served for custom resources...
    let strategic = json!({"spec": {"size": 9}});
    assert_eq!(
        api_error(
            api.patch("w", &PatchParams::default(), &Patch::Strategic(&strategic))
                .await
        )
        .0,
        415
    );
    // ...but is for built-in types, with metadata.finalizers merged as a set.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cm".into()),
            finalizers: Some(vec!["a.test/one".into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    cm.data = Some(BTreeMap::from([("k".into(), "v".into())]));
    maps.create(&PostParams::default(), &cm).await?;
    let patch = json!({"metadata": {"finalizers": ["b.test/two"]}, "data": {"k2": "v2"}});
    let cm = maps
        .patch("cm", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    assert_eq!(cm.finalizers(), ["a.test/one", "b.test/two"]);
    assert_eq!(cm.data.map(|d| d.len()), Some(2));
    let clear = json!({"metadata": {"finalizers": null}});
    maps.patch("cm", &PatchParams::default(), &Patch::Merge(&clear))
        .await?;

    // Schema pruning: unknown fields are dropped as Kubernetes prunes them.
    let junk = json!({"spec": {"unknownField": 1}});
    let pruned = api
        .patch("w", &PatchParams::default(), &Patch::Merge(&junk))
        .await?;
    let raw: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &ApiResource::erase::<Widget>(&()));
    let dynamic = raw.get("w").await?;
    assert!(
        dynamic.data["spec"].get("unknownField").is_none(),
        "{:?}",
        dynamic.data
    );
    assert_eq!(
        rv(&pruned),
        rv(&patched),
        "a patch that only adds pruned fields changes nothing"
    );
    Ok(())
}

/// Events the watcher yields, reduced to comparable labels.
fn label(event: &watcher::Event<Widget>) -> String {
    match event {
        watcher::Event::Init => "Init".into(),
        watcher::Event::InitApply(w) => format!("InitApply {} {}", w.name_any(), w.spec.size),
        watcher::Event::InitDone => "InitDone".into(),
        watcher::Event::Apply(w) => format!("Apply {} {}", w.name_any(), w.spec.size),
        watcher::Event::Delete(w) => format!("Delete {}", w.name_any()),
    }
}

#[tokio::test]
async fn watcher_sees_events_in_order_and_relists_after_compaction() -> TestResult {
    let Some(url) = kubeapi("watcher_sees_events_in_order_and_relists_after_compaction") else {
        return Ok(());
    };
    let client = client(&url).await?;
    install_crd(&client).await?;
    let ns = namespace(&client, "watch").await?;
    let api: Api<Widget> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &widget("before", 1))
        .await?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(api.clone(), watcher::Config::default());
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let item = match item {
                Ok(event) => label(&event),
                Err(watcher::Error::WatchError(status)) => format!("Error {}", status.code),
                Err(other) => format!("Error {other}"),
            };
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "nothing within 10 s".into())
    };
    assert_eq!(next().await, "Init");
    assert_eq!(next().await, "InitApply before 1");
    assert_eq!(next().await, "InitDone");

    api.create(&PostParams::default(), &widget("w", 1)).await?;
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 2}})),
    )
    .await?;
    api.delete("w", &DeleteParams::default()).await?;
    assert_eq!(next().await, "Apply w 1");
    assert_eq!(next().await, "Apply w 2");
    assert_eq!(next().await, "Delete w");

    // Another write the watcher does not see, then compaction of the
    // namespace's history: the open watch ends, the re-watch from the old
    // resourceVersion gets 410 Expired, and the watcher relists.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("bump".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    maps.create(&PostParams::default(), &cm).await?;
    control(&url, &format!("/_emulator/compact?namespace={ns}")).await?;
    assert_eq!(next().await, "Error 410");
    assert_eq!(next().await, "Init");
    assert_eq!(next().await, "InitApply before 1");
    assert_eq!(next().await, "InitDone");
    api.create(&PostParams::default(), &widget("after", 3))
        .await?;
    assert_eq!(next().await, "Apply after 3");
    task.abort();
    Ok(())
}

#[tokio::test]
async fn raw_watch_selectors_bookmarks_timeouts_and_streaming_lists() -> TestResult {
    let Some(url) = kubeapi("raw_watch_selectors_bookmarks_timeouts_and_streaming_lists") else {
        return Ok(());
    };
    let client = client(&url).await?;
    install_crd(&client).await?;
    let ns = namespace(&client, "rawwatch").await?;
    let api: Api<Widget> = Api::namespaced(client.clone(), &ns);
    let start = api.list(&ListParams::default()).await?;
    let start_rv = start.metadata.resource_version.unwrap_or_default();

    let mut w = widget("sel", 1);
    w.metadata.labels = Some(BTreeMap::from([("pick".into(), "yes".into())]));
    api.create(&PostParams::default(), &w).await?;
    api.create(&PostParams::default(), &widget("other", 1))
        .await?;
    let out = json!({"metadata": {"labels": {"pick": "no"}}});
    api.patch("sel", &PatchParams::default(), &Patch::Merge(&out))
        .await?;

    // From the list's resourceVersion, with a label selector: the object
    // leaving the selector arrives as DELETED; the stream ends by itself at
    // timeoutSeconds.
    let params = WatchParams::default().labels("pick=yes").timeout(2);
    let started = std::time::Instant::now();
    let events: Vec<_> = api.watch(&params, &start_rv).await?.try_collect().await?;
    let kinds: Vec<_> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(w) => format!("ADDED {}", w.name_any()),
            WatchEvent::Modified(w) => format!("MODIFIED {}", w.name_any()),
            WatchEvent::Deleted(w) => format!("DELETED {}", w.name_any()),
            WatchEvent::Bookmark(_) => "BOOKMARK".into(),
            WatchEvent::Error(e) => format!("ERROR {}", e.code),
        })
        .collect();
    assert_eq!(kinds, ["ADDED sel", "DELETED sel"]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "{took:?}"
    );

    // A watch from a compacted resourceVersion answers 410 as an ERROR event.
    control(&url, &format!("/_emulator/compact?namespace={ns}")).await?;
    let events: Vec<_> = api
        .watch(&WatchParams::default().timeout(2), &start_rv)
        .await?
        .try_collect()
        .await?;
    assert!(
        matches!(events.as_slice(), [WatchEvent::Error(e)] if e.code == 410 && e.reason == "Expired"),
        "{events:?}"
    );

    // The streaming-list watcher (sendInitialEvents) gets every object and
    // the initial-events-end bookmark, then live events.
    let stream = watcher(api.clone(), watcher::Config::default().streaming_lists());
    let mut stream = std::pin::pin!(stream);
    let mut initial = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await??
            .ok_or("the watcher ended")?;
        let done = matches!(event, watcher::Event::InitDone);
        initial.push(label(&event));
        if done {
            break;
        }
    }
    assert_eq!(
        initial,
        ["Init", "InitApply other 1", "InitApply sel 1", "InitDone"]
    );
    api.create(&PostParams::default(), &widget("live", 4))
        .await?;
    let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await??
        .ok_or("the watcher ended")?;
    assert_eq!(label(&event), "Apply live 4");
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion_until_the_last_is_removed() -> TestResult {
    let Some(url) = kubeapi("finalizers_hold_deletion_until_the_last_is_removed") else {
        return Ok(());
    };
    let client = client(&url).await?;
    install_crd(&client).await?;
    let ns = namespace(&client, "finalize").await?;
    let api: Api<Widget> = Api::namespaced(client.clone(), &ns);

    let mut w = widget("held", 1);
    w.metadata.finalizers = Some(vec!["deployctl.test/cleanup".into()]);
    let created = api.create(&PostParams::default(), &w).await?;

    let deleting = api
        .delete("held", &DeleteParams::default())
        .await?
        .left()
        .ok_or("deleted at once despite a finalizer")?;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(deleting.metadata.generation, Some(2));
    let still = api.get("held").await?;
    assert!(still.metadata.deletion_timestamp.is_some());
    // A second delete changes nothing.
    let again = api.delete("held", &DeleteParams::default()).await?;
    assert!(again.is_left());
    assert_eq!(rv(&api.get("held").await?), rv(&still));

    // No new finalizer may be added to an object being deleted.
    let add =
        json!({"metadata": {"finalizers": ["deployctl.test/cleanup", "deployctl.test/more"]}});
    assert_eq!(
        api_error(
            api.patch("held", &PatchParams::default(), &Patch::Merge(&add))
                .await
        )
        .0,
        422
    );

    // Removing the last finalizer removes the object.
    let clear = json!({"metadata": {"finalizers": null}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(&clear))
        .await?;
    assert_eq!(api_error(api.get("held").await).0, 404);

    // Without finalizers delete is immediate, answered with a Success Status;
    // a precondition on a stale uid is a conflict.
    let plain = api
        .create(&PostParams::default(), &widget("plain", 1))
        .await?;
    let wrong = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(api_error(api.delete("plain", &wrong).await).0, 409);
    let status = api
        .delete("plain", &DeleteParams::default())
        .await?
        .right()
        .ok_or("expected a Success Status")?;
    assert_eq!(status.details.map(|d| d.uid), plain.metadata.uid);
    assert_eq!(api_error(api.get("plain").await).0, 404);
    Ok(())
}

#[tokio::test]
async fn lease_manager_holds_the_lease_until_it_releases_it() -> TestResult {
    let Some(url) = kubeapi("lease_manager_holds_the_lease_until_it_releases_it") else {
        return Ok(());
    };
    let client = client(&url).await?;
    let ns = namespace(&client, "lease").await?;
    let manager = |identity: &str| {
        LeaseManagerBuilder::new(client.clone(), "leader")
            .with_namespace(ns.clone())
            .with_parameters(LeaseParams::new(identity, 3, 1))
            .build()
    };
    let first = manager("first").await?;
    let second = manager("second").await?;

    let (mut first_rx, first_task) = first.watch().await;
    tokio::time::timeout(Duration::from_secs(10), first_rx.wait_for(|leader| *leader)).await??;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease = leases.get("leader").await?;
    let spec = lease.spec.ok_or("the lease has a spec")?;
    assert_eq!(spec.holder_identity.as_deref(), Some("first"));
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert_eq!(spec.lease_transitions, Some(1));

    // The second manager stays out for two lease durations: the first
    // renews in time.
    let (mut second_rx, second_task) = second.watch().await;
    let stolen = matches!(
        tokio::time::timeout(Duration::from_secs(6), second_rx.wait_for(|leader| *leader)).await,
        Ok(Ok(_))
    );
    assert!(!stolen, "the second manager took a lease that was renewed");
    assert!(*first_rx.borrow());
    let renewed = leases.get("leader").await?.spec.ok_or("spec")?;
    assert_eq!(renewed.holder_identity.as_deref(), Some("first"));
    assert!(renewed.renew_time > spec.renew_time, "the holder renews");

    // Dropping the channel releases the lease; the second manager takes it.
    drop(first_rx);
    first_task.await??;
    tokio::time::timeout(
        Duration::from_secs(15),
        second_rx.wait_for(|leader| *leader),
    )
    .await??;
    let taken = leases.get("leader").await?.spec.ok_or("spec")?;
    assert_eq!(taken.holder_identity.as_deref(), Some("second"));
    assert_eq!(taken.lease_transitions, Some(2));
    drop(second_rx);
    second_task.await??;
    let released = leases.get("leader").await?.spec.ok_or("spec")?;
    assert_eq!(released.holder_identity, None);

    // The exclusion rests on server-side apply conflicts: a second applier
    // of holderIdentity is refused while the first one owns it.
    let claim = |who: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "spec": {"holderIdentity": who, "leaseDurationSeconds": 3}})
    };
    leases
        .patch(
            "race",
            &PatchParams::apply("kube-lease-manager-a"),
            &Patch::Apply(claim("a")),
        )
        .await?;
    let (code, reason) = api_error(
        leases
            .patch(
                "race",
                &PatchParams::apply("kube-lease-manager-b"),
                &Patch::Apply(claim("b")),
            )
            .await,
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    Ok(())
}

#[tokio::test]
async fn deleting_a_namespace_deletes_what_it_holds() -> TestResult {
    let Some(url) = kubeapi("deleting_a_namespace_deletes_what_it_holds") else {
        return Ok(());
    };
    let client = client(&url).await?;
    install_crd(&client).await?;
    let ns = namespace(&client, "nsdelete").await?;
    let api: Api<Widget> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &widget("free", 1))
        .await?;
    let mut held = widget("held", 1);
    held.metadata.finalizers = Some(vec!["deployctl.test/cleanup".into()]);
    api.create(&PostParams::default(), &held).await?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &DeleteParams::default()).await?;
    // The finalizer keeps its object, and so the namespace, Terminating.
    let terminating = namespaces.get(&ns).await?;
    assert_eq!(
        terminating.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    assert_eq!(api_error(api.get("free").await).0, 404);
    assert!(api.get("held").await?.metadata.deletion_timestamp.is_some());
    let (code, reason) = api_error(api.create(&PostParams::default(), &widget("late", 1)).await);
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));

    let clear = json!({"metadata": {"finalizers": null}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(&clear))
        .await?;
    assert_eq!(api_error(namespaces.get(&ns).await).0, 404);
    Ok(())
}

#[tokio::test]
async fn a_kubeconfig_naming_the_plain_http_server_connects() -> TestResult {
    let Some(url) = kubeapi("a_kubeconfig_naming_the_plain_http_server_connects") else {
        return Ok(());
    };
    // What a test writes for the binary (`--kubeconfig`/`KUBECONFIG`): an
    // http:// server, a user with no credentials, a default namespace.
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {url}\n\
         users:\n- name: nobody\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    \
         cluster: emulator\n    user: nobody\n    namespace: kubeconfig-ns\ncurrent-context: emulator\n"
    );
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml)?;
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await?;
    assert_eq!(config.default_namespace, "kubeconfig-ns");
    let client = Client::try_from(config)?;
    assert_eq!(client.apiserver_version().await?.minor, "33");
    let leases: Api<Lease> = Api::namespaced(client, "default");
    assert_eq!(api_error(leases.get("no-such-lease").await).0, 404);
    Ok(())
}
