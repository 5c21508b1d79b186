//! The operator survives a kube-apiserver restart: its watches reconnect and new resources still
//! converge, and a leader whose renewals fail for less than its renew deadline keeps leading.
//! Needs the project's own control plane or this checkout's kind cluster (it restarts
//! kube-apiserver); skipped on other KUBECONFIG clusters. A test binary of its own, so that the
//! restart disturbs no other test.

mod common;
mod harness;

use std::time::Duration;

use cloudsso_mfa_operator::api::UserMfaSetting;
use common::*;
use harness::{SECRET, eventually, is_ready, user_setting};

#[tokio::test]
async fn watches_reconnect_after_the_api_server_restarts() {
    let cluster = harness::cluster().await;
    if !cluster.local && !cluster.kind {
        eprintln!("skipped: KUBECONFIG names a cluster this test must not restart");
        return;
    }
    harness::with_namespace("apiserver-restart", |ctx| async move {
        let (url, _state) = start_emulator().await;
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        // Lease timings longer than the outage (stopping, 2 s down, starting: ~10-15 s here); a
        // leader that cannot renew within its deadline exits by design (tests/e2e_operations.rs).
        let args = [
            "--leader-election",
            "--leader-election-namespace",
            ctx.namespace.as_str(),
            "--lease-duration",
            "60s",
            "--lease-renew-deadline",
            "45s",
            "--lease-retry-period",
            "2s",
        ];
        let mut operator = ctx.start_operator_with("30s", &args, &[]).await;
        let ready = |name: &'static str| {
            let api = ctx.api::<UserMfaSetting>();
            async move {
                api.get_opt(name)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|o| is_ready(&o))
            }
        };
        ctx.apply::<UserMfaSetting>(user_setting("before", &url, "alice", "Enabled"))
            .await;
        eventually(
            "before Ready",
            Duration::from_secs(40),
            || ready("before"),
            |r| *r,
        )
        .await;

        let stopped = std::time::Instant::now();
        let restart = tokio::task::spawn_blocking(move || {
            if cluster.kind {
                harness::restart_kind_apiserver(Duration::from_secs(2))
            } else {
                harness::restart_local_apiserver(Duration::from_secs(2))
            }
        });
        restart.await.expect("restart kube-apiserver");
        eprintln!("[measure] kube-apiserver outage: {:?}", stopped.elapsed());

        ctx.apply::<UserMfaSetting>(user_setting("after", &url, "carol", "Enabled"))
            .await;
        let reconnected = tokio::time::timeout(Duration::from_secs(60), async {
            while !ready("after").await {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
        .await;
        assert!(
            reconnected.is_ok(),
            "a resource created after the restart was not reconciled in 60 s\n{}",
            operator.log_tail()
        );
        assert!(
            operator.try_running(),
            "the operator exited across the restart\n{}",
            operator.log_tail()
        );
        assert_eq!(
            operator
                .scrape()
                .await
                .value("cloudsso_mfa_operator_leader", &[]),
            Some(1.0)
        );
        operator.terminate();
        assert!(operator.wait_exit(Duration::from_secs(20)).await.success());
    })
    .await;
}
