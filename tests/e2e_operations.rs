//! Running the operator as a platform team would: /metrics and the probes, two replicas with a
//! leader Lease, and SIGTERM during a reconcile. Real kube-apiserver, operator processes, emulator.

mod common;
mod harness;

use std::time::{Duration, Instant};

use cloudsso_mfa_operator::api::{DirectoryMfaPolicy, RamUserMfaStatus, UserMfaSetting};
use common::*;
use harness::{SECRET, TestContext, WAIT, condition, eventually, user_setting};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::DeleteParams;
use serde_json::json;

const ALICE: &str = "u-00q8wbq42wiltcrk0001";
const PREFIX: &str = "cloudsso_mfa_operator_";

fn metric(name: &str) -> String {
    format!("{PREFIX}{name}")
}

#[tokio::test]
async fn metrics_show_counters_moving_and_compliance_per_directory() {
    harness::with_namespace("metrics", |ctx| async move {
        let (url, _state) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        let operator = ctx.start_operator("2s", &[]).await;
        assert_eq!(operator.http_get("/healthz").await, (200, "ok\n".into()));
        operator.wait_until_ready().await;

        // The seed: alice Enabled with 2 devices, bob Disabled, carol Enabled with 1 device.
        ctx.apply::<DirectoryMfaPolicy>(json!({"metadata": {"name": "dir"}, "spec": {
            "directoryId": DIRECTORY, "mfaAuthenticationSettings": "Byuser",
            "operationForRiskLogin": "Autonomous", "endpoint": url,
            "census": {"enabled": true}, "credentialsSecretRef": {"name": SECRET}}}))
            .await;
        ctx.apply::<UserMfaSetting>(user_setting("alice", &url, "alice", "Enabled"))
            .await;
        ctx.apply::<RamUserMfaStatus>(json!({"metadata": {"name": "bob"}, "spec": {
            "userPrincipalName": "bob@example.onaliyun.com", "endpoint": url,
            "credentialsSecretRef": {"name": SECRET}}}))
            .await;
        ctx.wait_ready::<DirectoryMfaPolicy>("dir", Some(&operator))
            .await;
        ctx.wait_ready::<UserMfaSetting>("alice", Some(&operator))
            .await;
        ctx.wait_ready::<RamUserMfaStatus>("bob", Some(&operator))
            .await;

        let directory = [("directory", DIRECTORY)];
        let first = eventually(
            "compliance gauges for the directory",
            WAIT,
            || operator.scrape(),
            |m| m.value(&metric("directory_users"), &directory) == Some(3.0),
        )
        .await;
        assert_eq!(
            first.value(&metric("directory_users_mfa_disabled"), &directory),
            Some(1.0)
        );
        assert_eq!(
            first.value(
                &metric("directory_users_mfa_enabled_without_device"),
                &directory
            ),
            Some(0.0)
        );
        for kind in ["DirectoryMfaPolicy", "UserMfaSetting", "RamUserMfaStatus"] {
            assert!(
                first.value(&metric("reconciles_total"), &[("kind", kind)]) >= Some(1.0),
                "{kind}\n{}",
                first.0
            );
            assert!(
                first.value(
                    &metric("reconcile_duration_seconds_count"),
                    &[("kind", kind)]
                ) >= Some(1.0)
            );
        }
        let directory_reads = [
            ("api", "cloudsso"),
            ("action", "GetMFAAuthenticationSettingInfo"),
            ("outcome", "ok"),
        ];
        assert!(first.value(&metric("cloud_api_calls_total"), &directory_reads) >= Some(1.0));
        assert!(
            first.value(
                &metric("cloud_api_calls_total"),
                &[
                    ("api", "ims"),
                    ("action", "GetUserMFAInfo"),
                    ("outcome", "ok")
                ]
            ) >= Some(1.0)
        );
        assert!(first.value(&metric("rate_limiter_wait_seconds_count"), &[]) >= Some(1.0));
        for urgency in ["interactive", "initial", "resync"] {
            let waiting = first.value(&metric("passes_waiting"), &[("urgency", urgency)]);
            assert!(
                waiting.is_some_and(|n| n >= 0.0),
                "passes_waiting{{{urgency}}}"
            );
        }
        assert_eq!(first.value(&metric("leader"), &[]), Some(1.0));
        // The census runs in the background; the policy shows it as soon as it completes.
        eventually(
            "status.users of the policy",
            WAIT,
            || async { ctx.api::<DirectoryMfaPolicy>().get("dir").await.unwrap() },
            |p| {
                serde_json::to_value(&p.status).unwrap()["users"]
                    == json!({"total": 3, "mfaDisabled": 1, "mfaEnabledWithoutDevice": 0})
            },
        )
        .await;

        // JSON logs name the object of each reconcile and the request id of each cloud call, and
        // never carry a secret.
        let lines = operator.log_lines();
        assert!(
            lines
                .iter()
                .any(|line| line["fields"]["message"] == "cloud call succeeded"
                    && line["fields"]["request_id"]
                        .as_str()
                        .is_some_and(|id| id.len() > 8)
                    && line["span"]["kind"] == "DirectoryMfaPolicy"
                    && line["span"]["object"] == format!("{}/dir", ctx.namespace)),
            "{}",
            operator.log_tail()
        );
        let raw_log = std::fs::read_to_string(&operator.log).unwrap();
        assert!(
            !raw_log.contains(ACCESS_KEY_SECRET),
            "the access key secret reached the log"
        );

        // In the console: bob turns MFA on without binding a device, carol loses her only device.
        change_state(&url, |state| {
            for user in state["directories"][0]["users"].as_array_mut().unwrap() {
                match user["userName"].as_str() {
                    Some("bob") => user["userMfaAuthenticationSettings"] = json!("Enabled"),
                    Some("carol") => user["mfaDevices"] = json!([]),
                    _ => {}
                }
            }
        })
        .await;
        let second = eventually(
            "the gauges to follow the console change within a resync",
            WAIT,
            || operator.scrape(),
            |m| {
                m.value(
                    &metric("directory_users_mfa_enabled_without_device"),
                    &directory,
                ) == Some(2.0)
            },
        )
        .await;
        assert_eq!(
            second.value(&metric("directory_users_mfa_disabled"), &directory),
            Some(0.0)
        );
        let reconciles = |m: &harness::Metrics| {
            m.value(
                &metric("reconciles_total"),
                &[("kind", "DirectoryMfaPolicy")],
            )
        };
        // Each resync reconciles the policy and reads the directory again.
        let calls =
            |m: &harness::Metrics| m.value(&metric("cloud_api_calls_total"), &directory_reads);
        eventually(
            "the reconcile and call counters to move",
            WAIT,
            || operator.scrape(),
            |m| reconciles(m) > reconciles(&first) && calls(m) > calls(&first),
        )
        .await;
        let policy: DirectoryMfaPolicy = eventually(
            "status.users to follow",
            WAIT,
            || async { ctx.api::<DirectoryMfaPolicy>().get("dir").await.unwrap() },
            |p| serde_json::to_value(&p.status).unwrap()["users"]["mfaEnabledWithoutDevice"] == 2,
        )
        .await;
        assert_eq!(
            serde_json::to_value(&policy.status).unwrap()["users"]["total"],
            3
        );

        // Above the account's quota the cloud throttles; the counter shows it, then it recovers.
        set_faults(&url, json!({"qps": 1})).await;
        let throttled = eventually(
            "throttled calls to be counted",
            WAIT,
            || operator.scrape(),
            |m| m.value(&metric("cloud_api_throttled_total"), &[("api", "cloudsso")]) > Some(0.0),
        )
        .await;
        // A scrape encodes one family after another, so a call finishing mid-scrape can show in
        // the throttled family and not yet in the calls family: read the calls from a later one.
        drop(throttled);
        let throttled = operator.scrape().await;
        assert!(
            throttled.value(
                &metric("cloud_api_calls_total"),
                &[("outcome", "Throttling.User")]
            ) > Some(0.0),
            "{}",
            throttled.0
        );
        set_faults(&url, json!({})).await;

        // A change the operator makes itself shows in the gauges without waiting for a census.
        ctx.apply::<UserMfaSetting>(user_setting("alice", &url, "alice", "Disabled"))
            .await;
        eventually(
            "alice's new setting to be counted",
            WAIT,
            || operator.scrape(),
            |m| m.value(&metric("directory_users_mfa_disabled"), &directory) == Some(1.0),
        )
        .await;

        // The gauges go with the policy that asked for the census (alice's setting alone reads
        // only alice).
        let policies = ctx.api::<DirectoryMfaPolicy>();
        policies
            .delete("dir", &DeleteParams::default())
            .await
            .unwrap();
        eventually(
            "the directory's gauges to go with the policy",
            WAIT,
            || operator.scrape(),
            |m| m.value(&metric("directory_users"), &directory).is_none(),
        )
        .await;
        operator.stop().await;
    })
    .await;
}

