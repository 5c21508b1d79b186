//! A tenant's own keys pointed at a hostile endpoint, end to end through a real kube-apiserver and
//! the operator process: a redirect is not followed, a huge or hostile error body leaves a
//! bounded one-line status, the endpoint never sees any key but the namespace's own, and its fake
//! throttling does not slow the same key's calls to the real endpoint.

mod common;
mod harness;
mod hostile;

use std::time::Duration;

use cloudsso_mfa_operator::api::{DirectoryMfaPolicy, UserMfaSetting};
use common::*;
use harness::{SECRET, WAIT, eventually, ready};
use serde_json::json;

/// The namespace's own key, in its Secret.
const TENANT_KEY: &str = "LTAI5tTenantOwnKey";
/// The operator's own key, in its environment: never to be sent to a tenant's endpoint.
const OPERATOR_KEY: &str = "LTAI5tOperatorOwnKey";

/// The longest status message: fixed words around at most three cloud strings of 256 chars.
const MAX_MESSAGE: usize = 1024;

fn operator_env() -> [(&'static str, &'static str); 2] {
    [
        ("ALIBABA_CLOUD_ACCESS_KEY_ID", OPERATOR_KEY),
        ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "operator-own-secret"),
    ]
}

fn policy(name: &str, url: &str) -> serde_json::Value {
    json!({"metadata": {"name": name}, "spec": {"directoryId": DIRECTORY, "endpoint": url,
        "credentialsSecretRef": {"name": SECRET}, "mfaAuthenticationSettings": "Enabled"}})
}

fn user(name: &str, url: &str) -> serde_json::Value {
    user_by_id(name, url, "u-00q8wbq42wiltcrk0001")
}

fn user_by_id(name: &str, url: &str, user_id: &str) -> serde_json::Value {
    json!({"metadata": {"name": name}, "spec": {"directoryId": DIRECTORY,
        "userId": user_id, "userMfaAuthenticationSettings": "Enabled",
        "endpoint": url, "credentialsSecretRef": {"name": SECRET}}})
}

fn assert_bounded_line(what: &str, text: &str) {
    assert!(
        text.chars().count() <= MAX_MESSAGE,
        "{what}: {} chars",
        text.chars().count()
    );
    assert!(!text.chars().any(char::is_control), "{what}: {text:?}");
}

/// Every request `server` saw was signed with the namespace's own key, and there was one.
fn assert_only_tenant_key(server: &hostile::Hostile) {
    let keys: Vec<Option<String>> = server
        .requests()
        .iter()
        .map(hostile::Seen::access_key_id)
        .collect();
    assert!(!keys.is_empty(), "the endpoint was never called");
    assert!(
        keys.iter().all(|key| key.as_deref() == Some(TENANT_KEY)),
        "keys seen: {keys:?}"
    );
}

