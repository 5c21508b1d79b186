//! PolicyReports through the real API server (src/controller/reports.rs): nothing written and no
//! error while the wgpolicyk8s.io CRD is absent; once tests/crds/policyreport.yaml is installed, a
//! big policy's results split over reports the schema accepts, with summaries that add up, the
//! same content again writes nothing, and fewer results delete the reports no longer needed. A
//! test binary of its own, since it installs and removes a cluster-wide CRD; a PolicyReport CRD it
//! did not install (Kyverno's, in a cluster KUBECONFIG points at) it never removes.

mod common;
mod harness;

use std::time::Duration;

use cloudsso_mfa_operator::controller::reports::{
    self, MANAGED_BY_LABEL, Outcome, Owner, POLICY_LABEL, PolicyResult, Published, Severity,
    Summary,
};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const CRD: &str = "policyreports.wgpolicyk8s.io";
/// Marks the CRD as this test's, so it removes only its own.
const INSTALLED_BY: (&str, &str) = ("app.kubernetes.io/part-of", "cloudsso-e2e");

fn result(index: usize) -> PolicyResult {
    let outcomes = [Outcome::Fail, Outcome::Pass, Outcome::Warn];
    PolicyResult {
        policy: "all-users".into(),
        rule: "bound-device".into(),
        result: outcomes[index % outcomes.len()],
        severity: Some(Severity::Medium),
        message: format!("user{index} has no bound MFA device {}", "-".repeat(300)),
        properties: [("userId".to_string(), format!("u-{index:06}"))].into(),
        timestamp: jiff::Timestamp::from_second(1_764_000_000 + index as i64).expect("in range"),
    }
}

/// Whether the API server serves PolicyReports at all.
async fn served(client: &kube::Client) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &reports::api_resource());
    api.list(&ListParams::default().limit(1)).await.is_ok()
}

/// Removes a CRD an earlier run of this test left, and says whether another one is there.
async fn foreign_crd(crds: &Api<CustomResourceDefinition>, client: &kube::Client) -> bool {
    let Ok(Some(crd)) = crds.get_opt(CRD).await else {
        return false;
    };
    let labels = crd.metadata.labels.unwrap_or_default();
    if labels.get(INSTALLED_BY.0).map(String::as_str) != Some(INSTALLED_BY.1) {
        return true;
    }
    let _ = crds.delete(CRD, &DeleteParams::default()).await;
    harness::eventually(
        "the leftover CRD gone",
        Duration::from_secs(60),
        || served(client),
        |s| !s,
    )
    .await;
    false
}

async fn install_crd(crds: &Api<CustomResourceDefinition>, client: &kube::Client) {
    let yaml = include_str!("crds/policyreport.yaml");
    let mut crd: CustomResourceDefinition = serde_yaml::from_str(yaml).expect("the CRD parses");
    crd.metadata.labels = Some([(INSTALLED_BY.0.into(), INSTALLED_BY.1.into())].into());
    crds.patch(
        CRD,
        &PatchParams::apply("cloudsso-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the CRD installs");
    // Established comes first; the resource is served a moment later.
    harness::eventually(
        "PolicyReports served",
        Duration::from_secs(60),
        || served(client),
        |s| *s,
    )
    .await;
}

/// The owner's reports as the API server holds them, by name.
async fn stored(api: &Api<DynamicObject>, owner: &Owner) -> Vec<DynamicObject> {
    let selector = format!(
        "{MANAGED_BY_LABEL}=cloudsso-mfa-operator,{POLICY_LABEL}={}",
        owner.name
    );
    let mut items = api
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list")
        .items;
    // `name`, `name-2`, ... `name-10` in report order.
    items.sort_by_key(|report| {
        let name = report.metadata.name.clone().unwrap_or_default();
        name.rsplit_once('-')
            .and_then(|(_, n)| n.parse::<usize>().ok())
            .unwrap_or(1)
    });
    items
}

async fn owner_config_map(ctx: &harness::TestContext) -> Owner {
    let config_maps: Api<ConfigMap> = ctx.api();
    let object: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "all-users"}})).expect("a ConfigMap");
    let created = config_maps
        .create(&PostParams::default(), &object)
        .await
        .expect("create");
    Owner {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "all-users".into(),
        namespace: ctx.namespace.clone(),
        uid: created.metadata.uid.expect("a uid"),
    }
}

