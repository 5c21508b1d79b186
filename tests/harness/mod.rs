//! The end-to-end harness shared by every e2e test: a real kube-apiserver (KUBECONFIG when set,
//! e.g. kind; otherwise `hack/local-cluster.sh up`, once per run), the CRDs installed from crds/,
//! an emulator on a free loopback port with the test's seed, a namespace per test, and cleanup
//! that runs also when the test fails.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cloudsso_mfa_operator::api::HasCommonStatus;
use cloudsso_mfa_operator::controller::conditions;
use cloudsso_mfa_operator::controller::reconciler::Kind;
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
    /// helm: from PATH when KUBECONFIG is given (HELM overrides), else the cached build.
    pub helm: PathBuf,
    /// The cluster is the project's own (hack/local-cluster.sh), so tests may restart it.
    pub local: bool,
    /// The cluster is this checkout's kind cluster (hack/kind.sh), which tests may restart too.
    pub kind: bool,
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
            let helm = match std::env::var_os("HELM") {
                Some(path) => PathBuf::from(path),
                None if std::env::var_os("KUBECONFIG").is_some() && which("helm") => "helm".into(),
                None => PathBuf::from(run_script(&["hack/build-control-plane.sh"])).join("helm"),
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
            // Ours when it is the kubeconfig hack/local-cluster.sh writes (hack/test.sh exports
            // it as KUBECONFIG), not a cluster the user pointed us at.
            let ours = Path::new(ROOT)
                .join(".local/kubeconfig")
                .canonicalize()
                .ok();
            let local = kubeconfig.canonicalize().ok() == ours;
            let kind_kubeconfig = Path::new(ROOT)
                .join(".local/kind/kubeconfig")
                .canonicalize()
                .ok();
            let kind =
                kind_kubeconfig.is_some() && kubeconfig.canonicalize().ok() == kind_kubeconfig;
            ClusterInfo {
                kubeconfig,
                kubectl,
                helm,
                local,
                kind,
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
#[derive(Clone)]
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

/// An operator process for one test, watching only the test's namespace; killed when dropped.
pub struct Operator {
    child: tokio::process::Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Operator {
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGKILL: the process dies without cleaning up (a crashed or evicted pod).
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Whether the process is still running.
    pub fn try_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM: what the kubelet sends before stopping a pod.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("operator still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "operator still running after {timeout:?}\n{}",
                    self.log_tail()
                )
            })
            .expect("wait for operator")
    }

    /// The JSON log lines written so far (the harness runs the operator with LOG_FORMAT=json).
    pub fn log_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Whether a log line's message contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log_lines().iter().any(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.contains(text))
        })
    }

    /// Where /metrics is served, as the operator logged it once it bound the port.
    pub async fn metrics_address(&self) -> String {
        eventually(
            "the operator to log its metrics address",
            Duration::from_secs(20),
            || async {
                self.log_lines().into_iter().find_map(|line| {
                    line["fields"]["address"]
                        .as_str()
                        .filter(|_| {
                            line["fields"]["message"]
                                .as_str()
                                .is_some_and(|m| m.starts_with("serving /metrics"))
                        })
                        .map(String::from)
                })
            },
            Option::is_some,
        )
        .await
        .unwrap()
    }

    /// GET `path` on the metrics server; (HTTP status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.metrics_address().await);
        let response = reqwest::get(&url)
            .await
            .unwrap_or_else(|error| panic!("GET {url}: {error}"));
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    /// Waits until /readyz answers 200.
    pub async fn wait_until_ready(&self) {
        eventually(
            "/readyz to answer 200",
            Duration::from_secs(40),
            || self.http_get("/readyz"),
            |(status, _)| *status == 200,
        )
        .await;
    }

    /// One scrape of /metrics.
    pub async fn scrape(&self) -> Metrics {
        let (status, body) = self.http_get("/metrics").await;
        assert_eq!(status, 200, "{body}");
        Metrics(body)
    }
}

/// A scrape of /metrics in the OpenMetrics text format.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of the series `name{labels}`: every `key="value"` in `labels` must match (other
    /// labels are allowed); the sum when several series match; None when none does.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for line in self.0.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = match line.rsplit_once(' ') {
                Some(parts) => parts,
                None => continue,
            };
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                continue;
            }
            if labels.iter().all(|(k, v)| {
                series_labels
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            }) {
                let value: f64 = value.parse().unwrap_or(f64::NAN);
                found = Some(found.unwrap_or(0.0) + value);
            }
        }
        found
    }
}