/// Waits until the policy `corp` says Ready=False with `needle` in its message: (reason, message).
async fn not_ready_saying(ctx: &harness::TestContext, needle: &str) -> (String, String) {
    let failed = eventually(
        &format!("Ready=False saying {needle}"),
        WAIT,
        || ctx.get::<DirectoryMfaPolicy>("corp"),
        |p| {
            p.as_ref()
                .and_then(|p| ready(&p.status))
                .is_some_and(|(status, _, message)| status == "False" && message.contains(needle))
        },
    )
    .await;
    let (_, reason, message) = ready(&failed.unwrap().status).unwrap();
    (reason, message)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_a_capture_server_is_not_followed() {
    harness::with_namespace("hostile-redirect", |ctx| async move {
        let capture = hostile::serve(|_, _| hostile::Answer::json(200, json!({}))).await;
        let target = format!("{}/steal", capture.url);
        let redirecting = hostile::serve(move |_, _| hostile::Answer::redirect(&target)).await;
        ctx.credentials_secret(SECRET, TENANT_KEY, "tenant-secret")
            .await;
        let operator = ctx.start_operator("3s", &operator_env()).await;
        ctx.apply::<DirectoryMfaPolicy>(policy("corp", &redirecting.url))
            .await;
        let (reason, message) = not_ready_saying(&ctx, "redirect").await;
        eprintln!("Ready=False {reason}: {message}");
        assert!(
            message.contains("answered 302") && message.contains("not followed"),
            "{message}"
        );
        assert!(message.contains(&capture.url), "{message}");
        assert_bounded_line("status", &message);
        // Several resyncs later the capture server has still seen nothing.
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(
            capture.connections(),
            0,
            "the capture server was contacted\n{}",
            operator.log_tail()
        );
        assert_only_tenant_key(&redirecting);
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_8_mb_error_body_leaves_a_bounded_status() {
    harness::with_namespace("hostile-body", |ctx| async move {
        let huge = hostile::serve(|_, _| hostile::Answer::Stream {
            status: 400,
            total: 8 << 20,
            pace: Duration::from_millis(5),
        })
        .await;
        ctx.credentials_secret(SECRET, TENANT_KEY, "tenant-secret")
            .await;
        let mut operator = ctx.start_operator("3s", &operator_env()).await;
        ctx.apply::<UserMfaSetting>(user("alice", &huge.url)).await;
        let failed = eventually(
            "Ready=False naming the size",
            WAIT,
            || ctx.get::<UserMfaSetting>("alice"),
            |u| {
                u.as_ref()
                    .and_then(|u| ready(&u.status))
                    .is_some_and(|(status, _, message)| {
                        status == "False" && message.contains("larger than 1 MiB")
                    })
            },
        )
        .await;
        let (_, reason, message) = ready(&failed.unwrap().status).unwrap();
        eprintln!(
            "Ready=False {reason} ({} chars): {message}",
            message.chars().count()
        );
        assert_bounded_line("status", &message);
        let (streamed, finished) = huge.streamed().await;
        eprintln!("the endpoint wrote {streamed} of {} bytes", 8 << 20);
        assert!(!finished, "the operator read all 8 MB");
        assert!(streamed < 2 << 20, "{streamed} bytes written");
        for (reason, note) in ctx.events_for("alice").await {
            assert_bounded_line(&format!("Event {reason}"), &note);
        }
        assert!(operator.try_running(), "{}", operator.log_tail());
        assert_only_tenant_key(&huge);
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_error_message_is_cut_to_one_line_and_sees_only_the_tenant_key() {
    harness::with_namespace("hostile-message", |ctx| async move {
        // Under the body cap, but every string far over the status bound, with control bytes.
        let message = format!("{}\u{1b}[31m\r\nforged line", "m".repeat(600_000));
        let wordy = hostile::serve(move |_, _| {
            hostile::Answer::json(
                400,
                json!({"Code": format!("Forbidden.{}\u{7}", "c".repeat(5_000)),
                    "Message": message, "RequestId": "r\u{1b}".repeat(5_000)}),
            )
        })
        .await;
        ctx.credentials_secret(SECRET, TENANT_KEY, "tenant-secret")
            .await;
        let operator = ctx.start_operator("3s", &operator_env()).await;
        ctx.apply::<DirectoryMfaPolicy>(policy("corp", &wordy.url))
            .await;
        let (reason, message) = not_ready_saying(&ctx, "mmm").await;
        eprintln!("Ready=False {reason} ({} chars)", message.chars().count());
        assert_bounded_line("status", &message);
        assert!(message.contains('…'), "{message}");
        assert!(!message.contains("forged line"), "{message}");
        for (reason, note) in ctx.events_for("corp").await {
            assert_bounded_line(&format!("Event {reason}"), &note);
        }
        // A resync or two later, still only the tenant's key has been seen.
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_only_tenant_key(&wordy);
        operator.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_throttling_at_one_endpoint_does_not_slow_the_same_key_at_the_real_one() {
    harness::with_namespace("hostile-throttle", |ctx| async move {
        let (url, _emulator) = start_emulator().await;
        let extra: Vec<(String, String)> = (0..9)
            .map(|i| (format!("extra{i}"), format!("u-extra{i}")))
            .collect();
        let added = extra.clone();
        change_state(&url, move |s| {
            let users = s["directories"][0]["users"].as_array_mut().unwrap();
            for (name, id) in &added {
                users.push(json!({"userId": id, "userName": name, "userMfaAuthenticationSettings": "Disabled"}));
            }
        })
        .await;
        let throttling = hostile::serve(|_, _| hostile::Answer::throttling()).await;
        // One Secret, the real key, used at both endpoints.
        ctx.credentials_secret(SECRET, ACCESS_KEY_ID, ACCESS_KEY_SECRET)
            .await;
        let operator = ctx
            .start_operator_with("3s", &["--cloud-qps", "4"], &operator_env())
            .await;
        // Several squatters, so refusals keep coming while the real calls run.
        for i in 0..3 {
            let mut squatter = policy(&format!("squatter{i}"), &throttling.url);
            squatter["spec"]["directoryId"] = json!(format!("d-squat{i}"));
            ctx.apply::<DirectoryMfaPolicy>(squatter).await;
        }
        // Enough refusals for a limiter at that endpoint to fall to its floor (0.5/s).
        eventually(
            "the hostile endpoint refused eight calls",
            WAIT,
            || async { throttling.requests().len() },
            |seen| *seen >= 8,
        )
        .await;
        let refused_before = throttling.requests().len();
        let started = std::time::Instant::now();
        let users: Vec<(String, String)> = [
            ("alice", "u-00q8wbq42wiltcrk0001"),
            ("bob", "u-00q8wbq42wiltcrk0002"),
            ("carol", "u-00q8wbq42wiltcrk0003"),
        ]
        .into_iter()
        .map(|(name, id)| (name.to_string(), id.to_string()))
        .chain(extra)
        .collect();
        for (name, id) in &users {
            ctx.apply::<UserMfaSetting>(user_by_id(name, &url, id)).await;
        }
        for (name, _) in &users {
            ctx.wait_ready::<UserMfaSetting>(name, Some(&operator)).await;
        }
        let took = started.elapsed();
        let refused = throttling.requests().len() - refused_before;
        let body = reqwest_get(&format!("{url}/_emulator/calls")).await;
        let made: u64 = body
            .as_object()
            .unwrap()
            .values()
            .flat_map(|outcomes| outcomes.as_object().unwrap().values())
            .filter_map(|count| count.as_u64())
            .sum();
        eprintln!(
            "{} users Ready in {took:?}: {made} calls at the real endpoint, {refused} refusals at the hostile one meanwhile",
            users.len()
        );
        assert!(refused > 0, "the hostile endpoint was not called meanwhile");
        // ~43 calls at 4/s: 11 s. With the limiter shared with the throttled endpoint (cut to
        // 0.5/s and again by each refusal) it took 49 s when tried.
        assert!(took < Duration::from_secs(20), "{took:?}\n{}", operator.log_tail());
        // The squatter itself is told why it gets nowhere.
        let asked = std::time::Instant::now();
        eventually(
            "squatter0 Ready=False Throttled",
            WAIT,
            || ctx.get::<DirectoryMfaPolicy>("squatter0"),
            |p| {
                p.as_ref()
                    .and_then(|p| ready(&p.status))
                    .is_some_and(|(status, reason, _)| status == "False" && reason == "Throttled")
            },
        )
        .await;
        eprintln!("squatter0 said Throttled {:?} after the users were Ready", asked.elapsed());
        operator.stop().await;
    })
    .await;
}
