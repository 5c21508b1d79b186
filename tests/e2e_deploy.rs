//! The Helm chart against a real kube-apiserver: it lints and renders (the `default` CloudAccount
//! only for the namespaces named, the people's roles without `/status`, no unused verb, the
//! optional NetworkPolicy), installs with `helm install`, its pod passes the "restricted" Pod
//! Security profile, and its ServiceAccount's RBAC is exactly enough: the operator running as that
//! ServiceAccount reconciles every kind and is denied what its rules leave out.

mod common;
mod harness;

use std::time::Duration;

use cloudsso_mfa_operator::api::{
    DirectoryMfaPolicy, RamSecurityPreference, RamUserMfaSetting, RamUserMfaStatus, UserMfaSetting,
};
use common::*;
use harness::{CHART, SECRET, TestContext, WAIT, eventually, is_ready, ready};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// `helm template` with `--set` pairs; the rendered documents as JSON, or helm's stderr.
async fn render(ctx: &TestContext, sets: &[&str]) -> Result<Vec<Value>, String> {
    let mut args = vec!["template", "rel", CHART];
    for set in sets {
        args.extend(["--set", set]);
    }
    let (ok, stdout, stderr) = ctx.helm(&args).await;
    if !ok {
        return Err(stderr);
    }
    Ok(serde_yaml::Deserializer::from_str(&stdout)
        .filter_map(|document| {
            let value: Value = serde::Deserialize::deserialize(document).ok()?;
            (!value.is_null()).then_some(value)
        })
        .collect())
}

fn kinds(documents: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    kinds.sort();
    kinds
}

