//! What the operator costs the cloud, through the real API server and an emulator with a large
//! directory: only managed users are read until a policy asks for the census, the budget
//! stretches the resync when the census does not fit in it, many userNames resolve from the
//! directory's listing, and a restarted operator resolves no name again.

mod common;
mod harness;

use std::time::{Duration, Instant};

use cloudsso_mfa_operator::api::{DirectoryMfaPolicy, UserMfaSetting};
use common::*;
use harness::{SECRET, WAIT, eventually};
use serde_json::json;

const DIRECTORY_USERS: usize = 300;

fn by_id(name: &str, url: &str, user_id: &str, setting: &str) -> serde_json::Value {
    json!({"metadata": {"name": name}, "spec": {
        "directoryId": DIRECTORY, "userId": user_id, "userMfaAuthenticationSettings": setting,
        "endpoint": url, "credentialsSecretRef": {"name": SECRET}}})
}

fn policy(url: &str, census: bool) -> serde_json::Value {
    json!({"metadata": {"name": "dir"}, "spec": {
        "directoryId": DIRECTORY, "mfaAuthenticationSettings": "Byuser",
        "census": {"enabled": census},
        "endpoint": url, "credentialsSecretRef": {"name": SECRET}}})
}

#[tokio::test]
async fn three_users_in_a_large_directory_cost_nothing_for_the_others_until_the_census_is_asked_for()
 {
    harness::with_namespace("cost-three", |ctx| async move {
        let (url, _state) = start_emulator_with(large_seed(DIRECTORY_USERS)).await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        let operator = ctx
            .start_operator_with("3s", &["--cloud-qps", "100"], &[])
            .await;
        ctx.apply::<DirectoryMfaPolicy>(policy(&url, false)).await;
        // user1 already Enabled; user2 changes to Disabled; user3 (by name) changes to Enabled.
        ctx.apply::<UserMfaSetting>(by_id("one", &url, "u-large1", "Enabled"))
            .await;
        ctx.apply::<UserMfaSetting>(by_id("two", &url, "u-large2", "Disabled"))
            .await;
        ctx.apply::<UserMfaSetting>(harness::user_setting("three", &url, "user3", "Enabled"))
            .await;
        ctx.wait_ready::<DirectoryMfaPolicy>("dir", Some(&operator))
            .await;
        for name in ["one", "two", "three"] {
            ctx.wait_ready::<UserMfaSetting>(name, Some(&operator)).await;
        }
        // A few resyncs of the three, counted from when all were Ready.
        let ready_calls = all_calls(&url, "ListMFADevicesForUser").await;
        let ready_settings = all_calls(&url, "GetUserMFAAuthenticationSettings").await;
        let ready_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(8)).await;
        let elapsed = ready_at.elapsed().as_secs_f64();
        // Up to Ready each of the three was read about once; after, a user is read at most once
        // per freshness window (0.9 x 3 s) and its pass comes at most once per half resync. The
        // other 297 users would cost 297 reads each.
        let bound = (3.0 * (elapsed / 1.5 + 2.0)) as u64;
        assert!(ready_calls <= 6 && ready_settings <= 6, "{ready_calls} {ready_settings} reads to Ready");
        let devices = all_calls(&url, "ListMFADevicesForUser").await - ready_calls;
        let settings = all_calls(&url, "GetUserMFAAuthenticationSettings").await - ready_settings;
        assert!(
            devices <= bound,
            "ListMFADevicesForUser {devices} calls in {elapsed:.0}s after Ready for 3 managed users (bound {bound})"
        );
        assert!(
            settings > 0 && settings <= bound,
            "GetUserMFAAuthenticationSettings {settings} calls in {elapsed:.0}s after Ready (bound {bound})"
        );
        // One filtered call resolved the one name; no census paged the directory.
        let listed: Vec<String> = operator
            .log_lines()
            .into_iter()
            .filter(|line| line.to_string().contains("ListUsers"))
            .map(|line| line.to_string())
            .collect();
        // (Answered calls: a request the client retried after a broken connection is no cost.)
        assert_eq!(calls(&url, "ListUsers", "ok").await, 1, "{listed:#?}");
        let dir = ctx.get::<DirectoryMfaPolicy>("dir").await.unwrap();
        let status = dir.status.unwrap();
        assert_eq!(status.users, None, "no census unless asked for");
        let resync = status.resync.expect("status.resync");
        assert_eq!((resync.requested_seconds, resync.effective_seconds), (3, 3));
        assert_eq!(resync.message, None);
        let directory = [("directory", DIRECTORY)];
        assert_eq!(
            operator
                .scrape()
                .await
                .value("cloudsso_mfa_operator_directory_users", &directory),
            None
        );

        // Asked for: every user is read, and 3 + 2 x 297 calls do not fit in 3 s at 80 % of
        // 100/s, so the budget stretches the resync and says so.
        ctx.apply::<DirectoryMfaPolicy>(policy(&url, true)).await;
        let stretched = eventually(
            "the census to count every user and the budget to stretch the resync",
            Duration::from_secs(60),
            || async { ctx.get::<DirectoryMfaPolicy>("dir").await.unwrap() },
            |p| {
                let status = p.status.as_ref();
                status.and_then(|s| s.users).map(|u| u.total) == Some(DIRECTORY_USERS as u64)
                    && status
                        .and_then(|s| s.resync.as_ref())
                        .is_some_and(|r| r.effective_seconds >= 7)
            },
        )
        .await;
        let resync = stretched.status.unwrap().resync.unwrap();
        assert!(
            resync.calls_per_resync >= 597,
            "calls per resync {}",
            resync.calls_per_resync
        );
        let message = resync.message.expect("a message says why");
        assert!(message.contains("resources are read every"), "{message}");
        let metrics = operator.scrape().await;
        assert!(
            metrics.value("cloudsso_mfa_operator_effective_resync_seconds", &[]) >= Some(7.0)
        );
        assert_eq!(
            metrics.value("cloudsso_mfa_operator_directory_users", &directory),
            Some(DIRECTORY_USERS as f64)
        );
        assert!(all_calls(&url, "ListMFADevicesForUser").await >= DIRECTORY_USERS as u64);
        assert!(operator.logged("resources are read every"));
        operator.stop().await;
    })
    .await;
}

