//! e2e through a real node: the operator's image (hack/image.sh) run by the kubelet as the Helm
//! chart's pods. Both replicas become Ready through the kubelet's probes, one holds the Lease,
//! resources converge against an emulator the pods reach on the node's bridge, the leader pod's
//! deletion hands over the Lease, `helm upgrade` rolls the pods with never two leaders, the pods
//! run as the restricted profile demands, the PodDisruptionBudget refuses an eviction that would
//! leave no pod, /metrics answers through the Service (kube-proxy), and `helm uninstall` leaves
//! the CRDs and the resources.
//!
//! Runs when the node is up: hack/test.sh brings it up (`hack/local-cluster.sh up --node`) and
//! exports CLOUDSSO_IMAGE (the imported image) and NODE_HOST_IP (where pods reach this machine).
//! Against kind: load the image with `kind load image-archive` and set both variables (README).

mod common;
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudsso_mfa_operator::api::{DirectoryMfaPolicy, UserMfaSetting};
use common::*;
use harness::{CHART, ROOT, SECRET, TestContext, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, EvictParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const RELEASE: &str = "op";
const DEPLOYMENT: &str = "op-cloudsso-mfa-operator";
const LEASE: &str = "cloudsso-mfa-operator";
const LEASE_DURATION: Duration = Duration::from_secs(6);
const RETRY_PERIOD: Duration = Duration::from_secs(1);
const POD_WAIT: Duration = Duration::from_secs(120);

/// What the node tests need from the environment, or None (with the reason) when no node is up.
struct Node {
    image: String,
    host_ip: String,
}

fn required(what: &str) -> Option<String> {
    match std::env::var(what).ok().filter(|v| !v.is_empty()) {
        Some(value) => Some(value),
        // CI always brings the node up: a missing variable there is a broken run, not a skip.
        None if std::env::var_os("CI").is_some() => {
            panic!("{what} is not set: hack/test.sh brings the node up and exports it")
        }
        None => {
            eprintln!("[e2e] skipped: {what} is not set (no node; see hack/test.sh)");
            None
        }
    }
}

fn node() -> Option<Node> {
    Some(Node {
        image: required("CLOUDSSO_IMAGE")?,
        host_ip: required("NODE_HOST_IP")?,
    })
}

/// One member of a tar archive, read with the system's tar (no crate needed for a test).
fn tar_member(archive: &str, member: &str) -> Vec<u8> {
    let output = std::process::Command::new("tar")
        .args(["-xOf", archive, member])
        .output()
        .expect("tar runs");
    assert!(output.status.success(), "tar -xOf {archive} {member}");
    output.stdout
}

fn blob(archive: &str, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    tar_member(archive, &format!("blobs/sha256/{hex}"))
}

/// The runtime stage of the Dockerfile: USER, EXPOSE, ENTRYPOINT and CMD after the last FROM.
fn dockerfile_runtime() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(PathBuf::from(ROOT).join("Dockerfile")).expect("Dockerfile");
    let last_stage = text.rsplit("\nFROM ").next().expect("a FROM line");
    last_stage
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(word, _)| ["USER", "EXPOSE", "ENTRYPOINT", "CMD"].contains(word))
        .map(|(word, rest)| (word.to_string(), rest.trim().to_string()))
        .collect()
}

