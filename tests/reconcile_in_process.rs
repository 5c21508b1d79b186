//! The reconcile of each kind, in process: a real pass (tenancy, claims, the user view, the
//! name resolver, the limiter, status and Events) against the in-process emulator, with the
//! Kubernetes API faked in memory (tests/fakekube). Seconds, not the minutes of the e2e suite.

mod common;
mod fakekube;

use std::sync::Arc;

use cloudsso_mfa_operator::api::{DirectoryMfaPolicy, RamUserMfaStatus, UserMfaSetting};
use cloudsso_mfa_operator::controller::context::Context;
use cloudsso_mfa_operator::controller::instrument;
use cloudsso_mfa_operator::controller::keys::FINALIZER;
use cloudsso_mfa_operator::controller::reconciler::{reconcile, reconcile_guarded};
use common::*;
use fakekube::{context, object, stored};
use kube::core::DeserializeGuard;
use serde_json::{Value, json};

const BOB: &str = "u-00q8wbq42wiltcrk0002";
const CREATED: &str = "2026-12-01T00:00:00Z";

fn user_spec(url: &str, by: Value) -> Value {
    let mut spec = json!({"directoryId": DIRECTORY, "userMfaAuthenticationSettings": "Enabled",
        "endpoint": url, "credentialsSecretRef": {"name": "keys"}, "deletionPolicy": "Restore"});
    spec.as_object_mut()
        .unwrap()
        .extend(by.as_object().unwrap().clone());
    spec
}

/// Bob's UserMfaSetting (by userId, at `url`) on a fresh fake API holding the namespace's keys:
/// the context, the fake API, the object and its path.
fn bob_by_id(url: &str) -> (Arc<Context>, fakekube::Shared, UserMfaSetting, String) {
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let spec = user_spec(url, json!({"userId": BOB}));
    let (user, path) = object::<UserMfaSetting>(&server, "usermfasettings", "bob", CREATED, spec);
    (context(client), server, user, path)
}

#[tokio::test]
async fn a_new_user_setting_converges_and_a_current_one_costs_no_call() {
    let (url, _state) = start_emulator().await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let ctx = context(client);
    let spec = user_spec(&url, json!({"userName": "bob"}));
    let (user, path) = object::<UserMfaSetting>(&server, "usermfasettings", "bob", CREATED, spec);
    reconcile(Arc::new(user), ctx.clone())
        .await
        .expect("the pass succeeds");
    assert_eq!(cloud_user_setting(&state(&url).await, BOB), "Enabled");
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(status["userId"], BOB);
    assert_eq!(
        status["observed"]["userMfaAuthenticationSettings"],
        "Enabled"
    );
    assert_eq!(
        status["restoreTo"]["userMfaAuthenticationSettings"],
        "Disabled"
    );
    assert_eq!(status["conditions"][0]["status"], "True", "{status}");
    assert!(
        server
            .lock()
            .unwrap()
            .events
            .contains(&"Updated".to_string())
    );
    // The status is current: a pass (a restart's first) returns at once, with no call at all.
    let before = every_call(&url).await;
    let action = reconcile(
        Arc::new(stored::<UserMfaSetting>(&server, &path)),
        ctx.clone(),
    )
    .await
    .unwrap();
    assert_eq!(every_call(&url).await, before);
    assert!(
        format!("{action:?}").contains("requeue_after: Some"),
        "{action:?}"
    );
}

#[tokio::test]
async fn a_due_resync_waits_while_a_new_resource_waits_for_its_first_pass() {
    let (url, _state) = start_emulator().await;
    let (ctx, server, user, path) = bob_by_id(&url);
    reconcile(Arc::new(user), ctx.clone()).await.unwrap();
    // Its last sync an hour ago: a resync is due.
    let mut due: UserMfaSetting = stored(&server, &path);
    let status = due.status.as_mut().unwrap();
    status.common.last_sync_time = Some("2000-01-01T00:00:00Z".into());
    let writes = || server.lock().unwrap().statuses.len();
    let (calls, statuses) = (every_call(&url).await, writes());
    let first = ctx.passes.first_pass("team/new").expect("counted");
    let resync = reconcile(Arc::new(due), ctx.clone());
    tokio::pin!(resync);
    let waited = tokio::time::timeout(std::time::Duration::from_millis(500), &mut resync).await;
    assert!(waited.is_err(), "the resync ran beside a first pass");
    assert_eq!(every_call(&url).await, calls, "a call meanwhile");
    assert_eq!(writes(), statuses, "a status written meanwhile");
    drop(first);
    resync
        .await
        .expect("the resync runs once no first pass waits");
    assert_eq!(writes(), statuses + 1, "its new lastSyncTime");
}

