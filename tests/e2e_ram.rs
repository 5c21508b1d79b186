//! The RAM kinds that write, end to end: a real kube-apiserver, the operator process and the
//! emulator. RamSecurityPreference enforced, repaired after a console change and restored on
//! delete; RamUserMfaSetting enforced, repaired, `Effective=False` under `mandatory`, `Conflict`
//! for a second resource of one user, restored on delete; Observe never writing; a user without
//! a console logon (`NoLoginProfile`).

mod common;
mod harness;

use cloudsso_mfa_operator::api::{RamSecurityPreference, RamUserMfaSetting};
use cloudsso_mfa_operator::emulator::Seed;
use common::*;
use harness::{SECRET, WAIT, condition, eventually, ready};
use kube::api::DeleteParams;
use serde_json::{Value, json};

const BOB: &str = "bob@example.onaliyun.com";
const CI: &str = "ci@example.onaliyun.com";

/// bob has a console logon without MFA required and a device; ci has no console logon; the
/// account lets each login profile decide.
fn ram_seed() -> Seed {
    let seed = json!({
        "accessKeys": [{"accessKeyId": ACCESS_KEY_ID, "accessKeySecret": ACCESS_KEY_SECRET}],
        "directories": [],
        "ramUsers": [
            {"userPrincipalName": BOB, "mfaDevice": {"serialNumber": "acs:ram::1234:mfa/bob", "type": "VMFA"},
             "loginProfile": {"mfaBindRequired": false, "passwordResetRequired": false}},
            {"userPrincipalName": CI}],
        "ramSecurityPreference": {"mfaOperationForLogin": "independent", "operationForRiskLogin": "autonomous",
            "enableSaveMfaTicket": false, "allowUserToManageMfaDevices": true}});
    Seed::parse(&seed.to_string(), "RAM e2e seed").expect("a valid seed")
}

fn resource(name: &str, url: &str, spec: Value) -> Value {
    let mut full = json!({"endpoint": url, "credentialsSecretRef": {"name": SECRET}});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    json!({"metadata": {"name": name}, "spec": full})
}

async fn preference(url: &str) -> Value {
    state(url).await["ramSecurityPreference"].clone()
}

async fn bob_required(url: &str) -> bool {
    state(url).await["ramUsers"][0]["loginProfile"]["mfaBindRequired"]
        .as_bool()
        .unwrap_or_default()
}