async fn lease_holder(ctx: &TestContext) -> Option<String> {
    ctx.api::<Lease>()
        .get_opt("cloudsso-mfa-operator")
        .await
        .expect("get Lease")
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity)
}

async fn wait_holder(ctx: &TestContext, prefix: &str, timeout: Duration) -> String {
    eventually(
        &format!("{prefix} to hold the Lease"),
        timeout,
        || lease_holder(ctx),
        |holder| {
            holder
                .as_deref()
                .is_some_and(|h| h.starts_with(&format!("{prefix}_")))
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over_when_it_dies_or_stops() {
    harness::with_namespace("leader", |ctx| async move {
        let (url, _state) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET).await;
        let lease_duration = Duration::from_secs(6);
        let args = [
            "--leader-election",
            "--leader-election-namespace",
            ctx.namespace.as_str(),
            "--lease-duration",
            "6s",
            "--lease-renew-deadline",
            "4s",
            "--lease-retry-period",
            "1s",
        ];
        let mut first = ctx.start_operator_with("30s", &args, &[("POD_NAME", "operator-a")]).await;
        wait_holder(&ctx, "operator-a", WAIT).await;
        let second = ctx.start_operator_with("30s", &args, &[("POD_NAME", "operator-b")]).await;
        eventually("operator-b to stand by", WAIT, || async { second.logged("standing by") }, |s| *s).await;
        // Both serve probes; only the leader says it leads, and only it reconciles.
        second.wait_until_ready().await;
        ctx.apply::<UserMfaSetting>(user_setting("before", &url, "alice", "Enabled")).await;
        ctx.wait_ready::<UserMfaSetting>("before", Some(&first)).await;
        let leading = first.scrape().await;
        let standing_by = second.scrape().await;
        assert_eq!(leading.value(&metric("leader"), &[]), Some(1.0));
        assert_eq!(standing_by.value(&metric("leader"), &[]), Some(0.0));
        assert!(leading.value(&metric("reconciles_total"), &[]) >= Some(1.0));
        assert_eq!(standing_by.value(&metric("reconciles_total"), &[]), None, "{}", standing_by.0);

        // The leader dies without a word: the standby waits out the lease duration, then leads.
        let killed = Instant::now();
        first.kill().await;
        wait_holder(&ctx, "operator-b", Duration::from_secs(30)).await;
        let crash_handover = killed.elapsed();
        eprintln!("[measure] handover after the leader was killed: {crash_handover:?} (lease duration {lease_duration:?})");
        assert!(
            crash_handover <= lease_duration + Duration::from_secs(4),
            "took {crash_handover:?}"
        );
        ctx.apply::<UserMfaSetting>(user_setting("after-crash", &url, "carol", "Enabled")).await;
        ctx.wait_ready::<UserMfaSetting>("after-crash", Some(&second)).await;

        // A clean stop (SIGTERM) releases the Lease: a standby leads at its next retry.
        let mut second = second;
        let third = ctx.start_operator_with("30s", &args, &[("POD_NAME", "operator-c")]).await;
        eventually("operator-c to stand by", WAIT, || async { third.logged("standing by") }, |s| *s).await;
        let stopped = Instant::now();
        second.terminate();
        wait_holder(&ctx, "operator-c", Duration::from_secs(30)).await;
        let clean_handover = stopped.elapsed();
        eprintln!("[measure] handover after SIGTERM to the leader: {clean_handover:?}");
        let exit = second.wait_exit(Duration::from_secs(20)).await;
        assert!(exit.success(), "{exit:?}\n{}", second.log_tail());
        assert!(second.logged("released the leader Lease"), "{}", second.log_tail());
        assert!(
            clean_handover < lease_duration,
            "took {clean_handover:?}: the Lease was not released"
        );
        ctx.apply::<UserMfaSetting>(user_setting("after-stop", &url, "bob", "Disabled")).await;
        ctx.wait_ready::<UserMfaSetting>("after-stop", Some(&third)).await;

        // Someone else takes the Lease from under the leader: it stops at once rather than
        // reconcile beside the new holder (the Deployment would restart it as a standby).
        let mut third = third;
        let leases = ctx.api::<Lease>();
        let mut lease = leases.get("cloudsso-mfa-operator").await.unwrap();
        let spec = lease.spec.as_mut().unwrap();
        spec.holder_identity = Some("intruder".into());
        spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        leases
            .replace("cloudsso-mfa-operator", &Default::default(), &lease)
            .await
            .expect("take the Lease over");
        let exit = third.wait_exit(Duration::from_secs(10)).await;
        assert!(!exit.success(), "a leader that lost its Lease must stop");
        assert!(
            std::fs::read_to_string(&third.log)
                .unwrap()
                .contains("error: lost leadership: Lease"),
            "{}",
            third.log_tail()
        );
        assert_eq!(lease_holder(&ctx).await.as_deref(), Some("intruder"), "the loser must not write the Lease back");
    })
    .await;
}

#[tokio::test]
async fn sigterm_lets_the_reconcile_in_flight_finish() {
    harness::with_namespace("shutdown", |ctx| async move {
        let (url, _state) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        // Every cloud call takes 1.5 s, so the reconcile below (read, write, read back, devices)
        // is still running when SIGTERM arrives.
        set_faults(&url, json!({"latencyMs": 1500})).await;
        let mut operator = ctx.start_operator("30s", &[]).await;
        operator.wait_until_ready().await;
        ctx.apply::<UserMfaSetting>(json!({"metadata": {"name": "alice"}, "spec": {
            "directoryId": DIRECTORY, "userId": ALICE, "userMfaAuthenticationSettings": "Disabled",
            "endpoint": url, "credentialsSecretRef": {"name": SECRET}}}))
            .await;
        eventually(
            "the reconcile to reach the cloud",
            WAIT,
            || async {
                let body = reqwest_get(&format!("{url}/_emulator/calls")).await;
                body.as_object().map_or(0, |actions| actions.len())
            },
            |actions| *actions >= 1,
        )
        .await;
        let signalled = Instant::now();
        operator.terminate();
        let exit = operator.wait_exit(Duration::from_secs(30)).await;
        let drained = signalled.elapsed();
        eprintln!("[measure] SIGTERM to exit with one reconcile in flight: {drained:?}");
        assert!(exit.success(), "{exit:?}\n{}", operator.log_tail());
        assert!(
            operator.logged("every reconcile in flight finished"),
            "{}",
            operator.log_tail()
        );
        // The write and its status both landed: nothing half-written.
        let state = state(&url).await;
        let alice = state["directories"][0]["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["userId"] == ALICE)
            .unwrap()
            .clone();
        assert_eq!(alice["userMfaAuthenticationSettings"], "Disabled");
        let object = ctx.api::<UserMfaSetting>().get("alice").await.unwrap();
        let status = serde_json::to_value(&object.status).unwrap();
        assert_eq!(
            status["observed"]["userMfaAuthenticationSettings"],
            "Disabled",
            "{status:#}\n{}",
            operator.log_tail()
        );
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(condition(&object.status, "Ready").unwrap().0, "True");
    })
    .await;
}

#[tokio::test]
async fn status_users_and_gauges_follow_changes_the_operator_makes_before_any_resync() {
    harness::with_namespace("census-follows", |ctx| async move {
        let (url, _state) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        // A resync far longer than the test: whatever moves here moved because of the changes.
        let operator = ctx.start_operator("10m", &[]).await;
        ctx.apply::<DirectoryMfaPolicy>(json!({"metadata": {"name": "dir"}, "spec": {
            "directoryId": DIRECTORY, "mfaAuthenticationSettings": "Byuser",
            "operationForRiskLogin": "Autonomous", "endpoint": url,
            "census": {"enabled": true}, "credentialsSecretRef": {"name": SECRET}}}))
            .await;
        // The seed has bob Disabled; the operator enables him (he has no device).
        ctx.apply::<UserMfaSetting>(user_setting("bob", &url, "bob", "Enabled"))
            .await;
        ctx.wait_ready::<UserMfaSetting>("bob", Some(&operator))
            .await;
        let expected = json!({"total": 3, "mfaDisabled": 0, "mfaEnabledWithoutDevice": 1});
        eventually(
            "status.users to count bob as enabled without a device",
            Duration::from_secs(30),
            || async { ctx.api::<DirectoryMfaPolicy>().get("dir").await.unwrap() },
            |p| serde_json::to_value(&p.status).unwrap()["users"] == expected,
        )
        .await;
        let directory = [("directory", DIRECTORY)];
        let metrics = operator.scrape().await;
        assert_eq!(
            metrics.value(&metric("directory_users_mfa_disabled"), &directory),
            Some(0.0)
        );
        assert_eq!(
            metrics.value(
                &metric("directory_users_mfa_enabled_without_device"),
                &directory
            ),
            Some(1.0)
        );

        // And back: the operator disables him again.
        ctx.apply::<UserMfaSetting>(user_setting("bob", &url, "bob", "Disabled"))
            .await;
        let expected = json!({"total": 3, "mfaDisabled": 1, "mfaEnabledWithoutDevice": 0});
        eventually(
            "status.users to count bob as disabled",
            Duration::from_secs(30),
            || async { ctx.api::<DirectoryMfaPolicy>().get("dir").await.unwrap() },
            |p| serde_json::to_value(&p.status).unwrap()["users"] == expected,
        )
        .await;
        operator.stop().await;
    })
    .await;
}