impl TestContext {
    /// Starts `cloudsso-mfa-operator run` for this namespace with a short resync.
    pub async fn start_operator(&self, resync: &str, env: &[(&str, &str)]) -> Operator {
        self.start_operator_with(resync, &[], env).await
    }

    /// Like `start_operator`, with extra command-line arguments (env may override KUBECONFIG).
    pub async fn start_operator_with(
        &self,
        resync: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let mut all = vec!["--watch-namespace", self.namespace.as_str()];
        all.extend_from_slice(args);
        self.spawn_operator(resync, &all, env)
    }

    /// An operator watching every namespace (for what spans namespaces: ownership, tenancy). It
    /// also reconciles other tests' resources, so only tests that run alone may start one; those
    /// left by earlier tests (their emulators gone) retry in the background, so it runs many
    /// reconciles at once and they never hold up the test's own.
    pub async fn start_cluster_operator(&self, resync: &str, env: &[(&str, &str)]) -> Operator {
        self.spawn_operator(resync, &["--max-concurrent-reconciles", "64"], env)
    }

    fn spawn_operator(&self, resync: &str, args: &[&str], env: &[(&str, &str)]) -> Operator {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("operator.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsso-mfa-operator"))
            .args(["run", "--resync-interval", resync])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .env("LOG_FORMAT", "json")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_ID")
            .env_remove("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .env("RUST_LOG", "info,cloudsso_mfa_operator=debug,kube=warn")
            .envs(env.iter().copied())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("operator starts");
        Operator {
            child,
            log,
            _dir: dir,
        }
    }