/// Every write call the emulator saw (`GET /_emulator/writes`).
async fn writes(url: &str) -> Vec<Value> {
    reqwest_get(&format!("{url}/_emulator/writes"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn preference_is_enforced_repaired_after_a_console_change_and_restored() {
    harness::with_namespace("ram-preference", |ctx| async move {
        let started = std::time::Instant::now();
        let (url, _emulator) = start_emulator_with(ram_seed()).await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        let operator = ctx.start_operator("3s", &[]).await;
        ctx.apply::<RamSecurityPreference>(resource(
            "account",
            &url,
            json!({
            "mfaOperationForLogin": "mandatory", "operationForRiskLogin": "enforceVerify",
            "deletionPolicy": "Restore"}),
        ))
        .await;
        let applied: RamSecurityPreference = ctx.wait_ready("account", Some(&operator)).await;
        let status = applied.status.clone().unwrap();
        let observed = status.observed.unwrap();
        assert_eq!(
            observed.mfa_operation_for_login.as_deref(),
            Some("mandatory")
        );
        assert_eq!(
            observed.operation_for_risk_login.as_deref(),
            Some("enforceVerify")
        );
        assert_eq!(
            status
                .restore_to
                .unwrap()
                .mfa_operation_for_login
                .as_deref(),
            Some("independent")
        );
        assert!(status.common.account_id.is_some());
        let cloud = preference(&url).await;
        assert_eq!(cloud["mfaOperationForLogin"], "mandatory");
        assert_eq!(
            cloud["allowUserToManageMfaDevices"], true,
            "not named: untouched"
        );
        // Only the named fields were sent.
        let sent = writes(&url).await;
        assert_eq!(sent.len(), 1, "{sent:?}");

        // Someone sets it back in the console: the next resync repairs it, and says so.
        change_state(&url, |s| {
            s["ramSecurityPreference"]["mfaOperationForLogin"] = json!("adaptive")
        })
        .await;
        eventually(
            "mandatory again",
            WAIT,
            || preference(&url),
            |p| p["mfaOperationForLogin"] == "mandatory",
        )
        .await;
        eventually(
            "a DriftRepaired Event",
            WAIT,
            || ctx.events_for("account"),
            |events| {
                events.iter().any(|(reason, note)| {
                    reason == "DriftRepaired" && note.contains("from adaptive to mandatory")
                })
            },
        )
        .await;

        // Restore on delete writes back only the named fields.
        change_state(&url, |s| {
            s["ramSecurityPreference"]["allowUserToManageMfaDevices"] = json!(false)
        })
        .await;
        ctx.api::<RamSecurityPreference>()
            .delete("account", &DeleteParams::default())
            .await
            .unwrap();
        ctx.gone::<RamSecurityPreference>("account").await;
        let cloud = preference(&url).await;
        assert_eq!(
            cloud["mfaOperationForLogin"],
            "independent",
            "{}",
            operator.log_tail()
        );
        assert_eq!(cloud["operationForRiskLogin"], "autonomous");
        assert_eq!(
            cloud["allowUserToManageMfaDevices"], false,
            "not named: left as it is"
        );
        eprintln!("[e2e_ram] preference: {:?}", started.elapsed());
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_is_enforced_repaired_not_effective_under_mandatory_conflicts_and_restores() {
    harness::with_namespace("ram-user", |ctx| async move {
        let started = std::time::Instant::now();
        let (url, _emulator) = start_emulator_with(ram_seed()).await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        let operator = ctx.start_operator("3s", &[]).await;
        ctx.apply::<RamUserMfaSetting>(resource(
            "bob",
            &url,
            json!({
            "userPrincipalName": BOB, "mfaBindRequired": true, "deletionPolicy": "Restore"}),
        ))
        .await;
        let applied: RamUserMfaSetting = ctx.wait_ready("bob", Some(&operator)).await;
        let status = applied.status.clone().unwrap();
        assert_eq!(status.observed.unwrap().mfa_bind_required, Some(true));
        assert_eq!(status.restore_to.unwrap().mfa_bind_required, Some(false));
        assert_eq!(
            status.device.unwrap().serial_number,
            "acs:ram::1234:mfa/bob"
        );
        let effective = condition(&applied.status, "Effective").unwrap();
        assert_eq!(
            (effective.0.as_str(), effective.1.as_str()),
            ("True", "RamPreferenceIndependent")
        );
        assert!(bob_required(&url).await);

        // Drift in the console is repaired.
        change_state(&url, |s| {
            s["ramUsers"][0]["loginProfile"]["mfaBindRequired"] = json!(false)
        })
        .await;
        eventually(
            "required again",
            WAIT,
            || bob_required(&url),
            |required| *required,
        )
        .await;
        eventually(
            "a DriftRepaired Event",
            WAIT,
            || ctx.events_for("bob"),
            |events| events.iter().any(|(reason, _)| reason == "DriftRepaired"),
        )
        .await;

        // The account turns mandatory in the console: the user's own setting has no effect.
        change_state(&url, |s| {
            s["ramSecurityPreference"]["mfaOperationForLogin"] = json!("mandatory")
        })
        .await;
        let overridden = eventually(
            "Effective=False",
            WAIT,
            || ctx.get::<RamUserMfaSetting>("bob"),
            |user| {
                user.as_ref()
                    .and_then(|u| condition(&u.status, "Effective"))
                    .is_some_and(|c| c.0 == "False")
            },
        )
        .await
        .unwrap();
        let effective = condition(&overridden.status, "Effective").unwrap();
        assert_eq!(effective.1, "RamPreferenceOverrides");
        assert!(effective.2.contains("mandatory"), "{}", effective.2);

        // A second resource for the same user: Conflict naming the owner, never applied.
        ctx.apply::<RamUserMfaSetting>(resource(
            "bob-too",
            &url,
            json!({
            "userPrincipalName": BOB, "mfaBindRequired": false}),
        ))
        .await;
        let owner = format!("{}/bob", ctx.namespace);
        let loser = eventually(
            "Conflict",
            WAIT,
            || ctx.get::<RamUserMfaSetting>("bob-too"),
            |user| {
                user.as_ref()
                    .and_then(|u| ready(&u.status))
                    .is_some_and(|r| r.1 == "Conflict")
            },
        )
        .await
        .unwrap();
        let message = ready(&loser.status).unwrap().2;
        assert!(message.contains(&owner), "{message}");
        assert!(bob_required(&url).await, "the younger wrote nothing");
        ctx.api::<RamUserMfaSetting>()
            .delete("bob-too", &DeleteParams::default())
            .await
            .unwrap();
        ctx.gone::<RamUserMfaSetting>("bob-too").await;

        // Restore on delete.
        ctx.api::<RamUserMfaSetting>()
            .delete("bob", &DeleteParams::default())
            .await
            .unwrap();
        ctx.gone::<RamUserMfaSetting>("bob").await;
        assert!(!bob_required(&url).await, "{}", operator.log_tail());
        assert!(
            ctx.events_for("bob")
                .await
                .iter()
                .any(|(reason, _)| reason == "Restored")
        );
        eprintln!("[e2e_ram] user: {:?}", started.elapsed());
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn observe_never_writes_and_a_user_without_console_logon_is_no_login_profile() {
    harness::with_namespace("ram-observe", |ctx| async move {
        let started = std::time::Instant::now();
        let (url, _emulator) = start_emulator_with(ram_seed()).await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        let operator = ctx.start_operator("2s", &[]).await;
        ctx.apply::<RamSecurityPreference>(resource(
            "account",
            &url,
            json!({
            "mfaOperationForLogin": "mandatory", "managementPolicy": "Observe"}),
        ))
        .await;
        ctx.apply::<RamUserMfaSetting>(resource(
            "bob",
            &url,
            json!({
            "userPrincipalName": BOB, "mfaBindRequired": true, "managementPolicy": "Observe"}),
        ))
        .await;
        ctx.apply::<RamUserMfaSetting>(resource(
            "ci",
            &url,
            json!({
            "userPrincipalName": CI, "mfaBindRequired": true}),
        ))
        .await;
        let account = eventually(
            "account Drifted",
            WAIT,
            || ctx.get::<RamSecurityPreference>("account"),
            |p| {
                p.as_ref()
                    .and_then(|p| ready(&p.status))
                    .is_some_and(|r| r.1 == "Drifted")
            },
        )
        .await
        .unwrap();
        assert!(
            ready(&account.status)
                .unwrap()
                .2
                .contains("from independent to mandatory")
        );
        let bob = eventually(
            "bob Drifted",
            WAIT,
            || ctx.get::<RamUserMfaSetting>("bob"),
            |u| {
                u.as_ref()
                    .and_then(|u| ready(&u.status))
                    .is_some_and(|r| r.1 == "Drifted")
            },
        )
        .await
        .unwrap();
        assert_eq!(
            bob.status.unwrap().observed.unwrap().mfa_bind_required,
            Some(false)
        );
        let ci = eventually(
            "ci NoLoginProfile",
            WAIT,
            || ctx.get::<RamUserMfaSetting>("ci"),
            |u| {
                u.as_ref()
                    .and_then(|u| ready(&u.status))
                    .is_some_and(|r| r.1 == "NoLoginProfile")
            },
        )
        .await
        .unwrap();
        let no_login = ready(&ci.status).unwrap();
        assert_eq!(no_login.0, "False");
        assert!(no_login.2.contains(CI), "{}", no_login.2);
        assert!(
            ctx.events_for("ci")
                .await
                .iter()
                .any(|(reason, _)| reason == "NoLoginProfile")
        );
        // Several resyncs later: still not one write call, of any outcome.
        tokio::time::sleep(std::time::Duration::from_secs(7)).await;
        assert_eq!(
            writes(&url).await,
            Vec::<Value>::new(),
            "{}",
            operator.log_tail()
        );
        assert_eq!(write_calls(&url).await, 0);
        // ci is not retried every resync: its backoff grows (5 s, then 10 s, ...), while bob is
        // read every resync.
        let by_user = reqwest_get(&format!("{url}/_emulator/calls/users")).await;
        let reads = |user: &str| by_user["GetLoginProfile"][user].as_u64().unwrap_or(0);
        assert!(reads(CI) <= 4 && reads(CI) < reads(BOB), "{by_user}");
        eprintln!("[e2e_ram] observe: {:?}", started.elapsed());
        operator.stop().await;
    })
    .await;
}

/// Server-side apply of `object` as kind `K`; the API server's message when it refuses.
async fn try_apply<K>(ctx: &harness::TestContext, name: &str, spec: Value) -> Result<(), String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let object = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "metadata": {"name": name}, "spec": spec});
    let params = kube::api::PatchParams::apply("cloudsso-e2e").force();
    ctx.api::<K>()
        .patch(name, &params, &kube::api::Patch::Apply(&object))
        .await
        .map(|_| ())
        .map_err(|error| error.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_refuses_what_can_never_work_and_lists_them_under_cloudsso() {
    harness::with_namespace("ram-crds", |ctx| async move {
        let keys = json!({"name": SECRET});
        let user = |principal: &str| {
            json!({"userPrincipalName": principal, "mfaBindRequired": true, "credentialsSecretRef": keys})
        };
        let refused = try_apply::<RamUserMfaSetting>(&ctx, "bad", user("not-a-principal")).await;
        assert!(refused.unwrap_err().contains("userPrincipalName must be name@domain"));
        try_apply::<RamUserMfaSetting>(&ctx, "bob", user(BOB)).await.unwrap();
        let moved = try_apply::<RamUserMfaSetting>(&ctx, "bob", user(CI)).await;
        assert!(moved.unwrap_err().contains("userPrincipalName is immutable"));
        let beside_account = json!({"userPrincipalName": BOB, "mfaBindRequired": true,
            "accountRef": {"name": "corp"}, "endpoint": "http://127.0.0.1:1"});
        let refused = try_apply::<RamUserMfaSetting>(&ctx, "elsewhere", beside_account).await;
        assert!(refused.unwrap_err().contains("only together with credentialsSecretRef"));
        let bad_enum = json!({"mfaOperationForLogin": "Mandatory", "credentialsSecretRef": keys});
        let refused = try_apply::<RamSecurityPreference>(&ctx, "bad", bad_enum).await;
        assert!(refused.unwrap_err().contains("mandatory"));
        let bad_risk = json!({"mfaOperationForLogin": "mandatory", "operationForRiskLogin": "EnforceVerify"});
        assert!(try_apply::<RamSecurityPreference>(&ctx, "bad", bad_risk).await.is_err());
        let good = json!({"mfaOperationForLogin": "adaptive", "operationForRiskLogin": "enforceVerify",
            "enableSaveMfaTicket": false});
        try_apply::<RamSecurityPreference>(&ctx, "account", good).await.unwrap();
        let (ok, listed, stderr) = ctx.kubectl(&["get", "cloudsso", "-o", "name"]).await;
        assert!(ok, "{stderr}");
        assert!(listed.contains("ramsecuritypreference.cloudsso.mfa-operator.dev/account"), "{listed}");
        assert!(listed.contains("ramusermfasetting.cloudsso.mfa-operator.dev/bob"), "{listed}");
        let (ok, explained, _) = ctx.kubectl(&["explain", "ramumfa.spec.mfaBindRequired"]).await;
        assert!(ok && explained.contains("independent"), "{explained}");
    })
    .await;
}