fn find<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn all_of<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// Every (resource, verb) a role's rules grant, e.g. ("events", "create").
fn grants(role: &Value) -> Vec<(String, String)> {
    let mut grants = Vec::new();
    for rule in role["rules"].as_array().into_iter().flatten() {
        for resource in rule["resources"].as_array().into_iter().flatten() {
            for verb in rule["verbs"].as_array().into_iter().flatten() {
                grants.push((
                    resource.as_str().unwrap_or_default().to_string(),
                    verb.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    grants
}

fn label(document: &Value, name: &str) -> Option<String> {
    document["metadata"]["labels"][name]
        .as_str()
        .map(str::to_string)
}

fn env_of(deployment: &Value) -> Vec<Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn chart_lints_renders_every_option_and_refuses_bad_values() {
    harness::with_namespace("chart-render", |ctx| async move {
        let (ok, stdout, stderr) = ctx.helm(&["lint", "--strict", CHART]).await;
        assert!(ok, "helm lint: {stdout}{stderr}");

        let defaults = render(&ctx, &[]).await.unwrap();
        assert_eq!(
            kinds(&defaults),
            [
                "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "Deployment",
                "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"
            ]
        );
        let deployment = find(&defaults, "Deployment");
        assert_eq!(deployment["spec"]["replicas"], 2);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(pod["containers"][0]["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert!(env_of(deployment).contains(&json!({"name": "LEADER_ELECTION", "value": "true"})));
        // The Lease namespace is a plain value, not only the downward API, so the operator finds
        // its Lease (the one its Role allows) even when started outside a pod with this env.
        assert!(env_of(deployment).contains(&json!({"name": "LEADER_ELECTION_NAMESPACE", "value": ctx.namespace})));
        let leases = find(&defaults, "Role");
        assert_eq!(leases["rules"][1]["resourceNames"], json!(["cloudsso-mfa-operator"]));

        // Credentials from an existing Secret are not the operator's own: never in its environment
        // (only a CloudAccount reaches them, below); RRSA; a ServiceMonitor; one namespace only.
        let secret = render(&ctx, &["credentials.existingSecret=keys"]).await.unwrap();
        let env = env_of(find(&secret, "Deployment"));
        assert!(
            !env.iter().any(|e| e["name"].as_str().is_some_and(|n| n.starts_with("ALIBABA_CLOUD_ACCESS_KEY"))
                || e["valueFrom"]["secretKeyRef"]["name"] == "keys"),
            "{env:?}"
        );
        let rrsa = render(&ctx, &[
            "credentials.rrsa.enabled=true",
            "credentials.rrsa.roleArn=acs:ram::1234:role/mfa-operator",
            "credentials.rrsa.oidcProviderArn=acs:ram::1234:oidc-provider/ack-rrsa-c1",
            "metrics.serviceMonitor.enabled=true",
            "watchNamespace=security",
        ])
        .await
        .unwrap();
        assert_eq!(
            find(&rrsa, "ServiceAccount")["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"],
            "mfa-operator"
        );
        let deployment = find(&rrsa, "Deployment");
        let env = env_of(deployment);
        for name in ["ALIBABA_CLOUD_ROLE_ARN", "ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "ALIBABA_CLOUD_OIDC_TOKEN_FILE"] {
            assert!(env.iter().any(|e| e["name"] == name), "{name} missing");
        }
        assert!(env.contains(&json!({"name": "WATCH_NAMESPACE", "value": "security"})));
        let volume = &deployment["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
        assert_eq!(volume["audience"], "sts.aliyuncs.com");
        assert_eq!(find(&rrsa, "ServiceMonitor")["spec"]["endpoints"][0]["port"], "metrics");
        // watchNamespace: the namespaced kinds, Secrets and Events through a Role there; only
        // the cluster-scoped reads (CloudAccounts, Namespaces) through a ClusterRole.
        assert_eq!(
            rrsa.iter().filter(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == "security").count(),
            1
        );
        let cluster_read = named(&rrsa, "ClusterRole", "rel-cloudsso-mfa-operator-cluster-read");
        let mut read = grants(cluster_read);
        read.sort();
        assert_eq!(
            read,
            [
                ("cloudaccounts", "get"), ("cloudaccounts", "list"), ("cloudaccounts", "watch"),
                ("cloudaccounts/status", "patch"),
                ("namespaces", "get"), ("namespaces", "list"), ("namespaces", "watch"),
            ]
            .map(|(r, v)| (r.to_string(), v.to_string()))
        );
        let bindings = all_of(&rrsa, "ClusterRoleBinding");
        assert_eq!(bindings.len(), 1, "one ClusterRoleBinding: {bindings:?}");
        assert_eq!(bindings[0]["roleRef"]["name"], "rel-cloudsso-mfa-operator-cluster-read");

        // The optional alerts only name metrics the operator exports.
        let alerting = render(&ctx, &["metrics.prometheusRule.enabled=true"]).await.unwrap();
        let rule = find(&alerting, "PrometheusRule");
        // A registry with a series in every family (empty families are not exposed).
        let metrics = std::sync::Arc::new(cloudsso_mfa_operator::telemetry::Metrics::new());
        metrics.reconcile_finished("UserMfaSetting", Duration::from_millis(1), Some("Throttled"));
        metrics.set_compliance("https://cloudsso/", "d-1", Default::default());
        metrics.set_policy_users("security", "engineers", "d-1", Default::default());
        metrics
            .cloud_observer("cloudsso")
            .call_finished("ListUsers", "Throttling.User", true, Duration::from_millis(1));
        let exported = metrics.encode().unwrap();
        let (mut alerts, mut records) = (0, 0);
        for group in rule["spec"]["groups"].as_array().unwrap() {
            for alert in group["rules"].as_array().unwrap() {
                if alert.get("alert").is_some() { alerts += 1 } else { records += 1 }
                let expr = alert["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if let Some(name) = word.strip_prefix("cloudsso_mfa_operator_") {
                        let family = name.trim_end_matches("_total");
                        assert!(
                            exported.contains(&format!("# TYPE cloudsso_mfa_operator_{family} ")),
                            "{} uses {word}, which the operator does not export",
                            alert["alert"]
                        );
                    }
                }
            }
        }
        // Alerts: 2 on the census, 1 on UserMfaPolicy (cloudsso_mfa_operator_policy_users), 3 on
        // the operator; 2 recording rules on the policy gauge.
        assert_eq!((alerts, records), (6, 2));

        // Values that cannot work are refused with the reason.
        for (sets, reason) in [
            (vec!["leaderElection.enabled=false"], "replicaCount > 1 needs leaderElection.enabled"),
            (vec!["credentials.rrsa.enabled=true"], "needs credentials.rrsa.roleArn"),
            (vec!["metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"], "needs metrics.service.enabled"),
        ] {
            let error = render(&ctx, &sets).await.unwrap_err();
            assert!(error.contains(reason), "{sets:?}: {error}");
        }
        let single = render(&ctx, &["replicaCount=1", "leaderElection.enabled=false"]).await.unwrap();
        assert!(!kinds(&single).contains(&"PodDisruptionBudget".to_string()));
    })
    .await;
}

/// NOTES.txt as `helm install --dry-run=client` renders it with `sets`.
async fn notes(ctx: &TestContext, sets: &[&str]) -> String {
    // Client-side: the test API server need not serve the CloudAccount kind.
    let mut args = vec!["install", "rel", CHART, "--dry-run=client"];
    for set in sets {
        args.extend(["--set", set]);
    }
    let (ok, stdout, stderr) = ctx.helm(&args).await;
    assert!(ok, "helm install --dry-run: {stderr}");
    stdout
        .split("NOTES:")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn chart_default_account_admits_only_the_named_namespaces() {
    harness::with_namespace("chart-account", |ctx| async move {
        // No credentials, or credentials without namespaces: no CloudAccount, and NOTES says why.
        assert!(all_of(&render(&ctx, &[]).await.unwrap(), "CloudAccount").is_empty());
        let unnamed = render(&ctx, &["credentials.existingSecret=keys"]).await.unwrap();
        assert!(all_of(&unnamed, "CloudAccount").is_empty(), "credentials alone must admit no namespace");
        let told = notes(&ctx, &["credentials.existingSecret=keys"]).await;
        assert!(told.contains("No CloudAccount was created"), "{told}");
        assert!(told.contains("defaultAccount.namespaces"), "{told}");

        // With the Secret and two namespaces: a secretRef to the release namespace, selecting
        // exactly those namespaces by name, and the directories named.
        let sets = [
            "credentials.existingSecret=keys",
            "defaultAccount.namespaces={team-a,team-b}",
            "defaultAccount.directoryIds={d-00fc2p61abcd}",
        ];
        let documents = render(&ctx, &sets).await.unwrap();
        let accounts = all_of(&documents, "CloudAccount");
        assert_eq!(accounts.len(), 1);
        let account = accounts[0];
        assert_eq!(account["apiVersion"], "cloudsso.mfa-operator.dev/v1alpha1");
        assert_eq!(account["metadata"]["name"], "default");
        assert!(account["metadata"]["namespace"].is_null(), "CloudAccount is cluster-scoped");
        assert_eq!(
            account["spec"],
            json!({
                "region": "cn-shanghai",
                "credentials": {"secretRef": {"namespace": ctx.namespace, "name": "keys"}},
                "namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]},
                "directoryIds": ["d-00fc2p61abcd"],
            })
        );
        let told = notes(&ctx, &sets).await;
        assert!(told.contains("team-a, team-b"), "{told}");

        // RRSA: the operator's own chain, and an endpoint override; `create=false` renders none.
        let rrsa = [
            "credentials.rrsa.enabled=true",
            "credentials.rrsa.roleArn=acs:ram::1234:role/mfa-operator",
            "credentials.rrsa.oidcProviderArn=acs:ram::1234:oidc-provider/ack-rrsa-c1",
            "defaultAccount.namespaces={security}",
            "defaultAccount.endpoint=https://cloudsso-vpc.cn-shanghai.aliyuncs.com",
            "defaultAccount.region=cn-hangzhou",
        ];
        let documents = render(&ctx, &rrsa).await.unwrap();
        let spec = &find(&documents, "CloudAccount")["spec"];
        assert_eq!(spec["credentials"], json!({"operator": {}}));
        assert_eq!(spec["endpoint"], "https://cloudsso-vpc.cn-shanghai.aliyuncs.com");
        assert_eq!(spec["region"], "cn-hangzhou");
        assert_eq!(spec["namespaceSelector"]["matchExpressions"][0]["values"], json!(["security"]));
        assert!(spec.get("directoryIds").is_none(), "{spec}");
        let mut off = rrsa.to_vec();
        off.push("defaultAccount.create=false");
        assert!(all_of(&render(&ctx, &off).await.unwrap(), "CloudAccount").is_empty());

        // Namespaces without any credentials cannot work: refused with the reason.
        let error = render(&ctx, &["defaultAccount.namespaces={team-a}"]).await.unwrap_err();
        assert!(error.contains("defaultAccount.namespaces needs credentials"), "{error}");

        // watchNamespace elsewhere than the release: that one Secret, read only, in the release
        // namespace, for the CloudAccount's secretRef.
        let mut watched = sets.to_vec();
        watched.push("watchNamespace=security");
        let documents = render(&ctx, &watched).await.unwrap();
        let credentials = named(&documents, "Role", "rel-cloudsso-mfa-operator-credentials");
        assert_eq!(credentials["metadata"]["namespace"], ctx.namespace.as_str());
        assert_eq!(credentials["rules"][0]["resourceNames"], json!(["keys"]));
        assert_eq!(credentials["rules"][0]["verbs"], json!(["get", "list", "watch"]));
    })
    .await;
}

#[tokio::test]
async fn chart_rbac_grants_no_unused_verb_and_people_never_status() {
    harness::with_namespace("chart-roles", |ctx| async move {
        let documents = render(&ctx, &[]).await.unwrap();
        let operator = named(&documents, "ClusterRole", "rel-cloudsso-mfa-operator");
        let granted = grants(operator);
        let has = |resource: &str, verb: &str| granted.contains(&(resource.to_string(), verb.to_string()));
        // What the operator calls: its kinds, their status, Events, Secrets (read), and the
        // cluster-scoped CloudAccounts and Namespaces it matches them with.
        for (resource, verb) in [
            ("usermfasettings", "watch"),
            ("usermfasettings", "patch"),
            ("usermfasettings/status", "patch"),
            ("events", "create"),
            ("secrets", "watch"),
            ("cloudaccounts", "list"),
            ("cloudaccounts", "watch"),
            ("cloudaccounts/status", "patch"),
            ("namespaces", "get"),
            ("namespaces", "list"),
            ("namespaces", "watch"),
        ] {
            assert!(has(resource, verb), "{resource} {verb} missing: {granted:?}");
        }
        // What it never calls: Events are created, never patched; Secrets and Namespaces are
        // only read; no status is read through the subresource; CloudAccounts are never written.
        for (resource, verb) in &granted {
            match resource.as_str() {
                "events" => assert_eq!(verb, "create"),
                "secrets" | "namespaces" => assert!(["get", "list", "watch"].contains(&verb.as_str()), "{resource} {verb}"),
                "cloudaccounts" => assert!(["get", "list", "watch"].contains(&verb.as_str()), "{resource} {verb}"),
                status if status.ends_with("/status") => assert_eq!(verb, "patch", "{status}"),
                _ => {}
            }
            assert!(!resource.ends_with("/finalizers"), "{resource} {verb}: the finalizer is a patch of the object");
        }
        for role in all_of(&documents, "Role").into_iter().chain(all_of(&documents, "ClusterRole")) {
            assert!(
                !grants(role).iter().any(|(resource, verb)| resource == "events" && verb == "patch"),
                "{} grants patch on events", role["metadata"]["name"]
            );
        }

        // The people's roles: every namespaced kind (later ones too), never `/status`, never
        // CloudAccounts; view reads, edit/admin write.
        let kinds = [
            "directorymfapolicies", "usermfasettings", "ramusermfastatuses",
            "usermfapolicies", "ramsecuritypreferences", "ramusermfasettings",
        ];
        let view = named(&documents, "ClusterRole", "rel-cloudsso-mfa-operator-view");
        assert_eq!(label(view, "rbac.authorization.k8s.io/aggregate-to-view").as_deref(), Some("true"));
        assert_eq!(label(view, "rbac.authorization.k8s.io/aggregate-to-edit"), None);
        let edit = named(&documents, "ClusterRole", "rel-cloudsso-mfa-operator-edit");
        assert_eq!(label(edit, "rbac.authorization.k8s.io/aggregate-to-edit").as_deref(), Some("true"));
        assert_eq!(label(edit, "rbac.authorization.k8s.io/aggregate-to-admin").as_deref(), Some("true"));
        for (role, verbs) in [
            (view, &["get", "list", "watch"][..]),
            (edit, &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"][..]),
        ] {
            let granted = grants(role);
            for kind in kinds {
                for verb in verbs {
                    assert!(granted.contains(&(kind.to_string(), verb.to_string())), "{kind} {verb}: {granted:?}");
                }
            }
            for (resource, verb) in &granted {
                assert!(kinds.contains(&resource.as_str()), "{resource} in {}", role["metadata"]["name"]);
                assert!(verbs.contains(&verb.as_str()), "{resource} {verb}");
            }
        }
        // CloudAccounts: a role of its own for cluster admins, aggregated into nothing.
        let admin = named(&documents, "ClusterRole", "rel-cloudsso-mfa-operator-cloudaccount-admin");
        assert!(grants(admin).iter().all(|(resource, _)| resource == "cloudaccounts"));
        assert!(grants(admin).contains(&("cloudaccounts".to_string(), "create".to_string())));
        let labels = admin["metadata"]["labels"].as_object().cloned().unwrap_or_default();
        assert!(!labels.keys().any(|l| l.starts_with("rbac.authorization.k8s.io/aggregate")), "{labels:?}");
        // Nothing binds the people's roles: aggregation (or the admins) does.
        for binding in all_of(&documents, "ClusterRoleBinding") {
            assert_eq!(binding["roleRef"]["name"], "rel-cloudsso-mfa-operator");
        }
        let without = render(&ctx, &["rbac.aggregateToDefaultRoles=false"]).await.unwrap();
        assert!(
            !all_of(&without, "ClusterRole").iter().any(|r| label(r, "rbac.authorization.k8s.io/aggregate-to-view").is_some()),
            "aggregateToDefaultRoles=false still aggregates"
        );

        // The metrics NetworkPolicy: off by default; on, only the named peers reach the metrics
        // port, nothing else gets in, and egress is left alone.
        assert!(all_of(&documents, "NetworkPolicy").is_empty());
        let policy = render(&ctx, &[
            "metrics.networkPolicy.enabled=true",
            "metrics.networkPolicy.from[0].namespaceSelector.matchLabels.team=monitoring",
            "metrics.networkPolicy.from[0].podSelector.matchLabels.app=prometheus",
        ])
        .await
        .unwrap();
        let policy = find(&policy, "NetworkPolicy");
        assert_eq!(policy["metadata"]["namespace"], ctx.namespace.as_str());
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"],
            json!({"app.kubernetes.io/name": "cloudsso-mfa-operator", "app.kubernetes.io/instance": "rel"})
        );
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            policy["spec"]["ingress"],
            json!([{
                "from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}},
                          "podSelector": {"matchLabels": {"app": "prometheus"}}}],
                "ports": [{"port": "metrics", "protocol": "TCP"}],
            }])
        );
        // Enabled with no peer would admit every source: refused.
        let error = render(&ctx, &["metrics.networkPolicy.enabled=true"]).await.unwrap_err();
        assert!(error.contains("needs metrics.networkPolicy.from"), "{error}");
    })
    .await;
}

/// Installs the chart into the test namespace as `release`; uninstalls when dropped is not
/// possible in async, so tests call `uninstall` at the end (the namespace goes anyway).
async fn install(ctx: &TestContext, release: &str, sets: &[&str]) {
    let mut args = vec!["install", release, CHART, "--set", "image.pullPolicy=Never"];
    for set in sets {
        args.extend(["--set", set]);
    }
    let (ok, stdout, stderr) = ctx.helm(&args).await;
    assert!(ok, "helm install: {stdout}{stderr}");
}

async fn uninstall(ctx: &TestContext, release: &str) {
    let (ok, _, stderr) = ctx.helm(&["uninstall", release]).await;
    assert!(ok, "helm uninstall: {stderr}");
}

fn release_name() -> String {
    format!("r{:05}", rand::random::<u32>() % 100_000)
}

#[tokio::test]
async fn chart_installs_and_its_pod_passes_the_restricted_pod_security_profile() {
    harness::with_namespace("chart-install", |ctx| async move {
        ctx.enforce_restricted_pod_security().await;
        let release = release_name();
        // With the metrics NetworkPolicy on, so the API server validates it as rendered.
        install(
            &ctx,
            &release,
            &[
                "metrics.networkPolicy.enabled=true",
                "metrics.networkPolicy.from[0].namespaceSelector.matchLabels.team=monitoring",
            ],
        )
        .await;
        let policy = ctx
            .api::<NetworkPolicy>()
            .get(&format!("{release}-cloudsso-mfa-operator-metrics"))
            .await
            .expect("the chart's NetworkPolicy was admitted");
        let ingress = policy.spec.unwrap().ingress.unwrap_or_default();
        assert_eq!(ingress.len(), 1, "{ingress:?}");
        let (ok, status, _) = ctx.helm(&["status", &release, "-o", "json"]).await;
        assert!(ok);
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["info"]["status"], "deployed");

        let deployment = ctx
            .api::<Deployment>()
            .get(&format!("{release}-cloudsso-mfa-operator"))
            .await
            .expect("the chart's Deployment exists");
        let template = deployment.spec.unwrap().template;
        let pod_from = |spec: Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "operator-pod", "labels": template.metadata.as_ref().unwrap().labels},
                "spec": spec,
            }))
            .unwrap()
        };
        let spec = serde_json::to_value(template.spec.as_ref().unwrap()).unwrap();
        let pods = ctx.api::<Pod>();
        pods.create(&PostParams::default(), &pod_from(spec.clone()))
            .await
            .unwrap_or_else(|error| panic!("the restricted namespace rejected the chart's pod: {error}"));

        // The control: without its securityContext the same pod is refused, so the check is real.
        let mut loose = spec;
        loose.as_object_mut().unwrap().remove("securityContext");
        loose["containers"][0].as_object_mut().unwrap().remove("securityContext");
        let mut pod = pod_from(loose);
        pod.metadata.name = Some("loose-pod".into());
        match pods.create(&PostParams::default(), &pod).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 403);
                assert!(status.message.contains("violates PodSecurity"), "{}", status.message);
            }
            other => panic!("a pod without securityContext was not refused: {other:?}"),
        }

        // `helm upgrade` rolls a changed value into the Deployment.
        let (ok, _, stderr) = ctx
            .helm(&["upgrade", &release, CHART, "--reuse-values", "--set", "controller.resyncInterval=1m"])
            .await;
        assert!(ok, "helm upgrade: {stderr}");
        let upgraded = ctx
            .api::<Deployment>()
            .get(&format!("{release}-cloudsso-mfa-operator"))
            .await
            .unwrap();
        let env = upgraded.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap_or_default();
        assert!(
            env.iter().any(|var| var.name == "RESYNC_INTERVAL" && var.value.as_deref() == Some("1m")),
            "{env:?}"
        );
        uninstall(&ctx, &release).await;
    })
    .await;
}

