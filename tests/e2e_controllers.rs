//! The controllers end to end: a real kube-apiserver, the operator process, and the emulator.

mod common;
mod harness;

use std::time::Duration;

use cloudsso_mfa_operator::api::{DirectoryMfaPolicy, RamUserMfaStatus, UserMfaSetting};
use common::*;
use harness::{SECRET, WAIT, condition, eventually, ready};
use kube::api::DeleteParams;
use serde_json::json;

const ALICE: &str = "u-00q8wbq42wiltcrk0001";
const BOB: &str = "u-00q8wbq42wiltcrk0002";

fn policy(name: &str, url: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut full = json!({"directoryId": DIRECTORY, "endpoint": url, "credentialsSecretRef": {"name": SECRET}});
    full.as_object_mut()
        .unwrap()
        .extend(spec.as_object().unwrap().clone());
    json!({"metadata": {"name": name}, "spec": full})
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_policy_enforces_changes_and_restores() {
    harness::with_namespace("directory", |ctx| async move {
        let (url, _emulator) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        let operator = ctx.start_operator("3s", &[]).await;
        change_state(&url, |s| {
            s["directories"][0]["mfaAuthenticationSettings"] = json!("Enabled")
        })
        .await;

        ctx.apply::<DirectoryMfaPolicy>(policy("corp", &url, json!({
            "mfaAuthenticationSettings": "OnlyRiskyLogin", "operationForRiskLogin": "EnforceVerify",
            "allowedVerificationTypes": ["TOTP"], "deletionPolicy": "Restore"
        }))).await;
        let applied: DirectoryMfaPolicy = ctx.wait_ready("corp", None).await;
        let status = applied.status.clone().unwrap();
        let observed = status.observed.clone().unwrap();
        assert_eq!(
            observed.mfa_authentication_settings.as_deref(),
            Some("OnlyRiskyLogin"),
            "{}",
            operator.log_tail()
        );
        assert_eq!(
            observed.operation_for_risk_login.as_deref(),
            Some("EnforceVerify")
        );
        assert_eq!(
            observed.allowed_verification_types,
            Some(vec!["TOTP".to_string()])
        );
        assert_eq!(
            status
                .restore_to
                .unwrap()
                .mfa_authentication_settings
                .as_deref(),
            Some("Enabled")
        );
        assert_eq!(
            status.common.observed_generation,
            applied.metadata.generation
        );
        assert!(status.common.last_sync_time.is_some());
        assert_eq!(condition(&applied.status, "Synced").unwrap().0, "True");
        let cloud = state(&url).await;
        assert_eq!(directory_setting(&cloud), "OnlyRiskyLogin");
        assert!(
            ctx.events_for("corp")
                .await
                .iter()
                .any(|(reason, note)| reason == "Updated"
                    && note.contains("from Enabled to OnlyRiskyLogin"))
        );

        // A spec change is written.
        ctx.apply::<DirectoryMfaPolicy>(policy(
            "corp",
            &url,
            json!({"mfaAuthenticationSettings": "Disabled", "deletionPolicy": "Restore"}),
        ))
        .await;
        eventually(
            "cloud Disabled",
            WAIT,
            || state(&url),
            |s| directory_setting(s) == "Disabled",
        )
        .await;

        // Restore on delete writes back what the cloud had before the first change.
        ctx.api::<DirectoryMfaPolicy>()
            .delete("corp", &DeleteParams::default())
            .await
            .unwrap();
        ctx.gone::<DirectoryMfaPolicy>("corp").await;
        assert_eq!(directory_setting(&state(&url).await), "Enabled");

        // Orphan (the default) leaves the cloud as it is.
        ctx.apply::<DirectoryMfaPolicy>(policy(
            "orphan",
            &url,
            json!({"mfaAuthenticationSettings": "Byuser"}),
        ))
        .await;
        ctx.wait_ready::<DirectoryMfaPolicy>("orphan", None).await;
        ctx.api::<DirectoryMfaPolicy>()
            .delete("orphan", &DeleteParams::default())
            .await
            .unwrap();
        ctx.gone::<DirectoryMfaPolicy>("orphan").await;
        assert_eq!(directory_setting(&state(&url).await), "Byuser");
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_setting_by_name_reports_devices_and_restores() {
    harness::with_namespace("user", |ctx| async move {
        let (url, _emulator) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        let operator = ctx.start_operator("3s", &[]).await;
        let user = |name: &str, spec: serde_json::Value| {
            let mut full = json!({"directoryId": DIRECTORY, "endpoint": url, "credentialsSecretRef": {"name": SECRET}});
            full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
            json!({"metadata": {"name": name}, "spec": full})
        };
        ctx.apply::<UserMfaSetting>(user("alice", json!({"userName": "alice", "userMfaAuthenticationSettings": "Disabled", "deletionPolicy": "Restore"}))).await;
        let alice: UserMfaSetting = eventually("alice disabled and Ready", WAIT, || ctx.get::<UserMfaSetting>("alice"), |u| {
            u.as_ref().is_some_and(|u| ready(&u.status).is_some_and(|r| r.0 == "True"))
        })
        .await
        .unwrap();
        let status = alice.status.clone().unwrap();
        assert_eq!(status.user_id.as_deref(), Some(ALICE), "{}", operator.log_tail());
        assert_eq!(status.bound_device_count, Some(2));
        let devices = status.devices.clone().unwrap();
        assert_eq!(devices.iter().map(|d| d.device_name.as_str()).collect::<Vec<_>>(), ["Alice-MFA1", "Alice-Passkey"]);
        assert_eq!(devices[1].device_type, "PlatformPasskey");
        assert_eq!(devices[0].effective_time.as_deref(), Some("2021-10-29T09:14:06Z"));
        assert_eq!(status.observed.unwrap().user_mfa_authentication_settings.as_deref(), Some("Disabled"));
        assert_eq!(condition(&alice.status, "Effective").unwrap().0, "True", "the seed directory is Byuser");
        assert_eq!(cloud_user_setting(&state(&url).await, ALICE), "Disabled");

        // A device bound in the console shows up at the next resync.
        change_state(&url, |s| {
            s["directories"][0]["users"][1]["mfaDevices"] = json!([{"deviceId": "mfa-b1", "deviceName": "Bob-Phone", "deviceType": "TOTP", "effectiveTime": "2026-11-01T00:00:00Z"}]);
        }).await;
        ctx.apply::<UserMfaSetting>(user("bob", json!({"userId": BOB, "userMfaAuthenticationSettings": "Enabled"}))).await;
        let bob: UserMfaSetting = ctx.wait_ready("bob", None).await;
        assert_eq!(bob.status.unwrap().bound_device_count, Some(1));
        assert_eq!(cloud_user_setting(&state(&url).await, BOB), "Enabled");

        // Spec change, then Restore on delete.
        ctx.apply::<UserMfaSetting>(user("alice", json!({"userName": "alice", "userMfaAuthenticationSettings": "Enabled", "deletionPolicy": "Restore"}))).await;
        eventually("alice Enabled in the cloud", WAIT, || state(&url), |s| cloud_user_setting(s, ALICE) == "Enabled").await;
        ctx.api::<UserMfaSetting>().delete("alice", &DeleteParams::default()).await.unwrap();
        ctx.gone::<UserMfaSetting>("alice").await;
        assert_eq!(cloud_user_setting(&state(&url).await, ALICE), "Enabled", "restoreTo is what the cloud had first: Enabled");
        // Orphan: bob stays Enabled.
        ctx.api::<UserMfaSetting>().delete("bob", &DeleteParams::default()).await.unwrap();
        ctx.gone::<UserMfaSetting>("bob").await;
        assert_eq!(cloud_user_setting(&state(&url).await, BOB), "Enabled");
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ram_user_report_is_observe_only() {
    harness::with_namespace("ram", |ctx| async move {
        let (url, _emulator) = start_emulator().await;
        change_state(&url, |s| s["ramUsers"].as_array_mut().unwrap().push(json!({"userPrincipalName": "dev@example.onaliyun.com"}))).await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        let operator = ctx.start_operator("3s", &[]).await;
        let report = |name: &str, upn: &str| json!({"metadata": {"name": name}, "spec": {"userPrincipalName": upn, "endpoint": url, "credentialsSecretRef": {"name": SECRET}}});
        ctx.apply::<RamUserMfaStatus>(report("bob", "bob@example.onaliyun.com")).await;
        ctx.apply::<RamUserMfaStatus>(report("dev", "dev@example.onaliyun.com")).await;
        ctx.apply::<RamUserMfaStatus>(report("ghost", "ghost@example.onaliyun.com")).await;
        let bob: RamUserMfaStatus = ctx.wait_ready("bob", None).await;
        let status = bob.status.unwrap();
        assert_eq!(status.mfa_enabled, Some(true), "{}", operator.log_tail());
        let device = status.device.unwrap();
        assert_eq!((device.serial_number.as_str(), device.device_type.as_str()), ("acs:ram::1234:mfa/bob", "VMFA"));
        let dev: RamUserMfaStatus = ctx.wait_ready("dev", None).await;
        let status = dev.status.unwrap();
        assert_eq!(status.mfa_enabled, Some(false));
        assert!(status.device.is_none());
        let ghost = eventually("ghost UserNotFound", WAIT, || ctx.get::<RamUserMfaStatus>("ghost"), |r| {
            r.as_ref().and_then(|r| ready(&r.status)).is_some_and(|c| c.0 == "False" && c.1 == "UserNotFound")
        }).await;
        assert!(ready(&ghost.unwrap().status).unwrap().2.contains("ghost@example.onaliyun.com"));
        assert!(ctx.events_for("ghost").await.iter().any(|(reason, _)| reason == "UserNotFound"));
        assert_eq!(write_calls(&url).await, 0);
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_repaired_within_one_resync_and_observe_never_writes() {
    harness::with_namespace("drift", |ctx| async move {
        let (url, _emulator) = start_emulator().await;
        let (observe_url, _observe_emulator) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        let operator = ctx.start_operator("4s", &[]).await;
        ctx.apply::<DirectoryMfaPolicy>(policy("corp", &url, json!({"mfaAuthenticationSettings": "Byuser"}))).await;
        ctx.wait_ready::<DirectoryMfaPolicy>("corp", None).await;

        // A console change: the directory is set to Disabled behind the operator's back.
        change_state(&url, |s| s["directories"][0]["mfaAuthenticationSettings"] = json!("Disabled")).await;
        let changed_at = std::time::Instant::now();
        eventually("drift repaired", Duration::from_secs(12), || state(&url), |s| directory_setting(s) == "Byuser").await;
        eprintln!("drift repaired {:?} after the console change (resync 4s)", changed_at.elapsed());
        let events = eventually("DriftRepaired event", WAIT, || ctx.events_for("corp"), |events| events.iter().any(|(r, _)| r == "DriftRepaired")).await;
        let note = &events.iter().find(|(r, _)| r == "DriftRepaired").unwrap().1;
        assert!(note.contains("from Disabled to Byuser"), "{note}\n{}", operator.log_tail());

        // Observe: status shows the drift, and nothing is ever written. (One policy per directory id.)
        ctx.api::<DirectoryMfaPolicy>().delete("corp", &DeleteParams::default()).await.unwrap();
        ctx.gone::<DirectoryMfaPolicy>("corp").await;
        ctx.apply::<DirectoryMfaPolicy>(policy("watch", &observe_url, json!({"mfaAuthenticationSettings": "Enabled", "managementPolicy": "Observe"}))).await;
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "bob"}, "spec": {
            "directoryId": DIRECTORY, "userId": BOB, "userMfaAuthenticationSettings": "Enabled",
            "managementPolicy": "Observe", "endpoint": observe_url, "credentialsSecretRef": {"name": SECRET}}})).await;
        let watched = eventually("Observe drift reported", WAIT, || ctx.get::<DirectoryMfaPolicy>("watch"), |p| {
            p.as_ref().and_then(|p| condition(&p.status, "Synced")).is_some_and(|c| c.0 == "False" && c.1 == "Drifted")
        }).await.unwrap();
        assert_eq!(watched.status.as_ref().unwrap().observed.as_ref().unwrap().mfa_authentication_settings.as_deref(), Some("Byuser"));
        eventually("Observe user drift reported", WAIT, || ctx.get::<UserMfaSetting>("bob"), |u| {
            u.as_ref().and_then(|u| condition(&u.status, "Synced")).is_some_and(|c| c.0 == "False" && c.1 == "Drifted")
        }).await;
        tokio::time::sleep(Duration::from_secs(9)).await; // two more resyncs
        assert!(all_calls(&observe_url, "GetMFAAuthenticationSettingInfo").await >= 2);
        assert_eq!(write_calls(&observe_url).await, 0, "Observe wrote to the cloud");
        assert_eq!(directory_setting(&state(&observe_url).await), "Byuser");
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_references_back_off_and_recover() {
    harness::with_namespace("badrefs", |ctx| async move {
        let (url, _emulator) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        ctx.credentials_secret("wrong-keys", ACCESS_KEY_ID, "not-the-secret").await;
        let operator = ctx.start_operator("3s", &[]).await;
        let user = |name: &str, spec: serde_json::Value| {
            let mut full = json!({"directoryId": DIRECTORY, "userMfaAuthenticationSettings": "Enabled", "endpoint": url, "credentialsSecretRef": {"name": SECRET}});
            full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
            json!({"metadata": {"name": name}, "spec": full})
        };
        ctx.apply::<UserMfaSetting>(user("unknown-name", json!({"userName": "mallory"}))).await;
        ctx.apply::<UserMfaSetting>(user("unknown-id", json!({"userId": "u-doesnotexist"}))).await;
        ctx.apply::<UserMfaSetting>(user("unknown-directory", json!({"userId": ALICE, "directoryId": "d-doesnotexist"}))).await;
        ctx.apply::<UserMfaSetting>(user("no-secret", json!({"userId": ALICE, "credentialsSecretRef": {"name": "absent"}}))).await;
        // Another user than no-secret's: two resources for one user would be a Conflict.
        ctx.apply::<UserMfaSetting>(user("wrong-secret", json!({"userId": "u-00q8wbq42wiltcrk0003", "credentialsSecretRef": {"name": "wrong-keys"}}))).await;
        for (name, reason, mentions) in [
            ("unknown-name", "UserNotFound", "mallory"),
            ("unknown-id", "UserNotFound", "u-doesnotexist"),
            ("unknown-directory", "DirectoryNotFound", "d-doesnotexist"),
            ("no-secret", "CredentialsMissing", "absent"),
            ("wrong-secret", "CredentialsInvalid", "SignatureDoesNotMatch"),
        ] {
            let object = eventually(&format!("{name}: {reason}"), WAIT, || ctx.get::<UserMfaSetting>(name), |u| {
                u.as_ref().and_then(|u| ready(&u.status)).is_some_and(|c| c.0 == "False" && c.1 == reason)
            }).await.unwrap();
            let (_, _, message) = ready(&object.status).unwrap();
            assert!(message.contains(mentions), "{name}: {message}");
            assert_eq!(condition(&object.status, "Synced").unwrap().1, reason);
            let events = ctx.events_for(name).await;
            assert!(events.iter().any(|(r, _)| r == reason), "{name}: no {reason} event in {events:?}");
        }

        // Over a minute, failing references cost a bounded number of calls (backoff, no hot loop).
        let before = all_calls(&url, "ListUsers").await + all_calls(&url, "GetUserMFAAuthenticationSettings").await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let after = all_calls(&url, "ListUsers").await + all_calls(&url, "GetUserMFAAuthenticationSettings").await;
        eprintln!("calls by 4 failing resources in 60s: {}", after - before);
        assert!(after - before <= 40, "{} calls in a minute: backoff is not working\n{}", after - before, operator.log_tail());

        // Fixing the references recovers: a spec change, a new Secret, a fixed Secret, a user created in the console.
        ctx.apply::<UserMfaSetting>(user("unknown-name", json!({"userName": "bob"}))).await;
        ctx.credentials_secret("absent", ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        ctx.credentials_secret("wrong-keys", ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        for name in ["unknown-name", "no-secret", "wrong-secret"] {
            let object = eventually(&format!("{name} recovered"), Duration::from_secs(20), || ctx.get::<UserMfaSetting>(name), |u| {
                u.as_ref().and_then(|u| ready(&u.status)).is_some_and(|c| c.0 == "True")
            }).await.unwrap();
            assert!(object.status.unwrap().user_id.is_some());
        }
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn older_policy_owns_a_directory_and_users_follow_its_setting() {
    harness::with_namespace("conflict", |ctx| async move {
        let (url, _emulator) = start_emulator().await;
        change_state(&url, |s| s["directories"][0]["mfaAuthenticationSettings"] = json!("Enabled")).await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        let operator = ctx.start_operator("3s", &[]).await;

        // Effective=False while the directory is not Byuser.
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "alice"}, "spec": {
            "directoryId": DIRECTORY, "userName": "alice", "userMfaAuthenticationSettings": "Enabled",
            "endpoint": url, "credentialsSecretRef": {"name": SECRET}}})).await;
        let alice = eventually("alice Effective=False", WAIT, || ctx.get::<UserMfaSetting>("alice"), |u| {
            u.as_ref().and_then(|u| condition(&u.status, "Effective")).is_some_and(|c| c.0 == "False")
        }).await.unwrap();
        let (_, reason, message) = condition(&alice.status, "Effective").unwrap();
        assert_eq!(reason, "DirectorySettingOverrides");
        assert!(message.contains("is Enabled"), "{message}");
        assert_eq!(ready(&alice.status).unwrap().0, "True", "{}", operator.log_tail());

        ctx.apply::<DirectoryMfaPolicy>(policy("first", &url, json!({"mfaAuthenticationSettings": "Byuser"}))).await;
        ctx.wait_ready::<DirectoryMfaPolicy>("first", None).await;
        tokio::time::sleep(Duration::from_millis(1100)).await; // creation timestamps have 1s resolution
        ctx.apply::<DirectoryMfaPolicy>(policy("second", &url, json!({"mfaAuthenticationSettings": "Disabled"}))).await;
        let second = eventually("second in Conflict", WAIT, || ctx.get::<DirectoryMfaPolicy>("second"), |p| {
            p.as_ref().and_then(|p| ready(&p.status)).is_some_and(|c| c.1 == "Conflict")
        }).await.unwrap();
        let (status, _, message) = ready(&second.status).unwrap();
        assert_eq!(status, "False");
        assert!(message.contains(&format!("{}/first", ctx.namespace)), "{message}");
        let first = eventually("first lists its contender", WAIT, || ctx.get::<DirectoryMfaPolicy>("first"), |p| {
            p.as_ref().and_then(|p| p.status.as_ref()).is_some_and(|s| !s.contenders.is_empty())
        }).await.unwrap();
        assert_eq!(first.status.as_ref().unwrap().contenders, vec![format!("{}/second", ctx.namespace)]);
        assert!(ready(&first.status).unwrap().2.contains("second"));
        assert_eq!(directory_setting(&state(&url).await), "Byuser", "the younger policy is not applied");

        // The user follows the directory: Byuser now, so the per-user setting is in effect.
        eventually("alice Effective=True", WAIT, || ctx.get::<UserMfaSetting>("alice"), |u| {
            u.as_ref().and_then(|u| condition(&u.status, "Effective")).is_some_and(|c| c.0 == "True")
        }).await;

        // The owner goes; the other takes over.
        ctx.api::<DirectoryMfaPolicy>().delete("first", &DeleteParams::default()).await.unwrap();
        ctx.wait_ready::<DirectoryMfaPolicy>("second", None).await;
        assert_eq!(directory_setting(&state(&url).await), "Disabled");
        eventually("alice Effective=False again", WAIT, || ctx.get::<UserMfaSetting>("alice"), |u| {
            u.as_ref().and_then(|u| condition(&u.status, "Effective")).is_some_and(|c| c.0 == "False")
        }).await;
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_does_not_hang_when_the_cloud_object_is_gone() {
    harness::with_namespace("gone", |ctx| async move {
        let (url, _emulator) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        let operator = ctx.start_operator("3s", &[]).await;
        ctx.apply::<DirectoryMfaPolicy>(policy("corp", &url, json!({"mfaAuthenticationSettings": "Enabled", "deletionPolicy": "Restore"}))).await;
        ctx.wait_ready::<DirectoryMfaPolicy>("corp", None).await;
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "bob"}, "spec": {
            "directoryId": DIRECTORY, "userId": BOB, "userMfaAuthenticationSettings": "Enabled", "deletionPolicy": "Restore",
            "endpoint": url, "credentialsSecretRef": {"name": SECRET}}})).await;
        ctx.wait_ready::<UserMfaSetting>("bob", None).await;
        change_state(&url, |s| s["directories"] = json!([])).await;
        ctx.api::<DirectoryMfaPolicy>().delete("corp", &DeleteParams::default()).await.unwrap();
        ctx.api::<UserMfaSetting>().delete("bob", &DeleteParams::default()).await.unwrap();
        ctx.gone::<DirectoryMfaPolicy>("corp").await;
        ctx.gone::<UserMfaSetting>("bob").await;
        operator.stop().await;
    })
    .await;
}
