//! UserMfaPolicy end to end: a real kube-apiserver, the operator process and the emulator. The
//! three selectors (all, a name prefix, groups); a live exemption and one that lapses during the
//! test (enforced at that moment); a UserMfaSetting winning for its user; an Observe policy that
//! writes nothing and counts who fails; two overlapping policies where the older owns the users
//! and nothing flips; group membership changed in the emulator moving users in and out at the
//! next resync; the PolicyReport's summary equal to the status, with a `fail` naming a failing
//! user and a `skip` naming an exempt one; Restore on delete.

mod common;
mod harness;

use std::time::Duration;

use cloudsso_mfa_operator::api::{UserMfaPolicy, UserMfaSetting};
use cloudsso_mfa_operator::controller::reports;
use cloudsso_mfa_operator::emulator::{Seed, SharedState};
use common::*;
use harness::{SECRET, TestContext, WAIT, eventually};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

const ALICE: &str = "u-00q8wbq42wiltcrk0001";
const BOB: &str = "u-00q8wbq42wiltcrk0002";
const CAROL: &str = "u-00q8wbq42wiltcrk0003";
const BUILD: &str = "u-00q8wbq42wiltcrk0004";
const DEPLOY: &str = "u-00q8wbq42wiltcrk0005";
const GLASS: &str = "u-00q8wbq42wiltcrk0006";

/// alice has MFA and a device; bob, the two service users and break-glass have MFA off; carol
/// has MFA on but no device. Groups: eng {alice, bob}, ops {carol}.
fn policy_seed() -> Seed {
    let user = |id: &str, name: &str, setting: &str| json!({"userId": id, "userName": name, "userMfaAuthenticationSettings": setting});
    let mut alice = user(ALICE, "alice", "Enabled");
    alice["mfaDevices"] = json!([{"deviceId": "mfa-a1", "deviceName": "Alice-MFA1",
        "deviceType": "TOTP", "effectiveTime": "2026-10-29T09:14:06Z"}]);
    let seed = json!({
        "accessKeys": [{"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}],
        "directories": [{"directoryId": DIRECTORY, "mfaAuthenticationSettings": "Byuser",
            "users": [alice, user(BOB, "bob", "Disabled"), user(CAROL, "carol", "Enabled"),
                user(BUILD, "svc-build", "Disabled"), user(DEPLOY, "svc-deploy", "Disabled"),
                user(GLASS, "break-glass", "Disabled")],
            "groups": [{"groupId": "g-eng1", "groupName": "eng", "members": [ALICE, BOB]},
                       {"groupId": "g-ops1", "groupName": "ops", "members": [CAROL]}]}]});
    Seed::parse(&seed.to_string(), "policy e2e seed").expect("a valid seed")
}

fn policy(name: &str, url: &str, spec: Value) -> Value {
    let mut full = json!({"directoryId": DIRECTORY, "endpoint": url,
        "credentialsSecretRef": {"name": SECRET}});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    json!({"metadata": {"name": name}, "spec": full})
}

async fn setting_of(url: &str, user_id: &str) -> String {
    cloud_user_setting(&state(url).await, user_id)
}

/// Calls of UpdateUserMFAAuthenticationSettings so far.
async fn user_writes(url: &str) -> u64 {
    all_calls(url, "UpdateUserMFAAuthenticationSettings").await
}

/// The PolicyReport CRD, installed once for every test here (labelled as e2e_reports labels
/// the one it installs, so that test removes it again).
async fn ensure_report_crd(ctx: &TestContext) {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let yaml = include_str!("crds/policyreport.yaml");
    let mut crd: CustomResourceDefinition = serde_yaml::from_str(yaml).expect("the CRD parses");
    if crds
        .get_opt("policyreports.wgpolicyk8s.io")
        .await
        .unwrap()
        .is_none()
    {
        crd.metadata.labels =
            Some([("app.kubernetes.io/part-of".into(), "cloudsso-e2e".into())].into());
        crds.patch(
            "policyreports.wgpolicyk8s.io",
            &PatchParams::apply("cloudsso-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("the CRD installs");
    }
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &reports::api_resource());
    eventually(
        "PolicyReports served",
        Duration::from_secs(60),
        || async { api.list(&ListParams::default().limit(1)).await.is_ok() },
        |served| *served,
    )
    .await;
}

/// What every test here starts from: the PolicyReport CRD, an emulator with `policy_seed`, the
/// keys' Secret and an operator with a 3 s resync.
async fn world(ctx: &TestContext) -> (String, SharedState, harness::Operator) {
    ensure_report_crd(ctx).await;
    let (url, emulator) = start_emulator_with(policy_seed()).await;
    ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
        .await;
    let operator = ctx.start_operator("3s", &[]).await;
    (url, emulator, operator)
}

/// The policy's first PolicyReport, once it exists.
async fn report(ctx: &TestContext, name: &str) -> Value {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctx.namespace, &reports::api_resource());
    let object = eventually(
        &format!("PolicyReport {name}"),
        WAIT,
        || async { api.get_opt(name).await.unwrap() },
        Option::is_some,
    )
    .await
    .unwrap();
    serde_json::to_value(object).unwrap()
}

/// The results naming `user` (by the userName property).
fn results_for<'a>(report: &'a Value, user: &str) -> Vec<&'a Value> {
    report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["properties"]["userName"] == user)
        .collect()
}

