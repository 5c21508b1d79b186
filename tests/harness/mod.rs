//! The end-to-end harness shared by every e2e test: a real kube-apiserver (KUBECONFIG when set,
//! e.g. kind; otherwise `hack/local-cluster.sh up`, once per run), the CRDs installed from crds/,
//! an emulator on a free loopback port with the test's seed, a namespace per test, and cleanup
//! that runs also when the test fails.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What is set up once per test binary: where the cluster is and which kubectl talks to it.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub server_version: String,
}

static CLUSTER: OnceCell<ClusterInfo> = OnceCell::const_new();

fn run_script(args: &[&str]) -> String {
    let output = std::process::Command::new("bash")
        .args(args)
        .current_dir(ROOT)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {args:?}: {error}"));
    assert!(output.status.success(), "{args:?} failed");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

async fn client_for(kubeconfig: &Path) -> Client {
    cloudsso_mfa_operator::cloud::install_crypto_provider();
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("kubeconfig readable");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig valid");
    Client::try_from(config).expect("kube client")
}

async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let yaml = cloudsso_mfa_operator::api::crds_yaml().expect("CRDs render");
    for document in serde_yaml::Deserializer::from_str(&yaml) {
        let crd: CustomResourceDefinition =
            serde::Deserialize::deserialize(document).expect("CRD YAML");
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(
            &name,
            &PatchParams::apply("cloudsso-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|error| panic!("installing CRD {name}: {error}"));
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not established in 30s"))
            .expect("watching the CRD");
    }
}

/// The cluster of this run, brought up (or found) and prepared once.
pub async fn cluster() -> ClusterInfo {
    CLUSTER
        .get_or_init(|| async {
            let kubeconfig = match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
                Some(path) => PathBuf::from(path),
                None => PathBuf::from(run_script(&["hack/local-cluster.sh", "up"])),
            };
            let kubectl = match std::env::var_os("KUBECTL") {
                Some(path) => PathBuf::from(path),
                None if std::env::var_os("KUBECONFIG").is_some() && which("kubectl") => {
                    "kubectl".into()
                }
                None => PathBuf::from(run_script(&["hack/build-control-plane.sh"])).join("kubectl"),
            };
            let client = client_for(&kubeconfig).await;
            let version = client
                .apiserver_version()
                .await
                .expect("API server answers");
            eprintln!(
                "[e2e] kube-apiserver {} at {}",
                version.git_version,
                kubeconfig.display()
            );
            install_crds(&client).await;
            ClusterInfo {
                kubeconfig,
                kubectl,
                server_version: version.git_version,
            }
        })
        .await
        .clone()
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// One test's world: a client, its own namespace, and the cluster info.
pub struct TestContext {
    pub client: Client,
    pub namespace: String,
    pub cluster: ClusterInfo,
}

impl TestContext {
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// `kubectl ARGS -n <namespace>` against the test cluster; returns (success, stdout, stderr).
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::process::Command::new(&self.cluster.kubectl)
            .args(args)
            .args(["-n", &self.namespace])
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .output()
            .await
            .expect("kubectl runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    }
}

/// Runs `body` in a fresh namespace named after the test and deletes the namespace afterwards,
/// whether the body passed or panicked.
pub async fn with_namespace<F, Fut>(test_name: &str, body: F)
where
    F: FnOnce(TestContext) -> Fut,
    Fut: Future<Output = ()>,
{
    let cluster = cluster().await;
    let client = client_for(&cluster.kubeconfig).await;
    let suffix: u32 = rand::random::<u32>() % 100_000;
    let namespace = format!("e2e-{}-{suffix:05}", test_name.replace('_', "-"))
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": "cloudsso-e2e"}}
    }))
    .expect("namespace object");
    namespaces
        .create(&PostParams::default(), &object)
        .await
        .expect("create test namespace");
    let context = TestContext {
        client: client.clone(),
        namespace: namespace.clone(),
        cluster,
    };
    let outcome = std::panic::AssertUnwindSafe(body(context))
        .catch_unwind()
        .await;
    // Without a controller-manager a namespace stays Terminating; its objects are gone from view.
    let _ = namespaces
        .delete(&namespace, &DeleteParams::default())
        .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
