//! The chart's monitoring against a real Prometheus (Debian's `prometheus` package, which
//! hack/test.sh installs): promtool checks the chart's PrometheusRule and runs its unit tests
//! (tests/prometheus/rules-test.yaml); then a Prometheus on loopback scrapes an operator every
//! second with the chart's rules loaded (a short `for:`): the census alerts fire for the
//! directory with failing users and for no other, the UserMfaPolicy alert fires for an Observe
//! policy whose users fail (labelled with the policy's namespace, which honor_labels keeps over
//! the target's), and every query of the chart's Grafana dashboard (dashboards/operator.json)
//! returns data. Without `prometheus` and `promtool` on PATH the tests skip, except under CI,
//! where that is a failure.

mod common;
mod harness;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cloudsso_mfa_operator::api::{DirectoryMfaPolicy, UserMfaPolicy, UserMfaSetting};
use cloudsso_mfa_operator::emulator::Seed;
use common::*;
use harness::{SECRET, eventually};
use serde_json::{Value, json};

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/helm/cloudsso-mfa-operator/dashboards/operator.json"
);
const RULES_TEST: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/prometheus/rules-test.yaml"
);
/// A directory where every user has MFA on with a device: its census raises no alert.
const COMPLIANT_DIRECTORY: &str = "d-00fc2p61good";
/// The UserMfaPolicy gauge (Metrics::set_policy_users), by namespace, policy, directory, state.
const POLICY_GAUGE: &str = "cloudsso_mfa_operator_policy_users";
/// The UserMfaPolicy whose users fail, in the test's namespace.
const POLICY: &str = "failing-users";
/// The release namespace: the target's `namespace` label, as the Prometheus Operator sets it
/// from the ServiceMonitor's Service. It differs from the policy's namespace (the test's), so the
/// policy gauge keeping the latter proves honor_labels is in effect.
const RELEASE_NAMESPACE: &str = "cloudsso-system";
/// The scrape job of the test's Prometheus, which the dashboard's `$job` selects.
const JOB: &str = "cloudsso-mfa-operator";

/// `name` on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// promtool and prometheus, or None (the test skips) when they are missing outside CI.
fn prometheus_tools() -> Option<(PathBuf, PathBuf)> {
    match (on_path("promtool"), on_path("prometheus")) {
        (Some(promtool), Some(prometheus)) => Some((promtool, prometheus)),
        // CI installs the package (hack/test.sh): a missing binary there is a broken run.
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "promtool and prometheus are not on PATH under CI: apt-get install prometheus (hack/test.sh does)"
            )
        }
        _ => {
            eprintln!(
                "[e2e] skipped: promtool or prometheus not on PATH (apt-get install prometheus, or run hack/test.sh)"
            );
            None
        }
    }
}