fn is_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref status)) if status.code == 403)
}

#[tokio::test]
async fn operator_as_the_charts_service_account_reconciles_everything_and_nothing_more() {
    harness::with_namespace("chart-rbac", |ctx| async move {
        prove_rbac(ctx, false).await;
    })
    .await;
}

/// The same with `watchNamespace`: a Role in that namespace instead of a ClusterRole.
#[tokio::test]
async fn with_watch_namespace_a_role_is_enough_and_other_namespaces_are_denied() {
    harness::with_namespace("chart-rbac-ns", |ctx| async move {
        prove_rbac(ctx, true).await;
    })
    .await;
}

async fn prove_rbac(ctx: TestContext, namespaced: bool) {
    let (url, _state) = start_emulator().await;
    ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
        .await;
    let release = release_name();
    let watch = format!("watchNamespace={}", ctx.namespace);
    let sets: Vec<&str> = if namespaced {
        vec![watch.as_str()]
    } else {
        Vec::new()
    };
    install(&ctx, &release, &sets).await;
    let account = format!("{release}-cloudsso-mfa-operator");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = ctx.service_account_kubeconfig(&account, dir.path()).await;
    let kubeconfig = kubeconfig.to_str().unwrap();
    // The container's configuration exactly as the chart renders it (leader election on, the
    // Lease in the release namespace, JSON logs, ...), and the pod name the kubelet would add.
    let deployment = ctx
        .api::<Deployment>()
        .get(&account)
        .await
        .expect("the chart's Deployment");
    let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(container.args.as_deref(), Some(&["run".to_string()][..]));
    let mut env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .filter_map(|var| var.value.clone().map(|value| (var.name.clone(), value)))
        .collect();
    assert!(
        env.contains(&("LEADER_ELECTION".into(), "true".into())),
        "{env:?}"
    );
    env.push(("POD_NAME".into(), "sa-operator".into()));
    env.push(("KUBECONFIG".into(), kubeconfig.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let operator = ctx.start_operator_with("5s", &[], &env).await;

    let common = json!({"directoryId": DIRECTORY, "endpoint": url, "credentialsSecretRef": {"name": SECRET}});
    let with = |extra: Value| {
        let mut spec = common.clone();
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };
    ctx.apply::<DirectoryMfaPolicy>(json!({"metadata": {"name": "dir"},
            "spec": with(json!({"mfaAuthenticationSettings": "Enabled"}))}))
        .await;
    ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "bob"},
            "spec": with(json!({"userName": "bob", "userMfaAuthenticationSettings": "Enabled"}))}))
        .await;
    ctx.apply::<RamUserMfaStatus>(json!({"metadata": {"name": "ram-bob"}, "spec": {
            "userPrincipalName": "bob@example.onaliyun.com", "endpoint": url,
            "credentialsSecretRef": {"name": SECRET}}}))
        .await;
    // The RAM kinds that write: the account's preference (Ready), and a RAM user without a
    // console logon (its NoLoginProfile status written as the ServiceAccount, finalizer added).
    ctx.apply::<RamSecurityPreference>(json!({"metadata": {"name": "ram-account"}, "spec": {
            "mfaOperationForLogin": "independent", "endpoint": url,
            "credentialsSecretRef": {"name": SECRET}}}))
        .await;
    ctx.apply::<RamUserMfaSetting>(json!({"metadata": {"name": "ram-bob"}, "spec": {
            "userPrincipalName": "bob@example.onaliyun.com", "mfaBindRequired": true,
            "endpoint": url, "credentialsSecretRef": {"name": SECRET}}}))
        .await;
    let dmp = ctx.api::<DirectoryMfaPolicy>();
    let ums = ctx.api::<UserMfaSetting>();
    let ram = ctx.api::<RamUserMfaStatus>();
    let ramsp = ctx.api::<RamSecurityPreference>();
    let ramumfa = ctx.api::<RamUserMfaSetting>();
    let all_ready = || async {
        let no_login = ready(&ramumfa.get("ram-bob").await.unwrap().status)
            .is_some_and(|(_, reason, _)| reason == "NoLoginProfile");
        (
            is_ready(&dmp.get("dir").await.unwrap()),
            is_ready(&ums.get("bob").await.unwrap()),
            is_ready(&ram.get("ram-bob").await.unwrap()),
            is_ready(&ramsp.get("ram-account").await.unwrap()) && no_login,
        )
    };
    let states = tokio::time::timeout(WAIT, async {
        loop {
            let states = all_ready().await;
            if states == (true, true, true, true) {
                return states;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(
        states.is_ok(),
        "not all Ready as the ServiceAccount: {:?}\n{}",
        all_ready().await,
        operator.log_tail()
    );
    let holder = ctx
        .api::<Lease>()
        .get("cloudsso-mfa-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert!(holder.starts_with("sa-operator_"), "{holder}");
    eventually(
        "the Updated Event, published as the ServiceAccount",
        WAIT,
        || ctx.events_for("dir"),
        |events| events.iter().any(|(reason, _)| reason == "Updated"),
    )
    .await;
    // Finalizers come off as the ServiceAccount too.
    ums.delete("bob", &DeleteParams::default()).await.unwrap();
    eventually(
        "bob to be gone",
        WAIT,
        || async { ums.get_opt("bob").await.unwrap() },
        Option::is_none,
    )
    .await;
    assert!(
        !operator.logged("forbidden") && !operator.logged("Forbidden"),
        "{}",
        operator.log_tail()
    );

    // What the rules leave out is denied to the same identity.
    let as_operator = ctx.client_for(std::path::Path::new(kubeconfig)).await;
    let secrets: Api<Secret> = Api::namespaced(as_operator.clone(), &ctx.namespace);
    assert!(
        secrets.get(SECRET).await.is_ok(),
        "reading a credential Secret is allowed"
    );
    assert!(
        is_forbidden(
            secrets
                .patch(
                    SECRET,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"stringData": {"accessKeyId": "stolen"}}))
                )
                .await
        ),
        "writing a Secret must be denied"
    );
    let policies: Api<DirectoryMfaPolicy> = Api::namespaced(as_operator.clone(), &ctx.namespace);
    assert!(
        is_forbidden(policies.delete("dir", &DeleteParams::default()).await),
        "deleting a policy must be denied"
    );
    let system_leases: Api<Lease> = Api::namespaced(as_operator.clone(), "kube-system");
    assert!(
        is_forbidden(system_leases.list(&Default::default()).await),
        "Leases outside its namespace must be denied"
    );
    let pods: Api<Pod> = Api::namespaced(as_operator.clone(), &ctx.namespace);
    assert!(
        is_forbidden(pods.list(&Default::default()).await),
        "pods are none of its business"
    );
    let everywhere: Api<DirectoryMfaPolicy> = Api::all(as_operator);
    let listed = everywhere.list(&Default::default()).await;
    if namespaced {
        assert!(
            is_forbidden(listed),
            "with watchNamespace, other namespaces must be denied"
        );
    } else {
        assert!(
            listed.is_ok(),
            "cluster-wide, every namespace is watched: {listed:?}"
        );
    }

    // An operator pointed at a Lease its Role does not name is refused, says so, and never leads.
    let other = ctx
        .start_operator_with(
            "5s",
            &[
                "--leader-election",
                "--leader-election-namespace",
                ctx.namespace.as_str(),
                "--leader-election-id",
                "someone-elses-lease",
            ],
            &[("KUBECONFIG", kubeconfig)],
        )
        .await;
    eventually(
        "the denied Lease to be reported",
        WAIT,
        || async { other.log_lines() },
        |lines| {
            lines.iter().any(|line| {
                line["fields"]["message"] == "cannot read or write the leader Lease"
                    && line["fields"]["error"]
                        .as_str()
                        .is_some_and(|e| e.contains("forbidden"))
            })
        },
    )
    .await;
    assert_eq!(
        other
            .scrape()
            .await
            .value("cloudsso_mfa_operator_leader", &[]),
        Some(0.0)
    );
    other.stop().await;
    operator.stop().await;
    uninstall(&ctx, &release).await;
}
