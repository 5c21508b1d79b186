//! The UserMfaPolicy reconcile in process: a real pass against the in-process emulator, with the
//! Kubernetes API faked in memory (tests/fakekube, which serves no PolicyReport type: the
//! policy says so in its status). Seconds, not the minutes of the e2e suite.

mod common;
mod fakekube;

use std::sync::Arc;
use std::time::Duration;

use cloudsso_mfa_operator::api::UserMfaPolicy;
use cloudsso_mfa_operator::controller::reconciler::reconcile;
use common::*;
use fakekube::{context, object, stored};
use serde_json::{Value, json};

const BOB: &str = "u-00q8wbq42wiltcrk0002";
const CREATED: &str = "2026-12-01T00:00:00Z";

fn policy_spec(url: &str, more: Value) -> Value {
    let mut spec = json!({"directoryId": DIRECTORY, "users": {"all": true},
        "userMfaAuthenticationSettings": "Enabled", "requireBoundDevice": false,
        "endpoint": url, "credentialsSecretRef": {"name": "keys"}});
    spec.as_object_mut()
        .unwrap()
        .extend(more.as_object().unwrap().clone());
    spec
}

#[tokio::test]
async fn a_policy_converges_in_one_pass_and_says_the_report_crd_is_missing() {
    let (url, _state) = start_emulator().await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let ctx = context(client);
    let spec = policy_spec(&url, json!({"deletionPolicy": "Restore"}));
    let (policy, path) = object::<UserMfaPolicy>(&server, "usermfapolicies", "all", CREATED, spec);
    reconcile(Arc::new(policy), ctx.clone())
        .await
        .expect("the pass succeeds");
    assert_eq!(cloud_user_setting(&state(&url).await, BOB), "Enabled");
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(
        (
            status["matchedUsers"].as_u64(),
            status["compliantUsers"].as_u64()
        ),
        (Some(3), Some(3)),
        "{status:#}"
    );
    assert_eq!(status["restoreTo"]["disabled"], json!([BOB]), "{status:#}");
    let message = status["report"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("PolicyReport CRD") && message.contains("not installed"),
        "{status:#}"
    );
    assert!(
        server
            .lock()
            .unwrap()
            .events
            .contains(&"Updated".to_string())
    );
    // This process has seen its selection: a pass on the current status makes no call.
    let before = every_call(&url).await;
    let action = reconcile(
        Arc::new(stored::<UserMfaPolicy>(&server, &path)),
        ctx.clone(),
    )
    .await
    .unwrap();
    assert_eq!(every_call(&url).await, before);
    assert!(
        format!("{action:?}").contains("requeue_after: Some"),
        "{action:?}"
    );
    // A restarted process has not: it passes again (and costs the reads the view no longer has).
    let restarted = context(fakekube::client_on(&server));
    reconcile(Arc::new(stored::<UserMfaPolicy>(&server, &path)), restarted)
        .await
        .unwrap();
    assert!(every_call(&url).await > before);
}

#[tokio::test]
async fn an_exemption_that_lapses_soon_requeues_the_policy_for_that_moment() {
    let (url, _state) = start_emulator().await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let ctx = context(client);
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5);
    let spec = policy_spec(
        &url,
        json!({"exemptions": [
        {"userName": "bob", "reason": "on leave", "expires": expires.to_string()}]}),
    );
    let (policy, path) = object::<UserMfaPolicy>(&server, "usermfapolicies", "soon", CREATED, spec);
    let action = reconcile(Arc::new(policy), ctx.clone()).await.unwrap();
    assert_eq!(
        cloud_user_setting(&state(&url).await, BOB),
        "Disabled",
        "exempt"
    );
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(status["exemptUsers"], 1, "{status:#}");
    assert_eq!(status["nextExemptionExpiry"], expires.to_string());
    // `Action`'s Debug is the one view of its delay: `Some(5.68s)`.
    let shown = format!("{action:?}");
    let seconds: f64 = shown
        .split("Some(")
        .nth(1)
        .and_then(|rest| rest.split("s)").next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(f64::MAX);
    assert!(
        seconds <= 6.0,
        "requeued for the lapse, not a resync later: {action:?}"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Lapsed: a current status does not stop the pass.
    reconcile(Arc::new(stored::<UserMfaPolicy>(&server, &path)), ctx)
        .await
        .unwrap();
    assert_eq!(cloud_user_setting(&state(&url).await, BOB), "Enabled");
    let status = server.lock().unwrap().last_status(&path).unwrap();
    assert_eq!(status["exemptUsers"], 0, "{status:#}");
}

#[tokio::test]
async fn a_missing_group_is_named_and_the_other_groups_are_enforced() {
    let (url, _state) = start_emulator_with(group_seed()).await;
    let (client, server) = fakekube::with_keys(ACCESS_KEY_ID, ACCESS_KEY_SECRET);
    let ctx = context(client);
    let spec = policy_spec(&url, json!({"users": {"groupNames": ["eng", "nope"]}}));
    let (policy, path) =
        object::<UserMfaPolicy>(&server, "usermfapolicies", "groups", CREATED, spec);
    reconcile(Arc::new(policy), ctx).await.unwrap();
    assert_eq!(
        cloud_user_setting(&state(&url).await, BOB),
        "Enabled",
        "eng is enforced"
    );
    let status = server.lock().unwrap().last_status(&path).unwrap();
    let ready = &status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["reason"], "GroupNotFound", "{status:#}");
    assert!(
        ready["message"].as_str().unwrap().contains("group 'nope'"),
        "{ready}"
    );
    assert_eq!(status["matchedUsers"], 1);
}

/// The common seed with a group eng = {bob}.
fn group_seed() -> cloudsso_mfa_operator::emulator::Seed {
    let mut seed: Value = serde_json::to_value(seed()).unwrap();
    seed["directories"][0]["groups"] =
        json!([{"groupId": "g-eng1", "groupName": "eng", "members": [BOB]}]);
    cloudsso_mfa_operator::emulator::Seed::parse(&seed.to_string(), "group seed").unwrap()
}
