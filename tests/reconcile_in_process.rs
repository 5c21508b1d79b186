//! The reconcile of each kind, in process: a real pass (tenancy, claims, the user view, the
//! name resolver, the limiter, status and Events) against the in-process emulator, with the
//! Kubernetes API faked in memory (tests/fakekube). Seconds, not the minutes of the e2e suite.

mod common;
mod fakekube;

use std::sync::Arc;

use cloudsso_mfa_operator::api::{
    DeletionPolicy, DirectoryMfaPolicy, RamUserMfaStatus, UserMfaAuthenticationSettings,
    UserMfaSetting,
};
use cloudsso_mfa_operator::cloud::Urgency;
use cloudsso_mfa_operator::controller::admission::{Place, Wake};
use cloudsso_mfa_operator::controller::context::Context;
use cloudsso_mfa_operator::controller::keys::{FINALIZER, fingerprint};
use cloudsso_mfa_operator::controller::reconciler::{reconcile, reconcile_guarded};
use common::*;
use fakekube::{context, object, stored};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
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
async fn a_due_resync_waits_in_line_while_a_first_pass_runs_and_comes_back_after_it() {
    let (url, _state) = start_emulator().await;
    let (ctx, server, user, path) = bob_by_id(&url);
    reconcile(Arc::new(user), ctx.clone()).await.unwrap();
    // Its last sync an hour ago: a resync is due.
    let mut due: UserMfaSetting = stored(&server, &path);
    let status = due.status.as_mut().unwrap();
    status.common.last_sync_time = Some("2000-01-01T00:00:00Z".into());
    let writes = || server.lock().unwrap().statuses.len();
    let (calls, statuses) = (every_call(&url).await, writes());
    // What the controller's queue would get back.
    let (send, mut back) = futures::channel::mpsc::unbounded::<String>();
    let wake: Wake = Arc::new(move |key: &str| send.unbounded_send(key.to_string()).is_ok());
    let hour = std::time::Duration::from_secs(3600);
    let first = ctx
        .passes
        .admission
        .arrive(fingerprint("UserMfaSetting/team/new"))
        .enter(Place::of(Urgency::Initial), "team/new", hour, &wake)
        .expect("a slot for the first pass");
    let due = Arc::new(DeserializeGuard(Ok(due)));
    // The resync returns at once: no future waits in the controller, no call, no status.
    let action = reconcile_guarded(due.clone(), ctx.clone(), wake.clone())
        .await
        .unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(every_call(&url).await, calls, "a call meanwhile");
    assert_eq!(writes(), statuses, "a status written meanwhile");
    assert!(
        back.try_recv().is_err(),
        "sent back while the first pass ran"
    );
    drop(first);
    assert_eq!(back.try_recv().unwrap(), "team/bob");
    reconcile_guarded(due, ctx.clone(), wake)
        .await
        .expect("the resync runs in the slot kept for it");
    assert_eq!(writes(), statuses + 1, "its new lastSyncTime");
    assert_eq!(ctx.passes.admission.waiting(), [0, 0, 0]);
}

