//! One object the operator cannot read must not stall the others. The CRD schema is generated
//! from the same types, so to store such an object this test loosens the installed schema (the
//! way an older or hand-edited CRD would be), creates it, and puts the schema back. A test binary
//! of its own, since the CRD is cluster-wide; the harness re-installs the CRDs from the Rust types
//! at the start of every test binary, so a failure here leaves nothing behind for the others.

mod common;
mod harness;

use std::time::Duration;

use cloudsso_mfa_operator::api::UserMfaSetting;
use common::*;
use harness::{SECRET, condition, eventually};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

const CRD: &str = "usermfasettings.cloudsso.mfa-operator.dev";
const ENUM: &str = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/userMfaAuthenticationSettings/enum";

#[tokio::test]
async fn an_unreadable_object_gets_an_event_and_does_not_stall_the_others() {
    harness::with_namespace("invalid-object", |ctx| async move {
        let (url, _state) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        let spec = |user: &str, setting: &str| {
            json!({"directoryId": DIRECTORY, "userName": user, "userMfaAuthenticationSettings": setting,
                   "endpoint": url, "credentialsSecretRef": {"name": SECRET}})
        };

        // Loosen the schema, store an object whose setting no release of the operator knows.
        let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
        let original = crds.get(CRD).await.expect("the CRD is installed");
        let allowed = serde_json::to_value(&original).unwrap()
            ["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["userMfaAuthenticationSettings"]["enum"]
            .clone();
        assert!(allowed.is_array(), "the schema lists the allowed settings: {allowed}");
        crds.patch(CRD, &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(json!([
            {"op": "remove", "path": ENUM}
        ])).unwrap()))
        .await
        .expect("loosen the schema");
        let gvk = GroupVersionKind::gvk("cloudsso.mfa-operator.dev", "v1alpha1", "UserMfaSetting");
        let dynamic: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &ApiResource::from_gvk(&gvk));
        let stored = eventually("the loosened schema to be served", Duration::from_secs(20), || async {
            let object: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "UserMfaSetting",
                "metadata": {"name": "unreadable"}, "spec": spec("bob", "Sometimes")})).unwrap();
            dynamic.create(&PostParams::default(), &object).await.is_ok()
                || dynamic.get_opt("unreadable").await.ok().flatten().is_some()
        }, |stored| *stored).await;
        assert!(stored);
        crds.patch(CRD, &PatchParams::default(), &Patch::<()>::Json(serde_json::from_value(json!([
            {"op": "add", "path": ENUM, "value": allowed}
        ])).unwrap()))
        .await
        .expect("restore the schema");

        // The operator starts with the unreadable object already there, then gets a good one.
        let operator = ctx.start_operator("30s", &[]).await;
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "readable"}, "spec": spec("alice", "Enabled")})).await;
        let users = ctx.api::<UserMfaSetting>();
        let ready = tokio::time::timeout(Duration::from_secs(40), async {
            loop {
                let object = users.get_opt("readable").await.ok().flatten();
                if object.is_some_and(|o| condition(&o.status, "Ready").is_some_and(|(s, _, _)| s == "True")) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        assert!(ready.is_ok(), "the readable object was stalled by the unreadable one\n{}", operator.log_tail());
        let events = eventually("an InvalidObject Event on the unreadable object", Duration::from_secs(40),
            || ctx.events_for("unreadable"),
            |events| events.iter().any(|(reason, _)| reason == "InvalidObject")).await;
        let (_, note) = events.iter().find(|(reason, _)| reason == "InvalidObject").unwrap();
        assert!(note.contains("Sometimes"), "the note names what is wrong: {note}");
        let metrics = operator.scrape().await;
        assert!(
            metrics.value("cloudsso_mfa_operator_reconcile_errors_total", &[("kind", "UserMfaSetting"), ("reason", "InvalidObject")]) >= Some(1.0),
            "{}", metrics.0
        );
        // It is left alone: no finalizer added, nothing written to its status.
        let raw = dynamic.get("unreadable").await.unwrap();
        assert!(raw.metadata.finalizers.unwrap_or_default().is_empty());
        assert!(raw.data.get("status").is_none_or(|s| s.is_null()));
        operator.stop().await;
    })
    .await;
}