/// `helm template` of the chart with the PrometheusRule enabled and `sets`, for a release in
/// `namespace`; the rule's `spec.groups` as a Prometheus rules file.
async fn render_rules(helm: &Path, namespace: &str, sets: &[&str]) -> String {
    let mut args = vec![
        "template",
        "cloudsso-mfa-operator",
        harness::CHART,
        "--namespace",
        namespace,
        "--show-only",
        "templates/prometheusrule.yaml",
        "--set",
        "metrics.prometheusRule.enabled=true",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let output = tokio::process::Command::new(helm)
        .args(&args)
        .output()
        .await
        .expect("helm runs");
    assert!(
        output.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rule: serde_yaml::Value =
        serde_yaml::from_slice(&output.stdout).expect("the PrometheusRule is YAML");
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    let mut file = serde_yaml::Mapping::new();
    file.insert("groups".into(), rule["spec"]["groups"].clone());
    serde_yaml::to_string(&file).unwrap()
}

/// Runs `program args` in `dir`; panics with its output unless it succeeds; returns stdout.
async fn run(program: &Path, args: &[&str], dir: &Path) -> String {
    let output = tokio::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .unwrap_or_else(|error| panic!("{}: {error}", program.display()));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{stdout}{}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn chart_rules_pass_promtool_check_and_unit_tests() {
    let Some((promtool, _)) = prometheus_tools() else {
        return;
    };
    let cluster = harness::cluster().await;
    let dir = tempfile::tempdir().unwrap();
    // The defaults users get, as the unit tests expect them (release namespace cloudsso-system).
    let rules = render_rules(&cluster.helm, "cloudsso-system", &[]).await;
    std::fs::write(dir.path().join("rules.yaml"), &rules).unwrap();
    let checked = run(&promtool, &["check", "rules", "rules.yaml"], dir.path()).await;
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    std::fs::copy(RULES_TEST, dir.path().join("rules-test.yaml")).unwrap();
    run(&promtool, &["test", "rules", "rules-test.yaml"], dir.path()).await;

    // Every alert of the chart is tested, firing (expected alerts) and not firing (none).
    let tests: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(RULES_TEST).unwrap()).unwrap();
    let cases: Vec<(String, bool)> = tests["tests"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| {
            group["alert_rule_test"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .map(|case| {
            let name = case["alertname"].as_str().unwrap().to_string();
            (
                name,
                case["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|a| !a.is_empty()),
            )
        })
        .collect();
    let rendered: serde_yaml::Value = serde_yaml::from_str(&rules).unwrap();
    let alerts: Vec<&str> = rendered["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
        .filter_map(|rule| rule["alert"].as_str())
        .collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for alert in alerts {
        for fires in [true, false] {
            assert!(
                cases.iter().any(|case| case.0 == alert && case.1 == fires),
                "{alert}: no case where it {}",
                if fires { "fires" } else { "does not fire" }
            );
        }
    }

    // The policy alert's `for:` is its own value; empty falls back to `for`.
    let custom = render_rules(
        &cluster.helm,
        "ops",
        &[
            "metrics.prometheusRule.for=5m",
            "metrics.prometheusRule.policyUsersFailingFor=2h",
        ],
    )
    .await;
    assert!(
        custom.contains("for: 2h") && custom.contains("for: 5m"),
        "{custom}"
    );
    let fallback = render_rules(
        &cluster.helm,
        "ops",
        &[
            "metrics.prometheusRule.for=7m",
            "metrics.prometheusRule.policyUsersFailingFor=",
        ],
    )
    .await;
    let fallback: serde_yaml::Value = serde_yaml::from_str(&fallback).unwrap();
    let policy_alert = fallback["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
        .find(|rule| rule["alert"].as_str() == Some("CloudSsoMfaPolicyUsersFailing"))
        .expect("the policy alert");
    assert_eq!(policy_alert["for"].as_str(), Some("7m"));
}

#[tokio::test]
async fn chart_ships_the_dashboard_for_the_grafana_sidecar() {
    harness::with_namespace("grafana-dashboard", |ctx| async move {
        let render = |sets: Vec<&'static str>| {
            let ctx = ctx.clone();
            async move {
                let mut args = vec![
                    "template",
                    "rel",
                    harness::CHART,
                    "--show-only",
                    "templates/grafana-dashboard.yaml",
                ];
                for set in sets {
                    args.extend(["--set", set]);
                }
                ctx.helm(&args).await
            }
        };
        // Off by default, like the ServiceMonitor and the PrometheusRule.
        let (ok, _, stderr) = render(vec![]).await;
        assert!(
            !ok && stderr.contains("could not find template"),
            "{stderr}"
        );

        let (ok, stdout, stderr) = render(vec!["metrics.grafanaDashboard.enabled=true"]).await;
        assert!(ok, "{stderr}");
        let map: Value = serde_yaml::from_str(&stdout).unwrap();
        assert_eq!(map["kind"], "ConfigMap");
        assert_eq!(map["metadata"]["namespace"], ctx.namespace.as_str());
        assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
        let shipped: Value =
            serde_json::from_str(map["data"]["cloudsso-mfa-operator.json"].as_str().unwrap())
                .expect("the ConfigMap holds the dashboard JSON");
        let file: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap())
            .expect("dashboards/operator.json is JSON");
        assert_eq!(shipped, file);
        assert_eq!(file["uid"], "cloudsso-mfa-operator");
        let (ok, stdout, stderr) = ctx
            .helm(&[
                "lint",
                harness::CHART,
                "--set",
                "metrics.grafanaDashboard.enabled=true",
                "--set",
                "metrics.prometheusRule.enabled=true",
            ])
            .await;
        assert!(ok, "helm lint: {stdout}{stderr}");

        // Grafana's own namespace, the sidecar's label, a folder annotation.
        let (ok, stdout, stderr) = render(vec![
            "metrics.grafanaDashboard.enabled=true",
            "metrics.grafanaDashboard.namespace=monitoring",
            "metrics.grafanaDashboard.labelKey=dashboards",
            "metrics.grafanaDashboard.labelValue=cloudsso",
            "metrics.grafanaDashboard.annotations.grafana_folder=Security",
        ])
        .await;
        assert!(ok, "{stderr}");
        let map: Value = serde_yaml::from_str(&stdout).unwrap();
        assert_eq!(map["metadata"]["namespace"], "monitoring");
        assert_eq!(map["metadata"]["labels"]["dashboards"], "cloudsso");
        assert!(map["metadata"]["labels"].get("grafana_dashboard").is_none());
        assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "Security");
    })
    .await;
}

/// The common seed (alice: Enabled, 2 devices; bob: Disabled; carol: Enabled, 1 device) plus dave
/// (Enabled, no device), and a second directory where everyone complies.
fn seed() -> Seed {
    let mut seed = serde_json::to_value(common::seed()).expect("the seed serializes");
    let users = seed["directories"][0]["users"].as_array_mut().unwrap();
    users.push(
        json!({"userId": "u-00q8wbq42wiltcrk0004", "userName": "dave",
        "userMfaAuthenticationSettings": "Enabled"}),
    );
    seed["directories"].as_array_mut().unwrap().push(json!({
        "directoryId": COMPLIANT_DIRECTORY, "mfaAuthenticationSettings": "Byuser",
        "operationForRiskLogin": "Autonomous",
        "users": [{"userId": "u-00q8wbq42wiltcrk0101", "userName": "erin",
            "userMfaAuthenticationSettings": "Enabled",
            "mfaDevices": [{"deviceId": "mfa-e1", "deviceName": "Erin-TOTP", "deviceType": "TOTP",
                "effectiveTime": "2025-02-02T02:02:02Z"}]}]}));
    Seed::parse(&seed.to_string(), "prometheus test seed").expect("seed is valid")
}

/// A Prometheus server on loopback, killed when dropped.
struct Prometheus {
    child: tokio::process::Child,
    url: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` on a free loopback port with `dir`/prometheus.yml, its TSDB and log in
    /// `dir` too.
    async fn start(binary: &Path, dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("prometheus.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let ready = format!("{}/-/ready", server.url);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let answer = http().get(&ready).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return server;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus not ready in 30s:\n{}",
                server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// GET `path` with `query` on the HTTP API; the JSON answer's `data`.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = format!("{}{path}", self.url);
        let answer: Value = http()
            .get(&url)
            .query(query)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {url}: {error}"))
            .json()
            .await
            .expect("JSON answer");
        assert_eq!(answer["status"], "success", "{url} {query:?}: {answer}");
        answer["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<Value> {
        self.api("/api/v1/query", &[("query", expr)]).await["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts", &[]).await["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn http() -> reqwest::Client {
    cloudsso_mfa_operator::cloud::http_client().expect("HTTP client")
}

/// Whether one sample of an instant query's result is a number (not NaN, as a quantile of no
/// observations is).
fn has_number(result: &[Value]) -> bool {
    result.iter().any(|series| {
        series["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| !v.is_nan())
    })
}

/// Every query of the dashboard: (panel title, expr).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((panel["title"].as_str().unwrap_or("?").into(), expr.into()));
                }
            }
            walk(panel["panels"].as_array().map_or(&[], Vec::as_slice), out);
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().expect("panels"), &mut out);
    out
}

/// A panel query as Grafana sends it: its variables replaced (`$job` and `$directory` at "All").
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$job", JOB)
        .replace("$directory", ".*")
}

fn firing<'a>(alerts: &'a [Value], name: &str, directory: &str) -> Option<&'a Value> {
    firing_where(alerts, name, &[("directory", directory)])
}

/// The firing alert `name` whose labels include all of `labels`.
fn firing_where<'a>(alerts: &'a [Value], name: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    alerts.iter().find(|alert| {
        alert["labels"]["alertname"] == name
            && labels.iter().all(|(k, v)| alert["labels"][*k] == *v)
            && alert["state"] == "firing"
    })
}

#[tokio::test]
async fn prometheus_scraping_the_operator_fires_the_census_and_policy_alerts_and_answers_every_dashboard_query()
 {
    let Some((promtool, prometheus)) = prometheus_tools() else {
        return;
    };
    harness::with_namespace("prometheus", |ctx| async move {
        let (url, _state) = start_emulator_with(seed()).await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        ctx.credentials_secret("wrong-keys", ACCESS_KEY_ID, "not-the-secret")
            .await;
        let operator = ctx.start_operator("2s", &[]).await;
        operator.wait_until_ready().await;
        for (name, directory) in [("failing", DIRECTORY), ("compliant", COMPLIANT_DIRECTORY)] {
            ctx.apply::<DirectoryMfaPolicy>(json!({"metadata": {"name": name}, "spec": {
                "directoryId": directory, "mfaAuthenticationSettings": "Byuser",
                "operationForRiskLogin": "Autonomous", "endpoint": url,
                "census": {"enabled": true}, "credentialsSecretRef": {"name": SECRET}}}))
                .await;
        }
        // Reconciles that fail (the cloud refuses the signature), for the errors panels.
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "wrong-keys"}, "spec": {
            "directoryId": DIRECTORY, "userId": "u-00q8wbq42wiltcrk0003",
            "userMfaAuthenticationSettings": "Enabled", "endpoint": url,
            "credentialsSecretRef": {"name": "wrong-keys"}}}))
            .await;
        ctx.wait_ready::<DirectoryMfaPolicy>("failing", Some(&operator))
            .await;
        ctx.wait_ready::<DirectoryMfaPolicy>("compliant", Some(&operator))
            .await;
        // A UserMfaPolicy over every user of the failing directory. Observe, so it writes nothing
        // and the census above stays failing; Enabled with requireBoundDevice (the default):
        // alice complies, bob (Disabled) and dave (no device) fail, carol is exempt. Every state
        // of the policy panels but `conflict` (0, still a sample) is then non-zero.
        ctx.apply::<UserMfaPolicy>(json!({"metadata": {"name": POLICY}, "spec": {
            "directoryId": DIRECTORY, "endpoint": url, "credentialsSecretRef": {"name": SECRET},
            "users": {"all": true}, "userMfaAuthenticationSettings": "Enabled",
            "managementPolicy": "Observe",
            "exemptions": [{"userName": "carol", "reason": "a dashboard panel with an exempt user"}]}}))
            .await;
        let status = eventually(
            "the policy to count its users",
            harness::WAIT,
            || async { ctx.get::<UserMfaPolicy>(POLICY).await.and_then(|p| p.status) },
            |status| status.as_ref().is_some_and(|s| s.matched_users == Some(4)),
        )
        .await
        .unwrap();
        assert_eq!(
            (status.compliant_users, status.non_compliant_users, status.exempt_users),
            (Some(1), Some(2), Some(1)),
            "{status:#?}"
        );
        let gauge = "cloudsso_mfa_operator_directory_users";
        eventually(
            "both censuses in the gauges",
            harness::WAIT,
            || operator.scrape(),
            |m| {
                m.value(gauge, &[("directory", DIRECTORY)]) == Some(4.0)
                    && m.value(gauge, &[("directory", COMPLIANT_DIRECTORY)]) == Some(1.0)
            },
        )
        .await;
        // Throttling for a moment, for the throttling panels.
        set_faults(&url, json!({"qps": 1})).await;
        eventually(
            "throttled calls to be counted",
            harness::WAIT,
            || operator.scrape(),
            |m| m.value("cloudsso_mfa_operator_cloud_api_throttled_total", &[]) > Some(0.0),
        )
        .await;
        set_faults(&url, json!({})).await;

        // The chart's rules (released in RELEASE_NAMESPACE) with a short `for:`, and Prometheus
        // scraping the operator every second as the chart's ServiceMonitor has it: honorLabels,
        // and the target labels the Prometheus Operator adds (namespace, pod, endpoint: the
        // port's name), of which the operator's own wins: `endpoint` on the compliance gauges,
        // `namespace` (the policy's) on the policy gauge.
        let dir = tempfile::tempdir().unwrap();
        let rules = render_rules(
            &ctx.cluster.helm,
            RELEASE_NAMESPACE,
            &[
                "metrics.prometheusRule.for=2s",
                "metrics.prometheusRule.policyUsersFailingFor=2s",
            ],
        )
        .await;
        std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        run(&promtool, &["check", "rules", "rules.yaml"], dir.path()).await;
        let target = operator.metrics_address().await;
        let config = json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [{
                "job_name": JOB, "honor_labels": true, "metrics_path": "/metrics",
                "static_configs": [{"targets": [target], "labels": {
                    "namespace": RELEASE_NAMESPACE, "pod": "cloudsso-mfa-operator-0", "endpoint": "metrics"}}],
            }],
        });
        std::fs::write(
            dir.path().join("prometheus.yml"),
            serde_yaml::to_string(&config).unwrap(),
        )
        .unwrap();
        run(&promtool, &["check", "config", "prometheus.yml"], dir.path()).await;
        let server = Prometheus::start(&prometheus, dir.path()).await;
        let up = format!("up{{job=\"{JOB}\"}} == 1");
        eventually(
            "Prometheus to scrape the operator",
            harness::WAIT,
            || server.query(&up),
            |result| result.len() == 1,
        )
        .await;

        // Series without a label of the operator's keep the target's.
        let leader = server
            .query(&format!(
                "cloudsso_mfa_operator_leader{{namespace=\"{RELEASE_NAMESPACE}\", endpoint=\"metrics\"}}"
            ))
            .await;
        assert_eq!(leader.len(), 1, "{leader:?}");
        // The policy gauge keeps its own `namespace`, the policy's: one series per state, none
        // relabelled to exported_namespace nor carrying the release namespace.
        let policy_series = server
            .query(&format!("{POLICY_GAUGE}{{policy=\"{POLICY}\"}}"))
            .await;
        assert_eq!(policy_series.len(), 5, "{policy_series:#?}");
        for series in &policy_series {
            let labels = &series["metric"];
            assert_eq!(labels["namespace"], ctx.namespace.as_str(), "{series}");
            assert_eq!(labels["directory"], DIRECTORY, "{series}");
            assert!(labels.get("exported_namespace").is_none(), "{series}");
        }

        // (a) The census alerts fire for the directory with failing users (bob: Disabled; dave:
        // Enabled without a device), with the cloud endpoint the census read; the compliant
        // directory raises none, and the leader in the release namespace keeps NoLeader quiet.
        let alerts = eventually(
            "the census alerts to fire for the failing directory",
            Duration::from_secs(60),
            || server.alerts(),
            |alerts| {
                firing(alerts, "CloudSSOUsersWithMFADisabled", DIRECTORY).is_some()
                    && firing(alerts, "CloudSSOUsersWithoutMFADevice", DIRECTORY).is_some()
            },
        )
        .await;
        let disabled = firing(&alerts, "CloudSSOUsersWithMFADisabled", DIRECTORY).unwrap();
        // The endpoint as the operator normalizes it (a trailing slash).
        assert_eq!(disabled["labels"]["endpoint"], format!("{url}/"), "{disabled}");
        assert_eq!(disabled["labels"]["severity"], "warning");
        assert_eq!(
            disabled["annotations"]["summary"],
            format!("1 users of CloudSSO directory {DIRECTORY} have MFA disabled")
        );
        let without_device = firing(&alerts, "CloudSSOUsersWithoutMFADevice", DIRECTORY).unwrap();
        assert_eq!(without_device["value"].as_str().map(str::parse::<f64>), Some(Ok(1.0)));

        // (a') The policy alert fires for the policy, in its own namespace, counting its two
        // failing users; the recording rule gives its compliant share (1 of 3 counted users).
        let policy_labels = [
            ("namespace", ctx.namespace.as_str()),
            ("policy", POLICY),
            ("directory", DIRECTORY),
        ];
        let alerts = eventually(
            "CloudSsoMfaPolicyUsersFailing to fire for the policy",
            Duration::from_secs(60),
            || server.alerts(),
            |alerts| firing_where(alerts, "CloudSsoMfaPolicyUsersFailing", &policy_labels).is_some(),
        )
        .await;
        let failing = firing_where(&alerts, "CloudSsoMfaPolicyUsersFailing", &policy_labels).unwrap();
        assert_eq!(failing["labels"]["severity"], "warning", "{failing}");
        assert_eq!(failing["value"].as_str().map(str::parse::<f64>), Some(Ok(2.0)), "{failing}");
        assert_eq!(
            failing["annotations"]["summary"],
            format!(
                "2 users fail UserMfaPolicy {}/{POLICY} (CloudSSO directory {DIRECTORY})",
                ctx.namespace
            )
        );
        let share_query = format!(
            "namespace_policy_directory:{POLICY_GAUGE}_compliant:ratio{{policy=\"{POLICY}\"}}"
        );
        let ratio = eventually(
            "the policy's compliant share to be recorded",
            Duration::from_secs(30),
            || server.query(&share_query),
            |result| has_number(result),
        )
        .await;
        let share: f64 = ratio[0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!((share - 1.0 / 3.0).abs() < 1e-9, "{ratio:?}");
        // A few more evaluations, then nothing about the compliant directory, and no NoLeader.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let alerts = server.alerts().await;
        assert!(
            !alerts
                .iter()
                .any(|a| a["labels"]["directory"] == COMPLIANT_DIRECTORY
                    || a["labels"]["alertname"] == "CloudSSOMfaOperatorNoLeader"),
            "{alerts:#?}"
        );

        // (b) Every panel query of the dashboard returns a number, and its variables have values.
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
        let jobs = server
            .api(
                "/api/v1/label/job/values",
                &[("match[]", "cloudsso_mfa_operator_leader")],
            )
            .await;
        assert_eq!(jobs, json!([JOB]));
        let directories = server
            .api(
                "/api/v1/label/directory/values",
                &[(
                    "match[]",
                    &format!(
                        "{{__name__=~\"cloudsso_mfa_operator_directory_users|{POLICY_GAUGE}\", job=~\"{JOB}\"}}"
                    ),
                )],
            )
            .await;
        assert_eq!(directories, json!([DIRECTORY, COMPLIANT_DIRECTORY]));
        let queries = dashboard_queries(&dashboard);
        let mut policy_panels = Vec::new();
        for (panel, expr) in queries.clone() {
            if expr.contains(POLICY_GAUGE) {
                policy_panels.push(panel.clone());
            }
            let query = substitute(&expr);
            assert!(!query.contains('$'), "{panel}: a variable left in {query}");
            let result = eventually(
                &format!("panel {panel:?} to return data: {query}"),
                Duration::from_secs(30),
                || server.query(&query),
                |result| has_number(result),
            )
            .await;
            eprintln!("[e2e] panel {panel:?}: {} series", result.len());
        }
        eprintln!("[e2e] all {} dashboard queries returned data", queries.len());
        // The policy panels were among them, not left out.
        policy_panels.dedup();
        assert_eq!(
            policy_panels,
            [
                "Users failing each policy",
                "Users by state per policy",
                "Exempt and conflicting users"
            ]
        );
        server.stop().await;
        operator.stop().await;
    })
    .await;
}