/// Checks the stored reports hold `results` in order, summaries adding up to `total`.
fn check_reports(
    reports: &[DynamicObject],
    owner: &Owner,
    results: &[PolicyResult],
    total: Summary,
) {
    let mut kept: Vec<PolicyResult> = Vec::new();
    let mut summed = Summary::default();
    for report in reports {
        let references = report.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(references.len(), 1);
        assert_eq!(
            (references[0].uid.as_str(), references[0].controller),
            (owner.uid.as_str(), Some(true))
        );
        let summary: Summary =
            serde_json::from_value(report.data["summary"].clone()).expect("summary");
        summed = Summary {
            pass: summed.pass + summary.pass,
            fail: summed.fail + summary.fail,
            warn: summed.warn + summary.warn,
            error: summed.error + summary.error,
            skip: summed.skip + summary.skip,
        };
        let size = serde_json::to_vec(&report.data).expect("JSON").len();
        assert!(size <= reports::MAX_REPORT_BYTES, "{size} bytes");
        kept.extend(
            serde_json::from_value::<Vec<PolicyResult>>(report.data["results"].clone())
                .expect("results"),
        );
    }
    assert_eq!(summed, total);
    assert!(
        kept == results,
        "the results read back differ from those written"
    );
}

#[tokio::test]
async fn reports_split_stay_current_and_shrink_and_a_missing_crd_is_no_error() {
    harness::with_namespace("reports", |ctx| async move {
        let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
        let foreign = foreign_crd(&crds, &ctx.client).await;
        let owner = owner_config_map(&ctx).await;
        let many: Vec<PolicyResult> = (0..10_000).map(result).collect();
        // The caller also counts passes it does not list.
        let mut total = Summary::of(&many);
        total.pass += 2_000;
        if !foreign {
            let absent = reports::publish(&ctx.client, &owner, total, many.clone()).await;
            assert_eq!(
                absent.expect("no error without the CRD"),
                Published::CrdAbsent
            );
            install_crd(&crds, &ctx.client).await;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &reports::api_resource());

        let written = reports::publish(&ctx.client, &owner, total, many.clone())
            .await
            .expect("publish");
        let Published::Written { reports: count } = written else {
            panic!("{written:?}")
        };
        assert!(count >= 4, "{count} reports");
        let first = stored(&api, &owner).await;
        assert_eq!(first.len(), count);
        check_reports(&first, &owner, &many, total);

        // The same content: nothing rewritten.
        reports::publish(&ctx.client, &owner, total, many.clone())
            .await
            .expect("publish again");
        let versions = |reports: &[DynamicObject]| -> Vec<Option<String>> {
            reports
                .iter()
                .map(|report| report.metadata.resource_version.clone())
                .collect()
        };
        assert_eq!(versions(&stored(&api, &owner).await), versions(&first));

        // Fewer results: one report left.
        let few: Vec<PolicyResult> = (0..3).map(result).collect();
        let shrunk = reports::publish(&ctx.client, &owner, Summary::of(&few), few.clone()).await;
        assert_eq!(
            shrunk.expect("publish fewer"),
            Published::Written { reports: 1 }
        );
        let left = stored(&api, &owner).await;
        assert_eq!(left.len(), 1);
        check_reports(&left, &owner, &few, Summary::of(&few));

        if !foreign {
            let _ = crds.delete(CRD, &DeleteParams::default()).await;
        }
    })
    .await;
}