#[tokio::test]
async fn passes_past_the_slots_return_at_once_and_come_back_in_turn() {
    // A bulk apply starts a reconcile of every new object at once: past the slots, each takes a
    // line and returns (its controller holds nothing for it), and is sent back when a slot frees.
    let (url, _state) = start_emulator().await;
    let (ctx, server, _, _) = bob_by_id(&url);
    let (send, mut back) = futures::channel::mpsc::unbounded::<String>();
    let wake: Wake = Arc::new(move |key: &str| send.unbounded_send(key.to_string()).is_ok());
    let hour = std::time::Duration::from_secs(3600);
    let held: Vec<_> = (0..4)
        .map(|i| {
            let key = format!("team/held{i}");
            let hash = fingerprint(&format!("UserMfaSetting/{key}"));
            let arrival = ctx.passes.admission.arrive(hash);
            arrival
                .enter(Place::of(Urgency::Initial), &key, hour, &wake)
                .expect("a slot")
        })
        .collect();
    let spec = user_spec(&url, json!({"userId": BOB}));
    let (user, path) = object::<UserMfaSetting>(&server, "usermfasettings", "new", CREATED, spec);
    let user = Arc::new(DeserializeGuard(Ok(user)));
    let action = reconcile_guarded(user.clone(), ctx.clone(), wake.clone());
    assert_eq!(action.await.unwrap(), Action::await_change());
    assert_eq!(ctx.passes.admission.waiting()[Urgency::Initial as usize], 1);
    assert!(server.lock().unwrap().last_status(&path).is_none());
    drop(held);
    assert_eq!(back.try_recv().unwrap(), "team/new");
    reconcile_guarded(user, ctx.clone(), wake)
        .await
        .expect("the pass runs once sent back");
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(status["userId"], BOB, "{status}");
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

/// Bob's setting declared as the cloud has it (`Disabled`), synced once (no write, so no
/// `restoreTo`), then its spec changed to `Enabled`: the changed object (generation 2).
async fn bob_in_sync_then_changed(
    url: &str,
) -> (Arc<Context>, fakekube::Shared, UserMfaSetting, String) {
    let (ctx, server, mut user, path) = bob_by_id(url);
    user.spec.user_mfa_authentication_settings = UserMfaAuthenticationSettings::Disabled;
    reconcile(Arc::new(user), ctx.clone()).await.unwrap();
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert!(status.get("restoreTo").is_none(), "{status}");
    let mut changed: UserMfaSetting = stored(&server, &path);
    changed.spec.user_mfa_authentication_settings = UserMfaAuthenticationSettings::Enabled;
    changed.metadata.generation = Some(2);
    (ctx, server, changed, path)
}

#[tokio::test]
async fn a_first_write_records_restore_to_while_it_reads() {
    let (url, _state) = start_emulator().await;
    let (ctx, server, changed, path) = bob_in_sync_then_changed(&url).await;
    let writes = server.lock().unwrap().statuses.len();
    // Every cloud answer 1.5 s late: restoreTo is in status while the read still waits.
    set_faults(&url, json!({"latencyMs": 1500})).await;
    let pass = tokio::spawn(reconcile(Arc::new(changed), ctx));
    let recorded = || {
        let status = server.lock().unwrap().last_status(&path).unwrap();
        status["restoreTo"]["userMfaAuthenticationSettings"] == "Disabled"
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while !recorded() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(recorded(), "restoreTo not written during the read");
    assert!(!pass.is_finished());
    assert_eq!(
        calls(&url, "UpdateUserMFAAuthenticationSettings", "ok").await,
        0
    );
    pass.await.unwrap().expect("the pass succeeds");
    assert_eq!(cloud_user_setting(&state(&url).await, BOB), "Enabled");
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(
        status["restoreTo"]["userMfaAuthenticationSettings"],
        "Disabled"
    );
    // The early status and the pass's own: no third write to record it again.
    assert_eq!(server.lock().unwrap().statuses.len(), writes + 2);
}

#[tokio::test]
async fn an_early_restore_to_the_read_does_not_confirm_is_not_kept() {
    let (url, _state) = start_emulator().await;
    // Someone set the cloud to the new spec meanwhile: no write, so no restoreTo.
    let (ctx, server, changed, path) = bob_in_sync_then_changed(&url).await;
    change_state(&url, |state| {
        for user in state["directories"][0]["users"].as_array_mut().unwrap() {
            if user["userId"] == BOB {
                user["userMfaAuthenticationSettings"] = json!("Enabled");
            }
        }
    })
    .await;
    reconcile(Arc::new(changed.clone()), ctx.clone())
        .await
        .unwrap();
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert!(status.get("restoreTo").is_none(), "{status}");
    assert_eq!(write_calls(&url).await, 0);
    // A change that writes nothing (the deletion policy only): no early restoreTo at all.
    let (url, _state) = start_emulator().await;
    let (ctx, server, mut changed, path) = bob_in_sync_then_changed(&url).await;
    changed.spec.user_mfa_authentication_settings = UserMfaAuthenticationSettings::Disabled;
    changed.spec.deletion_policy = DeletionPolicy::Orphan;
    let writes = server.lock().unwrap().statuses.len();
    reconcile(Arc::new(changed), ctx).await.unwrap();
    assert_eq!(
        server.lock().unwrap().statuses.len(),
        writes + 1,
        "only the pass's own status"
    );
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert!(status.get("restoreTo").is_none(), "{status}");
    // A read that fails: the failure status holds no restoreTo it never confirmed.
    let (url, _state) = start_emulator().await;
    let (ctx, server, changed, path) = bob_in_sync_then_changed(&url).await;
    set_faults(
        &url,
        json!({"failActions": ["GetUserMFAAuthenticationSettings"]}),
    )
    .await;
    reconcile(Arc::new(changed), ctx).await.unwrap_err();
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert!(status.get("restoreTo").is_none(), "{status}");
    assert_eq!(status["conditions"][0]["status"], "False", "{status}");
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