    /// A Secret with cloud credentials in the test namespace.
    pub async fn credentials_secret(
        &self,
        name: &str,
        access_key_id: &str,
        access_key_secret: &str,
    ) {
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "stringData": {"accessKeyId": access_key_id, "accessKeySecret": access_key_secret},
            }))
            .unwrap();
        let api: Api<k8s_openapi::api::core::v1::Secret> = self.api();
        api.patch(
            name,
            &PatchParams::apply("cloudsso-e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply Secret");
    }

    /// Creates (or replaces the spec of) a resource from JSON.
    pub async fn apply<K>(&self, object: serde_json::Value) -> K
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let mut object = object;
        object["apiVersion"] = K::api_version(&()).into();
        object["kind"] = K::kind(&()).into();
        self.api::<K>()
            .patch(
                &name,
                &PatchParams::apply("cloudsso-e2e").force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|error| panic!("apply {name}: {error}"))
    }

    /// Events about `name`, as (reason, note).
    pub async fn events_for(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> = self.api();
        api.list(&Default::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|event| event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|event| {
                (
                    event.reason.unwrap_or_default(),
                    event.note.unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// Polls `get` until `check` accepts the value or `timeout` passes; panics with `what` and the
/// last value seen.
pub async fn eventually<T: std::fmt::Debug, F, Fut>(
    what: &str,
    timeout: Duration,
    mut get: F,
    check: impl Fn(&T) -> bool,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = get().await;
        if check(&value) {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            // One line: a CI summary shows the line of the panic, not what follows it.
            panic!("timed out after {timeout:?} waiting for {what}; last: {value:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The condition `type_` of a resource's status as (status, reason, message).
pub fn condition<S: HasCommonStatus>(
    status: &Option<S>,
    type_: &str,
) -> Option<(String, String, String)> {
    let found = conditions::find(&status.as_ref()?.common().conditions, type_)?;
    Some((
        found.status.clone(),
        found.reason.clone(),
        found.message.clone(),
    ))
}

/// The Ready condition of a resource's status as (status, reason, message).
pub fn ready<S: HasCommonStatus>(status: &Option<S>) -> Option<(String, String, String)> {
    condition(status, "Ready")
}

/// Whether the object says Ready=True.
pub fn is_ready<K: Kind>(object: &K) -> bool {
    ready(&object.status().cloned()).is_some_and(|(status, _, _)| status == "True")
}

/// How long e2e tests wait for the operator to converge.
pub const WAIT: Duration = Duration::from_secs(40);

/// The Secret with the emulator's keys that e2e resources name in credentialsSecretRef.
pub const SECRET: &str = "cloud-keys";

/// A UserMfaSetting by user name against the emulator at `url`, with the test's Secret.
pub fn user_setting(name: &str, url: &str, user_name: &str, setting: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"name": name}, "spec": {
        "directoryId": crate::common::DIRECTORY, "userName": user_name,
        "userMfaAuthenticationSettings": setting,
        "endpoint": url, "credentialsSecretRef": {"name": SECRET}}})
}

impl TestContext {
    /// The object `name` of kind `K` in the test namespace, if it exists.
    pub async fn get<K: Kind>(&self, name: &str) -> Option<K> {
        self.api::<K>().get_opt(name).await.expect("get")
    }

    /// Waits until `name` says Ready=True; on timeout the panic shows the last object and,
    /// when given, the operator's log.
    pub async fn wait_ready<K: Kind>(&self, name: &str, operator: Option<&Operator>) -> K {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let object = self.get::<K>(name).await;
            match object {
                Some(object) if is_ready(&object) => return object,
                _ if tokio::time::Instant::now() >= deadline => panic!(
                    "{name} not Ready in {WAIT:?}; last: {object:#?}\n{}",
                    operator.map(Operator::log_tail).unwrap_or_default()
                ),
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Waits until `name` is deleted (its finalizer ran).
    pub async fn gone<K: Kind>(&self, name: &str) {
        eventually(
            &format!("{name} deleted"),
            WAIT,
            || self.get::<K>(name),
            Option::is_none,
        )
        .await;
    }
}

/// Stops the local kube-apiserver for `down`, then starts it again (same port, same etcd).
pub fn restart_local_apiserver(down: Duration) {
    run_script(&[
        "hack/local-cluster.sh",
        "restart-apiserver",
        &down.as_secs().to_string(),
    ]);
}

/// The same on this checkout's kind cluster: its static pod out of the manifests, then back.
pub fn restart_kind_apiserver(down: Duration) {
    run_script(&[
        "hack/kind.sh",
        "restart-apiserver",
        &down.as_secs().to_string(),
    ]);
}

pub const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/helm/cloudsso-mfa-operator"
);

impl TestContext {
    /// `helm ARGS --namespace <namespace>` against the test cluster; (success, stdout, stderr).
    pub async fn helm(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::process::Command::new(&self.cluster.helm)
            .args(args)
            .args(["--namespace", &self.namespace])
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .output()
            .await
            .expect("helm runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    }

    /// Labels the test namespace so that Pod Security admission enforces the "restricted" profile.
    pub async fn enforce_restricted_pod_security(&self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces
            .patch(
                &self.namespace,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest"}}})),
            )
            .await
            .expect("label the namespace restricted");
    }

    /// A kubeconfig that authenticates as ServiceAccount `name` of the test namespace, with a
    /// token from the TokenRequest API (what a pod's projected token is). Lives in `dir`.
    pub async fn service_account_kubeconfig(&self, name: &str, dir: &Path) -> PathBuf {
        let (ok, token, stderr) = self
            .kubectl(&["create", "token", name, "--duration", "1h"])
            .await;
        assert!(ok, "kubectl create token {name}: {stderr}");
        let admin = std::fs::read_to_string(&self.cluster.kubeconfig).expect("kubeconfig");
        let mut config: serde_yaml::Value = serde_yaml::from_str(&admin).expect("kubeconfig YAML");
        let user = format!("system:serviceaccount:{}:{name}", self.namespace);
        config["users"] = serde_yaml::to_value(vec![serde_json::json!({
            "name": user, "user": {"token": token.trim()}
        })])
        .unwrap();
        let current = config["current-context"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        for context in config["contexts"].as_sequence_mut().expect("contexts") {
            if context["name"].as_str() == Some(current.as_str()) {
                context["context"]["user"] = serde_yaml::Value::String(user.clone());
            }
        }
        let path = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).expect("write kubeconfig");
        path
    }

    /// A client for a kubeconfig file (e.g. a ServiceAccount's).
    pub async fn client_for(&self, kubeconfig: &Path) -> Client {
        client_for(kubeconfig).await
    }
}