#[test]
fn image_archive_config_equals_what_the_dockerfile_declares() {
    let Some(archive) = required("CLOUDSSO_IMAGE_ARCHIVE") else {
        return;
    };
    let index: Value = serde_json::from_slice(&tar_member(&archive, "index.json")).unwrap();
    let manifest = &index["manifests"][0];
    let name = manifest["annotations"]["io.containerd.image.name"]
        .as_str()
        .unwrap();
    assert!(name.contains("cloudsso-mfa-operator:"), "{name}");
    let manifest: Value =
        serde_json::from_slice(&blob(&archive, manifest["digest"].as_str().unwrap())).unwrap();
    let config: Value = serde_json::from_slice(&blob(
        &archive,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let config = &config["config"];

    let docker = dockerfile_runtime();
    assert_eq!(
        config["User"].as_str(),
        docker.get("USER").map(String::as_str)
    );
    let ports: Vec<String> = docker["EXPOSE"]
        .split_whitespace()
        .map(|p| format!("{p}/tcp"))
        .collect();
    let exposed: Vec<String> = config["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(exposed, ports);
    let entrypoint: Value = serde_json::from_str(&docker["ENTRYPOINT"]).unwrap();
    assert_eq!(config["Entrypoint"], entrypoint);
    let cmd: Value = serde_json::from_str(&docker["CMD"]).unwrap();
    assert_eq!(config["Cmd"], cmd);

    // The layer holds what the Dockerfile copies, and what distroless/cc would bring.
    let layer = blob(&archive, manifest["layers"][0]["digest"].as_str().unwrap());
    let listing = std::process::Command::new("tar")
        .args(["-tzf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut tar| {
            use std::io::Write;
            tar.stdin.take().unwrap().write_all(&layer)?;
            tar.wait_with_output()
        })
        .expect("tar lists the layer");
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "usr/local/bin/cloudsso-mfa-operator",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/passwd",
    ] {
        assert!(
            listing.lines().any(|line| line == path),
            "{path} missing from the layer:\n{listing}"
        );
    }
    // The production image ships the operator alone: the emulator (whose admin path hands out
    // its seeded secrets) stays out of it, as it stays out of the Dockerfile's COPY.
    assert!(
        !listing.contains("cloudsso-emulator"),
        "the emulator is in the image:\n{listing}"
    );
    let copied =
        std::fs::read_to_string(PathBuf::from(ROOT).join("Dockerfile")).expect("Dockerfile");
    assert!(
        !copied.contains("cloudsso-emulator") && !copied.contains("--features emulator"),
        "the Dockerfile builds or copies the emulator"
    );
    assert!(
        listing.lines().any(|line| line.contains("libc.so")),
        "no libc in the layer"
    );
}

// ---------------------------------------------------------------------------------------------

fn selector() -> ListParams {
    ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().is_some_and(|status| {
            status.phase.as_deref() == Some("Running")
                && status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

/// The pods of the release, and the names of those Ready.
async fn pods(ctx: &TestContext) -> (Vec<Pod>, Vec<String>) {
    let pods = ctx
        .api::<Pod>()
        .list(&selector())
        .await
        .expect("list pods")
        .items;
    let ready = pods.iter().filter(|p| pod_ready(p)).map(name_of).collect();
    (pods, ready)
}

/// Waits until the Deployment is rolled out: `replicas` pods, all Ready and of its newest
/// template, and no other pod left.
async fn wait_rolled_out(ctx: &TestContext, replicas: usize) -> Vec<String> {
    let deployments = ctx.api::<Deployment>();
    eventually(
        "the Deployment to be rolled out with every pod Ready",
        POD_WAIT,
        || async {
            let deployment = deployments.get(DEPLOYMENT).await.expect("Deployment");
            let status = deployment.status.clone().unwrap_or_default();
            let (all, ready) = pods(ctx).await;
            let current = deployment.metadata.generation == status.observed_generation
                && status.updated_replicas == Some(replicas as i32)
                && status.ready_replicas == Some(replicas as i32)
                && status.replicas == Some(replicas as i32);
            (
                current && all.len() == replicas && ready.len() == replicas,
                ready,
                pod_report(&all),
            )
        },
        |(done, _, _)| *done,
    )
    .await
    .1
}

/// What a person would look at when pods do not come up: phase, reasons, restarts.
fn pod_report(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .map(|pod| {
            let status = pod.status.clone().unwrap_or_default();
            let containers: Vec<String> = status
                .container_statuses
                .iter()
                .flatten()
                .map(|c| {
                    let state = serde_json::to_string(&c.state).unwrap_or_default();
                    format!("ready={} restarts={} {state}", c.ready, c.restart_count)
                })
                .collect();
            format!("{} {:?} {containers:?}", name_of(pod), status.phase)
        })
        .collect()
}

/// The Lease's holder as a pod name (the identity is `<pod>_<random>`), and its transitions.
async fn lease(ctx: &TestContext) -> (Option<String>, i32) {
    let lease = ctx.api::<Lease>().get_opt(LEASE).await.expect("get Lease");
    let spec = lease.and_then(|lease| lease.spec).unwrap_or_default();
    let holder = spec.holder_identity.filter(|h| !h.is_empty()).map(|h| {
        h.rsplit_once('_')
            .map_or(h.clone(), |(pod, _)| pod.to_string())
    });
    (holder, spec.lease_transitions.unwrap_or(0))
}

async fn wait_leader_among(ctx: &TestContext, candidates: &[String]) -> String {
    eventually(
        "one of the pods to hold the Lease",
        POD_WAIT,
        || lease(ctx),
        |(holder, _)| holder.as_ref().is_some_and(|h| candidates.contains(h)),
    )
    .await
    .0
    .unwrap()
}

/// The operator's process on this machine for a container (found through its cgroup), so the
/// test can see what the kernel enforces: uid, capabilities, no_new_privs, seccomp, a read-only /.
fn host_process_of(container_id: &str) -> Option<u32> {
    let id = container_id.rsplit("://").next()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (cgroup.contains(id) && comm.trim() == "cloudsso-mfa-op").then_some(pid)
        })
}

fn proc_status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

async fn check_runtime_security(ctx: &TestContext) {
    let (all, _) = pods(ctx).await;
    for pod in &all {
        let spec = pod.spec.clone().unwrap();
        let container = &spec.containers[0];
        let security = container.security_context.clone().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        let id = pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .container_id
            .clone()
            .expect("a started container has an id");
        let Some(pid) = host_process_of(&id) else {
            // On kind or a remote cluster the process may not be visible here; on ours it must be.
            assert!(
                !ctx.cluster.local,
                "the container {id} of {} has no process here",
                name_of(pod)
            );
            eprintln!("[e2e] {id}: no process on this machine; kernel-side checks skipped");
            continue;
        };
        assert_eq!(
            proc_status_field(pid, "Uid"),
            "65532 65532 65532 65532",
            "pod {}",
            name_of(pod)
        );
        assert_eq!(proc_status_field(pid, "Gid"), "65532 65532 65532 65532");
        assert_eq!(
            proc_status_field(pid, "CapEff"),
            "0000000000000000",
            "capabilities dropped"
        );
        assert_eq!(
            proc_status_field(pid, "NoNewPrivs"),
            "1",
            "allowPrivilegeEscalation: false"
        );
        assert_eq!(
            proc_status_field(pid, "Seccomp"),
            "2",
            "RuntimeDefault seccomp filter"
        );
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let root = mounts
            .lines()
            .find(|line| line.split_whitespace().nth(4) == Some("/"))
            .expect("a root mount");
        let options = root.split_whitespace().nth(5).unwrap();
        assert!(
            options.split(',').any(|o| o == "ro"),
            "root filesystem not read-only: {root}"
        );
    }
}

async fn install(ctx: &TestContext, node: &Node) {
    let (repository, tag) = node
        .image
        .rsplit_once(':')
        .expect("CLOUDSSO_IMAGE is repository:tag");
    let sets = [
        format!("image.repository={repository}"),
        format!("image.tag={tag}"),
        "image.pullPolicy=Never".to_string(),
        format!("credentials.existingSecret={SECRET}"),
        // Other tests run beside this one: the pods watch only this namespace.
        format!("watchNamespace={}", ctx.namespace),
        format!("leaderElection.leaseDuration={}s", LEASE_DURATION.as_secs()),
        "leaderElection.renewDeadline=4s".to_string(),
        format!("leaderElection.retryPeriod={}s", RETRY_PERIOD.as_secs()),
        "controller.resyncInterval=30s".to_string(),
        "terminationGracePeriodSeconds=20".to_string(),
    ];
    let mut args = vec!["install", RELEASE, CHART];
    for set in &sets {
        args.extend(["--set", set.as_str()]);
    }
    let (ok, stdout, stderr) = ctx.helm(&args).await;
    assert!(ok, "helm install: {stdout}{stderr}");
}

/// `kubectl logs [-f] POD` in the test namespace; what it printed, whatever its exit status (a
/// followed pod that goes away may end the stream with an error after its last line).
async fn pod_logs(ctx: &TestContext, pod: &str, follow: bool) -> String {
    let mut args = vec!["logs", pod];
    if follow {
        args.push("-f");
    }
    ctx.kubectl(&args).await.1
}

/// Follows a pod's log in the background until its container exits; the text lands in `into`.
fn follow_logs(ctx: &TestContext, pod: String, into: Arc<Mutex<BTreeMap<String, String>>>) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let text = pod_logs(&ctx, &pod, true).await;
        into.lock().unwrap().insert(pod, text);
    });
}