#[tokio::test]
async fn many_names_resolve_from_the_listing_and_a_restarted_operator_resolves_none_again() {
    harness::with_namespace("cost-names", |ctx| async move {
        let (url, _state) = start_emulator_with(large_seed(DIRECTORY_USERS)).await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        let names: Vec<String> = (0..40).map(|i| format!("user{i}")).collect();
        for name in &names {
            // Each asks for what the seed has: no writes, only resolution and reads.
            let setting = if name.trim_start_matches("user").parse::<usize>().unwrap() % 3 == 0 {
                "Disabled"
            } else {
                "Enabled"
            };
            ctx.apply::<UserMfaSetting>(harness::user_setting(name, &url, name, setting))
                .await;
        }
        let operator = ctx
            .start_operator_with("30s", &["--cloud-qps", "100"], &[])
            .await;
        for name in &names {
            let user = ctx
                .wait_ready::<UserMfaSetting>(name, Some(&operator))
                .await;
            let expected = format!("u-large{}", name.trim_start_matches("user"));
            assert_eq!(
                user.status.unwrap().user_id.as_deref(),
                Some(expected.as_str())
            );
        }
        // 40 names in a directory of 300: the listing's 3 pages (at most twice, if names came
        // in before the operator saw them all), not 40 filtered calls.
        let listed = all_calls(&url, "ListUsers").await;
        assert!(listed <= 6, "ListUsers {listed} calls for 40 names");
        operator.stop().await;

        // A new process reads the resolved ids back from status.
        let reads_before = all_calls(&url, "GetUserMFAAuthenticationSettings").await;
        let operator = ctx
            .start_operator_with("30s", &["--cloud-qps", "100"], &[])
            .await;
        eventually(
            "the new operator to read every user again",
            WAIT,
            || async { all_calls(&url, "GetUserMFAAuthenticationSettings").await },
            |reads| *reads >= reads_before + names.len() as u64,
        )
        .await;
        assert_eq!(
            all_calls(&url, "ListUsers").await,
            listed,
            "a restart resolved names again"
        );
        operator.stop().await;
    })
    .await;
}