async fn policy_status(ctx: &TestContext, name: &str) -> Value {
    let object = ctx.get::<UserMfaPolicy>(name).await;
    serde_json::to_value(object.and_then(|p| p.status)).unwrap()
}

/// Waits until the policy's status satisfies `check`.
async fn status_until(
    ctx: &TestContext,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, WAIT, || policy_status(ctx, name), |s| check(s)).await
}

fn count(status: &Value, field: &str) -> u64 {
    status[field].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread")]
async fn all_users_with_exemptions_a_report_and_restore_on_delete() {
    harness::with_namespace("policy-all", |ctx| async move {
        let (url, _emulator, operator) = world(&ctx).await;
        let lapses = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(20);
        ctx.apply::<UserMfaPolicy>(policy("everyone", &url, json!({
            "users": {"all": true}, "userMfaAuthenticationSettings": "Enabled",
            "deletionPolicy": "Restore",
            "exemptions": [
                {"userName": "break-glass", "reason": "emergency access", "expires": "2099-01-01T00:00:00Z"},
                {"userId": DEPLOY, "reason": "migrating", "expires": lapses.to_string()}]}))).await;
        let status = status_until(&ctx, "everyone", "the first pass", |s| s["matchedUsers"] == 6).await;
        // alice complies; bob and svc-build are written but have no device; carol has none either.
        assert_eq!(count(&status, "exemptUsers"), 2, "{status:#}");
        assert_eq!(count(&status, "compliantUsers"), 1, "{status:#}");
        assert_eq!(count(&status, "nonCompliantUsers"), 3, "{status:#}");
        assert_eq!(setting_of(&url, BOB).await, "Enabled");
        assert_eq!(setting_of(&url, BUILD).await, "Enabled");
        assert_eq!(setting_of(&url, GLASS).await, "Disabled", "exempt: not written");
        assert_eq!(setting_of(&url, DEPLOY).await, "Disabled", "exempt until it lapses");
        let ready = harness::ready(&ctx.get::<UserMfaPolicy>("everyone").await.unwrap().status).unwrap();
        assert_eq!((ready.0.as_str(), ready.1.as_str()), ("False", "UsersNonCompliant"), "{ready:?}");
        assert!(ready.2.contains("carol (no MFA device)"), "{ready:?}");
        let restore = &status["restoreTo"]["disabled"];
        assert!(restore.as_array().unwrap().contains(&json!(BOB)), "{status:#}");

        // The report: the summary equals the status; a fail names carol, a skip names break-glass.
        let polr = report(&ctx, "everyone").await;
        assert_eq!(polr["summary"]["fail"], status["nonCompliantUsers"], "{polr:#}");
        assert_eq!(polr["summary"]["skip"], status["exemptUsers"], "{polr:#}");
        assert_eq!(
            polr["summary"]["pass"].as_u64().unwrap() + polr["summary"]["warn"].as_u64().unwrap(),
            count(&status, "compliantUsers")
        );
        let carol = results_for(&polr, "carol");
        assert_eq!(carol.len(), 1);
        assert_eq!(carol[0]["result"], "fail");
        assert_eq!(carol[0]["rule"], "bound-device");
        let glass = results_for(&polr, "break-glass");
        assert_eq!(glass[0]["result"], "skip");
        assert_eq!(glass[0]["properties"]["reason"], "emergency access");
        assert_eq!(polr["metadata"]["labels"]["app.kubernetes.io/managed-by"], "cloudsso-mfa-operator");
        assert_eq!(polr["metadata"]["ownerReferences"][0]["kind"], "UserMfaPolicy");

        // The exemption of svc-deploy lapses: it is enforced at that moment, not a resync later.
        eventually("svc-deploy enforced once its exemption lapsed", WAIT, || setting_of(&url, DEPLOY), |s| s == "Enabled").await;
        let status = status_until(&ctx, "everyone", "one exempt user left", |s| s["exemptUsers"] == 1).await;
        assert_eq!(count(&status, "nonCompliantUsers"), 4);

        // Restore on delete: every user it changed goes back; break-glass was never touched.
        ctx.api::<UserMfaPolicy>().delete("everyone", &DeleteParams::default()).await.unwrap();
        ctx.gone::<UserMfaPolicy>("everyone").await;
        for user in [BOB, BUILD, DEPLOY, GLASS] {
            assert_eq!(setting_of(&url, user).await, "Disabled", "{user} restored\n{}", operator.log_tail());
        }
        assert_eq!(setting_of(&url, ALICE).await, "Enabled", "never changed");
        let events = ctx.events_for("everyone").await;
        assert!(events.iter().any(|(reason, _)| reason == "Restored"), "{events:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_observe_policy_by_prefix_writes_nothing_and_counts_who_fails() {
    harness::with_namespace("policy-observe", |ctx| async move {
        let (url, _emulator, _operator) = world(&ctx).await;
        ctx.apply::<UserMfaPolicy>(policy(
            "services",
            &url,
            json!({
            "users": {"userNamePrefix": "SVC-"}, "userMfaAuthenticationSettings": "Enabled",
            "managementPolicy": "Observe"}),
        ))
        .await;
        let status = status_until(&ctx, "services", "the prefix selected", |s| {
            s["matchedUsers"] == 2
        })
        .await;
        assert_eq!(count(&status, "nonCompliantUsers"), 2, "{status:#}");
        assert_eq!(count(&status, "compliantUsers"), 0);
        let polr = report(&ctx, "services").await;
        assert_eq!(results_for(&polr, "svc-build")[0]["result"], "fail");
        assert_eq!(
            results_for(&polr, "svc-build")[0]["rule"],
            "user-mfa-setting"
        );
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(user_writes(&url).await, 0, "Observe never writes");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_policy_follows_membership_and_yields_to_a_user_setting() {
    harness::with_namespace("policy-group", |ctx| async move {
        let (url, _emulator, operator) = world(&ctx).await;
        // bob's own UserMfaSetting (Disabled) wins over the group's policy (Enabled).
        ctx.apply::<UserMfaSetting>(harness::user_setting("bob", &url, "bob", "Disabled"))
            .await;
        let _: UserMfaSetting = ctx.wait_ready("bob", Some(&operator)).await;
        ctx.apply::<UserMfaPolicy>(policy(
            "eng",
            &url,
            json!({
            "users": {"groupNames": ["eng"]}, "userMfaAuthenticationSettings": "Enabled",
            "requireBoundDevice": false}),
        ))
        .await;
        let status = status_until(&ctx, "eng", "eng selected", |s| s["matchedUsers"] == 2).await;
        assert_eq!(count(&status, "usersWithOwnSetting"), 1, "{status:#}");
        assert_eq!(count(&status, "compliantUsers"), 1, "{status:#}");
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(
            setting_of(&url, BOB).await,
            "Disabled",
            "the UserMfaSetting wins"
        );

        // svc-build joins eng in the console and alice leaves: at the next resync svc-build is
        // enforced and alice is neither counted nor repaired.
        change_state(&url, |s| {
            s["directories"][0]["groups"][0]["members"] = json!([BOB, BUILD]);
            s["directories"][0]["users"][0]["userMfaAuthenticationSettings"] = json!("Disabled");
        })
        .await;
        eventually(
            "svc-build enforced",
            WAIT,
            || setting_of(&url, BUILD),
            |s| s == "Enabled",
        )
        .await;
        let status = status_until(&ctx, "eng", "membership followed", |s| {
            s["matchedUsers"] == 2 && s["compliantUsers"] == 1 && s["nonCompliantUsers"] == 0
        })
        .await;
        assert_eq!(count(&status, "usersWithOwnSetting"), 1, "{status:#}");
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(
            setting_of(&url, ALICE).await,
            "Disabled",
            "alice left eng: not the policy's"
        );
        // Someone turns svc-build's MFA off again: repaired, and the Event names the user.
        change_state(&url, |s| {
            s["directories"][0]["users"][3]["userMfaAuthenticationSettings"] = json!("Disabled")
        })
        .await;
        eventually(
            "svc-build set back to Enabled",
            WAIT,
            || setting_of(&url, BUILD),
            |s| s == "Enabled",
        )
        .await;
        let events = eventually(
            "a DriftRepaired Event",
            WAIT,
            || ctx.events_for("eng"),
            |events| {
                events
                    .iter()
                    .any(|(reason, note)| reason == "DriftRepaired" && note.contains("svc-build"))
            },
        )
        .await;
        assert!(!events.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_overlapping_policies_the_older_owns_and_nothing_flips() {
    harness::with_namespace("policy-overlap", |ctx| async move {
        let (url, _emulator, _operator) = world(&ctx).await;
        ctx.apply::<UserMfaPolicy>(policy(
            "older",
            &url,
            json!({
            "users": {"all": true}, "userMfaAuthenticationSettings": "Enabled",
            "requireBoundDevice": false}),
        ))
        .await;
        status_until(&ctx, "older", "older converged", |s| {
            s["compliantUsers"] == 6
        })
        .await;
        // Creation times have a resolution of a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        ctx.apply::<UserMfaPolicy>(policy(
            "younger",
            &url,
            json!({
            "users": {"groupNames": ["eng", "ops"]}, "userMfaAuthenticationSettings": "Disabled"}),
        ))
        .await;
        let status = status_until(&ctx, "younger", "younger yields", |s| {
            s["matchedUsers"] == 3
        })
        .await;
        assert_eq!(count(&status, "conflicts"), 3, "{status:#}");
        assert_eq!(
            status["conflictingPolicies"],
            json!([format!("{}/older", ctx.namespace)])
        );
        assert_eq!(
            count(&status, "compliantUsers") + count(&status, "nonCompliantUsers"),
            0
        );
        let writes = user_writes(&url).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            user_writes(&url).await,
            writes,
            "three resyncs later: nothing flipped"
        );
        for user in [ALICE, BOB, CAROL] {
            assert_eq!(setting_of(&url, user).await, "Enabled");
        }
        // The older goes: the younger owns its users at once.
        ctx.api::<UserMfaPolicy>()
            .delete("older", &DeleteParams::default())
            .await
            .unwrap();
        eventually(
            "bob Disabled by the younger",
            WAIT,
            || setting_of(&url, BOB),
            |s| s == "Disabled",
        )
        .await;
        status_until(&ctx, "younger", "no conflicts left", |s| {
            s["conflicts"] == 0
        })
        .await;
    })
    .await;
}