/// (time, pod, event) of every leadership change in the followed logs: "became the leader" and
/// "released the leader Lease".
fn leadership_events(logs: &BTreeMap<String, String>) -> Vec<(jiff::Timestamp, String, String)> {
    let mut events = Vec::new();
    for (pod, text) in logs {
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let message = value["fields"]["message"].as_str().unwrap_or_default();
            if message == "became the leader" || message == "released the leader Lease" {
                let time: jiff::Timestamp = value["timestamp"].as_str().unwrap().parse().unwrap();
                events.push((time, pod.clone(), message.to_string()));
            }
        }
    }
    events.sort();
    events
}

/// Replays the leadership events in time order: no pod may become the leader while another one
/// has not released (a process that dies without releasing would show here as an overlap).
fn never_two_leaders(events: &[(jiff::Timestamp, String, String)]) -> Result<(), String> {
    let mut leading: BTreeSet<String> = BTreeSet::new();
    for (time, pod, event) in events {
        if event == "became the leader" {
            if let Some(other) = leading.iter().next() {
                return Err(format!(
                    "{pod} became the leader at {time} while {other} still led"
                ));
            }
            leading.insert(pod.clone());
        } else {
            leading.remove(pod);
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_chart_runs_as_pods_on_the_node() {
    let Some(node) = node() else {
        return;
    };
    harness::with_namespace("node", |ctx| async move {
        // The pods must pass the restricted Pod Security profile to be admitted at all.
        ctx.enforce_restricted_pod_security().await;
        // The emulator on the node's bridge, where pods reach this machine.
        let listener = tokio::net::TcpListener::bind((node.host_ip.as_str(), 0))
            .await
            .expect("bind the emulator on NODE_HOST_IP");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let _emulator = cloudsso_mfa_operator::emulator::spawn(listener, seed());
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;

        install(&ctx, &node).await;
        let first = wait_rolled_out(&ctx, 2).await;
        let leader = wait_leader_among(&ctx, &first).await;
        eprintln!("[e2e] pods {first:?} Ready through the kubelet's probes; {leader} leads");
        check_runtime_security(&ctx).await;

        // Resources converge, reconciled by the leading pod against the emulator.
        let spec = |extra: Value| {
            let mut spec = json!({"directoryId": DIRECTORY, "endpoint": url, "credentialsSecretRef": {"name": SECRET}});
            spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            spec
        };
        ctx.apply::<DirectoryMfaPolicy>(json!({"metadata": {"name": "dir"},
            "spec": spec(json!({"mfaAuthenticationSettings": "Byuser"}))})).await;
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "alice"},
            "spec": spec(json!({"userName": "alice", "userMfaAuthenticationSettings": "Enabled"}))})).await;
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "bob"},
            "spec": spec(json!({"userId": "u-00q8wbq42wiltcrk0002", "userMfaAuthenticationSettings": "Enabled"}))})).await;
        ctx.wait_ready::<DirectoryMfaPolicy>("dir", None).await;
        ctx.wait_ready::<UserMfaSetting>("alice", None).await;
        ctx.wait_ready::<UserMfaSetting>("bob", None).await;
        let bob = &state(&url).await["directories"][0]["users"][1];
        assert_eq!(bob["userMfaAuthenticationSettings"], "Enabled", "the pod's write reached the cloud");

        // /metrics through the chart's Service: kube-proxy sends each scrape to one pod; the
        // leader answers `leader 1`, the standby `leader 0`.
        let service = ctx.api::<Service>().get(&format!("{DEPLOYMENT}-metrics")).await.expect("metrics Service");
        let cluster_ip = service.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");
        // No pooled connections: each scrape is a new connection, so kube-proxy picks a pod anew.
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let metrics_url = format!("http://{cluster_ip}:8080/metrics");
        let seen = eventually(
            "both leader values through the Service",
            Duration::from_secs(60),
            || async {
                let mut seen = BTreeSet::new();
                for _ in 0..10 {
                    if let Ok(response) = http.get(&metrics_url).send().await
                        && let Ok(body) = response.text().await
                        && let Some(value) = harness::Metrics(body).value("cloudsso_mfa_operator_leader", &[])
                    {
                        seen.insert(value as i64);
                    }
                }
                seen
            },
            |seen| seen.contains(&1),
        )
        .await;
        eprintln!("[e2e] {metrics_url} through kube-proxy: leader values seen {seen:?}");

        // The leader pod deleted: the other pod takes the Lease within the lease duration plus
        // one retry period, and reconciles; the Deployment brings back the second replica.
        let (_, transitions_before) = lease(&ctx).await;
        let started = Instant::now();
        ctx.api::<Pod>().delete(&leader, &Default::default()).await.expect("delete the leader pod");
        // The deleted leader releases the Lease on SIGTERM; the standby takes it at its next retry,
        // unless the Deployment's replacement pod starts first and wins the race for it (both
        // are correct; what matters is one new leader, soon, and never the deleted pod).
        let new_leader = eventually(
            "another pod to hold the Lease",
            POD_WAIT,
            || lease(&ctx),
            |(holder, _)| holder.as_ref().is_some_and(|h| *h != leader),
        )
        .await
        .0
        .unwrap();
        let handover = started.elapsed();
        let standby = first.iter().find(|p| **p != leader).unwrap();
        let who = if new_leader == *standby { "the standby" } else { "the replacement pod" };
        eprintln!("[e2e] leader pod {leader} deleted: {who} {new_leader} leads after {handover:?}");
        assert!(
            handover <= LEASE_DURATION + RETRY_PERIOD + Duration::from_secs(1),
            "handover took {handover:?}"
        );
        assert_eq!(lease(&ctx).await.1, transitions_before + 1, "one leader change, one transition");
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "carol"},
            "spec": spec(json!({"userName": "carol", "userMfaAuthenticationSettings": "Disabled"}))})).await;
        ctx.wait_ready::<UserMfaSetting>("carol", None).await;
        let second = wait_rolled_out(&ctx, 2).await;
        assert!(second.contains(&new_leader));

        // helm upgrade with a changed value rolls both pods: follow every pod's log through the
        // rollout; leaderships never overlap and each one is a Lease transition.
        let logs = Arc::new(Mutex::new(BTreeMap::new()));
        let mut followed: BTreeSet<String> = BTreeSet::new();
        // Old pods are followed from before the upgrade until their containers exit.
        for pod in &second {
            follow_logs(&ctx, pod.clone(), logs.clone());
            followed.insert(pod.clone());
        }
        let (_, transitions_before) = lease(&ctx).await;
        let upgrade_started = jiff::Timestamp::now();
        let (ok, _, stderr) = ctx
            .helm(&["upgrade", RELEASE, CHART, "--reuse-values", "--set", "controller.resyncInterval=45s"])
            .await;
        assert!(ok, "helm upgrade: {stderr}");
        let deadline = Instant::now() + POD_WAIT;
        let third = loop {
            let (all, _) = pods(&ctx).await;
            let deployment = ctx.api::<Deployment>().get(DEPLOYMENT).await.unwrap();
            let status = deployment.status.unwrap_or_default();
            let ready: Vec<String> = all.iter().filter(|p| pod_ready(p)).map(name_of).collect();
            if deployment.metadata.generation == status.observed_generation
                && status.updated_replicas == Some(2)
                && all.len() == 2
                && ready.len() == 2
                && ready.iter().all(|p| !second.contains(p))
            {
                break ready;
            }
            assert!(Instant::now() < deadline, "rollout not done: {:?}", pod_report(&all));
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let final_leader = wait_leader_among(&ctx, &third).await;
        // The old pods' logs end when their containers exit; the new pods' are read as they are
        // (a new pod is never replaced during the rollout: maxUnavailable rounds to 0).
        eventually(
            "the followed logs of the old pods",
            Duration::from_secs(40),
            || async { logs.lock().unwrap().len() },
            |count| *count == followed.len(),
        )
        .await;
        for pod in &third {
            let text = pod_logs(&ctx, pod, false).await;
            logs.lock().unwrap().insert(pod.clone(), text);
        }
        let followers_done = logs.lock().unwrap().len();
        let (_, transitions_after) = lease(&ctx).await;
        let events = leadership_events(&logs.lock().unwrap());
        eprintln!("[e2e] helm upgrade: pods {third:?}, {final_leader} leads; {followers_done} logs; leadership: {events:?}");
        never_two_leaders(&events).unwrap();
        let acquired_during_upgrade = events
            .iter()
            .filter(|(time, _, event)| event == "became the leader" && *time > upgrade_started)
            .count() as i32;
        assert!(
            events.iter().any(|(_, pod, event)| event == "became the leader" && third.contains(pod)),
            "a new pod must have taken over: {events:?}"
        );
        assert_eq!(transitions_after - transitions_before, acquired_during_upgrade, "{events:?}");

        // The PodDisruptionBudget (minAvailable 1) allows evicting one pod, and refuses the
        // eviction of the other while the first has no Ready replacement.
        let budgets = ctx.api::<PodDisruptionBudget>();
        eventually(
            "the PodDisruptionBudget to allow one disruption",
            Duration::from_secs(60),
            || async { budgets.get(DEPLOYMENT).await.ok().and_then(|b| b.status).map(|s| (s.current_healthy, s.disruptions_allowed)) },
            |status| *status == Some((2, 1)),
        )
        .await;
        // kube's client retries 429 answers by default, which would wait out the very refusal
        // this checks: evict with a client that does not.
        let kubeconfig = kube::config::Kubeconfig::read_from(&ctx.cluster.kubeconfig).unwrap();
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        config.default_retry = false;
        let pod_api: Api<Pod> = Api::namespaced(kube::Client::try_from(config).unwrap(), &ctx.namespace);
        pod_api.evict(&third[0], &EvictParams::default()).await.expect("the first eviction is allowed");
        match pod_api.evict(&third[1], &EvictParams::default()).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 429, "{status:?}");
                assert!(status.message.contains("disruption budget"), "{}", status.message);
            }
            other => panic!(
                "evicting the last pod was not refused: {other:?}; budget {:?}; pods {:?}",
                budgets.get(DEPLOYMENT).await.ok().and_then(|b| b.status),
                pod_report(&pods(&ctx).await.0)
            ),
        }
        wait_rolled_out(&ctx, 2).await;

        // helm uninstall removes the operator, never the CRDs or the resources users declared.
        let (ok, _, stderr) = ctx.helm(&["uninstall", RELEASE, "--wait"]).await;
        assert!(ok, "helm uninstall: {stderr}");
        let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
        for crd in ["directorymfapolicies", "usermfasettings", "ramusermfastatuses"] {
            crds.get(&format!("{crd}.cloudsso.mfa-operator.dev")).await.expect("CRD kept");
        }
        assert_eq!(ctx.api::<DirectoryMfaPolicy>().list(&Default::default()).await.unwrap().items.len(), 1);
        assert_eq!(ctx.api::<UserMfaSetting>().list(&Default::default()).await.unwrap().items.len(), 3);
        eventually("the pods to go", POD_WAIT, || pods(&ctx), |(all, _)| all.is_empty()).await;
        // No operator is left to remove its finalizers: let the namespace go.
        for name in ["alice", "bob", "carol"] {
            let _ = ctx.api::<UserMfaSetting>()
                .patch(name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
                .await;
        }
        let _ = ctx.api::<DirectoryMfaPolicy>()
            .patch("dir", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
            .await;
    })
    .await;
}
