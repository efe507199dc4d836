//! Fixtures: per-test accounts on moto (task sets) and on the ECS emulator
//! (rolling updates), services on their stable version, and readers of
//! what the platform holds, independent of the adapter.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{
    ContainerDefinition, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentController,
    DeploymentControllerType, LaunchType, Scale, ScaleUnit,
};
use deployctl_aws::testing::{MotoAccount, sdk_config};
use deployctl_aws_ecs::{EcsOptions, EcsTarget, ecs_config};

pub use deployctl_aws::testing::{emulator, moto};

pub const CLUSTER: &str = "c";

async fn client(url: &str, account: &MotoAccount) -> Client {
    let sdk = sdk_config(url).await;
    Client::from_conf(ecs_config(&sdk).interceptor(account.clone()).build())
}

async fn register(ecs: &Client, family: &str, container_memory: bool, revisions: u32) {
    for _ in 0..revisions {
        let mut container = ContainerDefinition::builder().name("app").image("nginx");
        if container_memory {
            container = container.memory(128);
        }
        ecs.register_task_definition()
            .family(family)
            .container_definitions(container.build())
            .cpu("256")
            .memory("512")
            .send()
            .await
            .unwrap();
    }
}

/// A task set as moto holds it: (externalId or task definition, status,
/// `family:revision`, scale percent).
pub type TaskSetRow = (String, String, String, f64);

/// One test's account on moto.
pub struct Moto {
    pub ecs: Client,
    services: AtomicU32,
}

impl Moto {
    /// A fresh account with cluster `c` and task definitions `web:1`,
    /// `web:2` (with container-level memory, moto's workaround) and
    /// `nomem:1` (without: moto's CreateTaskSet answers 500 for it, after
    /// creating the task set).
    pub async fn new(url: &str) -> Moto {
        let ecs = client(url, &MotoAccount::fresh()).await;
        ecs.create_cluster()
            .cluster_name(CLUSTER)
            .send()
            .await
            .unwrap();
        register(&ecs, "web", true, 2).await;
        register(&ecs, "nomem", false, 1).await;
        Moto {
            ecs,
            services: AtomicU32::new(0),
        }
    }

    /// A new EXTERNAL service running `web:1` in one PRIMARY task set at
    /// 100% (externalId `blue_id` when given), created the way moto needs
    /// (scale 0, then UpdateTaskSet).
    pub async fn service(&self, blue_id: Option<&str>) -> String {
        let name = format!("svc-{}", self.services.fetch_add(1, Ordering::SeqCst));
        self.ecs
            .create_service()
            .cluster(CLUSTER)
            .service_name(&name)
            .desired_count(4)
            .deployment_controller(
                DeploymentController::builder()
                    .r#type(DeploymentControllerType::External)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let created = self
            .ecs
            .create_task_set()
            .cluster(CLUSTER)
            .service(&name)
            .task_definition("web:1")
            .set_external_id(blue_id.map(str::to_owned))
            .launch_type(LaunchType::Fargate)
            .scale(percent(0.0))
            .send()
            .await
            .unwrap();
        let arn = created
            .task_set()
            .unwrap()
            .task_set_arn()
            .unwrap()
            .to_owned();
        self.ecs
            .update_task_set()
            .cluster(CLUSTER)
            .service(&name)
            .task_set(&arn)
            .scale(percent(100.0))
            .send()
            .await
            .unwrap();
        self.ecs
            .update_service_primary_task_set()
            .cluster(CLUSTER)
            .service(&name)
            .primary_task_set(&arn)
            .send()
            .await
            .unwrap();
        name
    }

    /// The service's task sets as moto holds them, PRIMARY first.
    pub async fn task_sets(&self, service: &str) -> Vec<TaskSetRow> {
        let out = self
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .services(service)
            .send()
            .await
            .unwrap();
        let mut rows: Vec<TaskSetRow> = out.services()[0]
            .task_sets()
            .iter()
            .map(|ts| {
                let td = ts
                    .task_definition()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned();
                (
                    ts.external_id()
                        .filter(|id| !id.is_empty())
                        .unwrap_or(&td)
                        .to_owned(),
                    ts.status().unwrap().to_owned(),
                    td,
                    ts.scale().unwrap().value(),
                )
            })
            .collect();
        rows.sort_by_key(|row| (row.1 != "PRIMARY", row.0.clone()));
        rows
    }

    /// A target knowing `v1` = web:1 and the release `v2` = web:2.
    pub fn target(&self, service: &str) -> EcsTarget {
        EcsTarget::with_client("api", self.ecs.clone(), CLUSTER, service)
            .with_version("v1", "web:1", false)
            .with_version("v2", "web:2", true)
    }
}

pub fn row(label: &str, status: &str, td: &str, scale: f64) -> TaskSetRow {
    (label.into(), status.into(), td.into(), scale)
}

fn percent(value: f64) -> Scale {
    Scale::builder()
        .value(value)
        .unit(ScaleUnit::Percent)
        .build()
}

/// One test's account on the ECS emulator.
pub struct Emulator {
    pub ecs: Client,
    url: String,
    account: MotoAccount,
}

/// Waits a test allows itself for the emulator's steps of 20 ms.
pub fn fast() -> EcsOptions {
    EcsOptions {
        poll_interval: Duration::from_millis(20),
        rollout_timeout: Duration::from_secs(20),
    }
}

impl Emulator {
    /// A fresh account stepping every 20 ms, with cluster `c` and task
    /// definitions `web:1` to `web:3`.
    pub async fn new(url: &str) -> Emulator {
        let account = MotoAccount::fresh();
        let ecs = client(url, &account).await;
        let emulator = Emulator {
            ecs,
            url: url.to_owned(),
            account,
        };
        emulator.step_seconds(0.02);
        emulator
            .ecs
            .create_cluster()
            .cluster_name(CLUSTER)
            .send()
            .await
            .unwrap();
        register(&emulator.ecs, "web", true, 3).await;
        emulator
    }