#[tokio::test]
async fn a_pass_waiting_for_admission_holds_a_small_future() {
    // A bulk apply of 10,000 starts 10,000 reconciles at once, and each waits for admission:
    // what each holds meanwhile is its boxed future (no span, no copy of the object, no pass).
    let (ctx, _server, user, _) = bob_by_id("http://127.0.0.1:9");
    let mut measured = instrument::measured(reconcile_guarded::<UserMfaSetting>);
    let waiting = measured(Arc::new(DeserializeGuard(Ok(user))), ctx);
    let size = std::mem::size_of_val(&*waiting);
    // 688 bytes in two boxes and a span before; 1,216 with a future made before it was awaited.
    assert!(size <= 512, "a waiting reconcile holds {size} bytes");
}

#[tokio::test]
async fn the_pass_that_adds_the_finalizer_goes_on_to_converge() {
    let (url, _state) = start_emulator().await;
    let (ctx, server, mut user, path) = bob_by_id(&url);
    user.metadata.finalizers = None;
    server.lock().unwrap().objects.get_mut(&path).unwrap()["metadata"]["finalizers"] = json!(null);
    reconcile(Arc::new(user), ctx)
        .await
        .expect("the pass succeeds");
    let stored: UserMfaSetting = stored(&server, &path);
    assert_eq!(
        stored.metadata.finalizers,
        Some(vec![FINALIZER.to_string()])
    );
    assert_eq!(
        cloud_user_setting(&state(&url).await, BOB),
        "Enabled",
        "in the same pass"
    );
}

#[tokio::test]
async fn restore_to_survives_a_write_that_fails_right_after_it_was_recorded() {
    let (url, _state) = start_emulator().await;
    set_faults(
        &url,
        json!({"failActions": ["UpdateUserMFAAuthenticationSettings"]}),
    )
    .await;
    let (ctx, server, user, path) = bob_by_id(&url);
    let error = reconcile(Arc::new(user), ctx).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(
        status["restoreTo"]["userMfaAuthenticationSettings"], "Disabled",
        "{status}"
    );
    assert_eq!(status["conditions"][0]["status"], "False");
}

#[tokio::test]
async fn a_directory_policy_enforces_and_an_observe_one_never_writes() {
    let (url, _state) = start_emulator().await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let ctx = context(client);
    let spec = |mode: &str| {
        json!({"directoryId": DIRECTORY, "mfaAuthenticationSettings": "Enabled",
        "endpoint": url, "credentialsSecretRef": {"name": "keys"}, "managementPolicy": mode})
    };
    let (observe, path) = object::<DirectoryMfaPolicy>(
        &server,
        "directorymfapolicies",
        "watch",
        CREATED,
        spec("Observe"),
    );
    reconcile(Arc::new(observe), ctx.clone()).await.unwrap();
    assert_eq!(write_calls(&url).await, 0, "Observe writes nothing");
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(status["observed"]["mfaAuthenticationSettings"], "Byuser");
    assert!(
        status["conditions"].to_string().contains("Drifted"),
        "{status}"
    );
    let (enforce, _) = object::<DirectoryMfaPolicy>(
        &server,
        "directorymfapolicies",
        "enforce",
        CREATED,
        spec("Enforce"),
    );
    // Older than the Observe one (which owns nothing, but claims): this one owns the directory.
    let mut enforce = enforce;
    enforce.metadata.creation_timestamp = observe_older();
    reconcile(Arc::new(enforce), ctx).await.unwrap();
    assert_eq!(directory_setting(&state(&url).await), "Enabled");
}

/// A creation time before the other policies' (so the Enforce one owns the directory).
fn observe_older() -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2025-01-01T00:00:00Z".parse().unwrap(),
    ))
}

#[tokio::test]
async fn a_ram_user_is_reported_and_never_written() {
    let (url, _state) = start_emulator().await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let ctx = context(client);
    let spec = json!({"userPrincipalName": "bob@example.onaliyun.com", "endpoint": url,
        "credentialsSecretRef": {"name": "keys"}});
    let (ram, path) =
        object::<RamUserMfaStatus>(&server, "ramusermfastatuses", "bob", CREATED, spec);
    reconcile(Arc::new(ram), ctx).await.unwrap();
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(
        status["device"]["serialNumber"], "acs:ram::1234:mfa/bob",
        "{status}"
    );
    assert_eq!(write_calls(&url).await, 0);
}