    /// POSTs `body` to a control endpoint in this account.
    pub fn control(&self, path: &str, body: &str) -> String {
        let address = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nx-moto-account-id: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.account.0,
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        response
    }

    pub fn step_seconds(&self, seconds: f64) {
        self.control(
            "/_emulator/config",
            &format!("{{\"stepSeconds\": {seconds}}}"),
        );
    }

    pub fn fail(&self, task_definition: &str) {
        self.control(
            "/_emulator/fail-task-definition",
            &format!("{{\"taskDefinition\": \"{task_definition}\"}}"),
        );
    }

    /// A service of 4 tasks on `web:1`, rolled out (COMPLETED), with the
    /// circuit breaker as (enable, rollback) when given.
    pub async fn service(&self, name: &str, breaker: Option<(bool, bool)>) {
        let mut config = DeploymentConfiguration::builder()
            .maximum_percent(200)
            .minimum_healthy_percent(100);
        if let Some((enable, rollback)) = breaker {
            config = config.deployment_circuit_breaker(
                DeploymentCircuitBreaker::builder()
                    .enable(enable)
                    .rollback(rollback)
                    .build(),
            );
        }
        self.ecs
            .create_service()
            .cluster(CLUSTER)
            .service_name(name)
            .task_definition("web:1")
            .desired_count(4)
            .deployment_configuration(config.build())
            .send()
            .await
            .unwrap();
        let started = Instant::now();
        while self.deployments(name).await
            != [("PRIMARY".into(), "web:1".into(), "COMPLETED".into())]
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "service {name} never completed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The service's deployments: (status, `family:revision`, rolloutState).
    pub async fn deployments(&self, service: &str) -> Vec<(String, String, String)> {
        let out = self
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .services(service)
            .send()
            .await
            .unwrap();
        out.services()[0]
            .deployments()
            .iter()
            .map(|d| {
                (
                    d.status().unwrap().to_owned(),
                    d.task_definition()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_owned(),
                    d.rollout_state().unwrap().as_str().to_owned(),
                )
            })
            .collect()
    }

    /// How many deployments the service has started, from its events.
    pub async fn deployments_started(&self, service: &str) -> usize {
        let out = self
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .services(service)
            .send()
            .await
            .unwrap();
        out.services()[0]
            .events()
            .iter()
            .filter(|e| {
                e.message()
                    .unwrap_or_default()
                    .contains("has started a deployment")
            })
            .count()
    }

    pub fn target(&self, service: &str) -> EcsTarget {
        EcsTarget::with_client("api", self.ecs.clone(), CLUSTER, service)
            .with_version("v1", "web:1", false)
            .with_version("v2", "web:2", true)
            .with_options(fast())
    }
}
