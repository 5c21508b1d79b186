//! The cloud client over real HTTP against the emulator: typed calls, retry of retryable failures
//! with backoff, honouring the answers' retry-after, terminal errors not retried, the adaptive
//! rate under a quota, RRSA.

mod common;
mod hostile;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use cloudsso_mfa_operator::cloud::cloudsso::UserMfaUpdate;
use cloudsso_mfa_operator::cloud::{
    self, ApiClient, ApiErrorKind, ClientConfig, CloudSsoClient, CredentialSource, Credentials,
    Endpoint, ErrorClass, ImsClient, cloudsso, ims,
};
use common::*;
use serde_json::json;

fn config(qps: u32) -> ClientConfig {
    ClientConfig {
        qps: NonZeroU32::new(qps).unwrap(),
        max_attempts: 3,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(1500),
        timeout: Duration::from_secs(5),
    }
}

fn client_with(url: &str, source: CredentialSource, config: ClientConfig) -> CloudSsoClient {
    CloudSsoClient::new(ApiClient::new(
        cloud::http_client().unwrap(),
        Endpoint::parse(url).unwrap(),
        cloudsso::VERSION,
        Arc::new(source),
        cloud::rate_limiter(config.qps),
        config,
    ))
}

fn client(url: &str, secret: &str, config: ClientConfig) -> CloudSsoClient {
    client_with(
        url,
        CredentialSource::Static(Credentials::new(ACCESS_KEY_ID, secret, None).unwrap()),
        config,
    )
}

#[tokio::test]
async fn typed_calls_read_and_write_the_cloud() {
    let (url, _state) = start_emulator().await;
    let sso = client(&url, ACCESS_KEY_SECRET, config(50));
    let info = sso.get_mfa_setting_info(DIRECTORY).await.unwrap();
    assert_eq!(
        info.mfa_authentication_advance_settings.as_deref(),
        Some("Byuser")
    );
    sso.update_mfa_settings(&cloudsso::MfaSettingUpdate {
        directory_id: DIRECTORY.into(),
        mfa_authentication_settings: "OnlyRiskyLogin".into(),
        operation_for_risk_login: Some("EnforceVerify".into()),
        allowed_verification_types: Some(vec!["TOTP".into()]),
    })
    .await
    .unwrap();
    let info = sso.get_mfa_setting_info(DIRECTORY).await.unwrap();
    assert_eq!(
        info.operation_for_risk_login.as_deref(),
        Some("EnforceVerify")
    );
    assert_eq!(
        info.allowed_verification_types,
        Some(vec!["TOTP".to_string()])
    );

    let bob = sso
        .find_user_by_name(DIRECTORY, "bob")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.user_id, "u-00q8wbq42wiltcrk0002");
    assert!(
        sso.find_user_by_name(DIRECTORY, "bo")
            .await
            .unwrap()
            .is_none()
    );
    sso.update_user_mfa_setting(&UserMfaUpdate {
        directory_id: DIRECTORY.into(),
        user_id: bob.user_id.clone(),
        user_mfa_authentication_settings: "Enabled".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        sso.get_user_mfa_setting(DIRECTORY, &bob.user_id)
            .await
            .unwrap()
            .user_mfa_authentication_settings
            .as_deref(),
        Some("Enabled")
    );
    let devices = sso
        .list_mfa_devices(DIRECTORY, "u-00q8wbq42wiltcrk0001")
        .await
        .unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(
        sso.get_user(DIRECTORY, "u-00q8wbq42wiltcrk0003")
            .await
            .unwrap()
            .user_name,
        "carol"
    );

    let ims = ImsClient::new(ApiClient::new(
        cloud::http_client().unwrap(),
        Endpoint::parse(&url).unwrap(),
        ims::VERSION,
        Arc::new(CredentialSource::Static(
            Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).unwrap(),
        )),
        cloud::rate_limiter(config(50).qps),
        config(50),
    ));
    let bob_ram = ims
        .get_user_mfa_info("bob@example.onaliyun.com")
        .await
        .unwrap();
    assert!(bob_ram.is_mfa_enable);
    assert_eq!(bob_ram.mfa_device.unwrap().device_type, "VMFA");
}

#[tokio::test]
async fn terminal_errors_are_typed_and_not_retried() {
    let (url, _state) = start_emulator().await;
    let sso = client(&url, ACCESS_KEY_SECRET, config(50));
    let error = sso
        .get_user_mfa_setting(DIRECTORY, "u-nobody")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("EntityNotExists.User"));
    assert_eq!(error.api_kind(), Some(ApiErrorKind::NotFound));
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert_eq!(
        calls(
            &url,
            "GetUserMFAAuthenticationSettings",
            "EntityNotExists.User"
        )
        .await,
        1
    );

    let wrong = client(&url, "not-the-secret", config(50));
    let error = wrong.get_mfa_setting_info(DIRECTORY).await.unwrap_err();
    assert_eq!(error.code(), Some("SignatureDoesNotMatch"));
    assert_eq!(error.api_kind(), Some(ApiErrorKind::CredentialsInvalid));
    assert!(error.to_string().contains("request id"), "{error}");
    assert_eq!(
        calls(
            &url,
            "GetMFAAuthenticationSettingInfo",
            "SignatureDoesNotMatch"
        )
        .await,
        1
    );
}

/// An emulator with `faults` on, and a client of it with `config`.
async fn faulty(faults: serde_json::Value, config: ClientConfig) -> (String, CloudSsoClient) {
    let (url, _state) = start_emulator().await;
    set_faults(&url, faults).await;
    let sso = client(&url, ACCESS_KEY_SECRET, config);
    (url, sso)
}

/// One settings read from an emulator with `faults` on (three attempts): its URL and the error.
async fn failed_read(faults: serde_json::Value) -> (String, cloud::CloudError) {
    let (url, sso) = faulty(faults, config(50)).await;
    let error = sso.get_mfa_setting_info(DIRECTORY).await.unwrap_err();
    (url, error)
}

#[tokio::test]
async fn server_errors_are_retried_up_to_the_limit() {
    let (url, error) = failed_read(json!({"errorRate": 1})).await;
    assert_eq!(error.code(), Some("ServiceUnavailable"));
    assert_eq!(
        calls(
            &url,
            "GetMFAAuthenticationSettingInfo",
            "ServiceUnavailable"
        )
        .await,
        3
    );
}

#[tokio::test]
async fn dropped_connections_are_transport_errors_and_retried() {
    let (url, error) = failed_read(json!({"dropRate": 1})).await;
    assert!(
        matches!(error, cloud::CloudError::Transport { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(
        calls(&url, "GetMFAAuthenticationSettingInfo", "dropped").await,
        3
    );
}

#[tokio::test]
async fn throttling_is_retried_after_the_answers_retry_after() {
    // The client's own limit is set too high on purpose, so the emulator's quota bites.
    let (url, sso) = faulty(json!({"qps": 1}), config(50)).await;
    for _ in 0..3 {
        sso.get_mfa_setting_info(DIRECTORY).await.unwrap();
    }
    assert!(calls(&url, "GetMFAAuthenticationSettingInfo", "Throttling.User").await >= 1);
    assert_eq!(
        calls(&url, "GetMFAAuthenticationSettingInfo", "ok").await,
        3
    );
}

#[tokio::test]
async fn the_client_side_limit_keeps_under_the_quota() {
    let no_retry = ClientConfig {
        max_attempts: 1,
        ..config(2)
    };
    let (url, sso) = faulty(json!({"qps": 5}), no_retry).await;
    let results =
        futures::future::join_all((0..8).map(|_| sso.get_mfa_setting_info(DIRECTORY))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        calls(&url, "GetMFAAuthenticationSettingInfo", "Throttling.User").await,
        0
    );
}

#[tokio::test]
async fn under_a_quota_the_client_backs_off_instead_of_hammering() {
    // The configured rate is four times the quota: only adapting to the refusals keeps the
    // attempts near what the cloud accepts.
    let (url, sso) = faulty(
        json!({"qps": 5}),
        ClientConfig {
            max_attempts: 4,
            ..config(20)
        },
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    let callers = (0..8).map(|_| {
        let sso = sso.clone();
        async move {
            while tokio::time::Instant::now() < deadline {
                // Some calls run out of attempts; that is the point of the quota, not a failure.
                let _ = sso.get_mfa_setting_info(DIRECTORY).await;
            }
        }
    });
    futures::future::join_all(callers).await;
    let action = "GetMFAAuthenticationSettingInfo";
    let accepted = calls(&url, action, "ok").await;
    let attempted = all_calls(&url, action).await;
    let throttled = calls(&url, action, "Throttling.User").await;
    eprintln!("attempted {attempted}, accepted {accepted}, throttled {throttled}");
    assert_eq!(attempted, accepted + throttled);
    assert!(
        attempted * 2 <= accepted * 3,
        "attempted {attempted} calls for {accepted} accepted"
    );
    // Backing off must not mean giving up the quota: most of 5/s over 12 s gets through.
    assert!(accepted >= 30, "only {accepted} calls accepted");
}

#[tokio::test]
async fn rrsa_exchanges_the_oidc_token_once_and_signs_with_sts_credentials() {
    let (url, _state) = start_emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcCJ9.c2ln\n").unwrap();
    let vars = [
        (
            "ALIBABA_CLOUD_ROLE_ARN",
            "acs:ram::1234:role/cloudsso-mfa-operator".to_string(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            "acs:ram::1234:oidc-provider/ack-rrsa".to_string(),
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("ALIBABA_CLOUD_STS_ENDPOINT", url.clone()),
    ];
    // RRSA from these variables, read afresh by each source (the token file is read per exchange).
    let rrsa = || {
        CredentialSource::from_lookup(
            |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            },
            cloud::http_client().unwrap(),
        )
        .unwrap()
    };
    let source = rrsa();
    let sso = client_with(&url, source, config(50));
    for _ in 0..3 {
        sso.get_mfa_setting_info(DIRECTORY).await.unwrap();
    }
    assert_eq!(calls(&url, "AssumeRoleWithOIDC", "ok").await, 1);
    assert_eq!(
        calls(&url, "GetMFAAuthenticationSettingInfo", "ok").await,
        3
    );

    std::fs::write(&token_file, "not-a-jwt").unwrap();
    let bad = rrsa();
    let error = client_with(&url, bad, config(50))
        .get_mfa_setting_info(DIRECTORY)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("InvalidParameter.OIDCToken"),
        "{error}"
    );
    assert_eq!(error.class(), ErrorClass::Terminal);
}

#[tokio::test]
async fn a_name_asked_while_a_listing_runs_is_resolved_not_reported_missing() {
    use cloudsso_mfa_operator::controller::keys::DirectoryKey;
    use cloudsso_mfa_operator::controller::state::NameResolver;
    use std::collections::HashSet;
    let (url, _state) = start_emulator_with(large_seed(300)).await;
    // Slow answers, so the second name is asked while the first batch is listing.
    set_faults(&url, json!({"latencyMs": 100})).await;
    let sso = client(&url, ACCESS_KEY_SECRET, config(50));
    let directory = DirectoryKey::new(&Endpoint::parse(&url).unwrap(), DIRECTORY);
    let resolver = NameResolver::default();
    let ten: HashSet<String> = (0..10).map(|i| format!("user{i}")).collect();
    let batch = resolver.resolve(&sso, &directory, "user1", || ten.clone());
    let late = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        resolver
            .resolve(&sso, &directory, "user250", HashSet::new)
            .await
    };
    let (batch, late) = tokio::join!(batch, late);
    assert_eq!(batch.unwrap().as_deref(), Some("u-large1"));
    assert_eq!(late.unwrap().as_deref(), Some("u-large250"));
    // The batch's ten names came from the listing's first page; the late one from its own call.
    assert_eq!(
        resolver.known(&directory, "user9").as_deref(),
        Some("u-large9")
    );
    assert_eq!(all_calls(&url, "ListUsers").await, 2);
    // A name the directory lacks is missing, and not asked again at once.
    let nobody = resolver.resolve(&sso, &directory, "nobody", HashSet::new);
    assert_eq!(nobody.await.unwrap(), None);
    let again = resolver.resolve(&sso, &directory, "nobody", HashSet::new);
    assert_eq!(again.await.unwrap(), None);
    assert_eq!(all_calls(&url, "ListUsers").await, 3);
}

// ---- A hostile endpoint: what a tenant's `endpoint` may answer. ----

/// A client of `url` with the test key and no retries beyond `config`'s.
fn hostile_client(url: &str, config: ClientConfig) -> CloudSsoClient {
    client(url, ACCESS_KEY_SECRET, config)
}

/// The longest error text a person can be shown: the fixed words around at most three
/// cloud-supplied strings of 256 characters each.
const MAX_ERROR_TEXT: usize = 1024;

fn assert_one_bounded_line(text: &str) {
    assert!(
        text.chars().count() <= MAX_ERROR_TEXT,
        "{} chars",
        text.len()
    );
    assert!(!text.chars().any(char::is_control), "{text:?}");
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_says_so() {
    let capture = hostile::serve(|_, _| hostile::Answer::json(200, json!({}))).await;
    let target = format!("{}/steal?{}", capture.url, "x".repeat(5_000));
    let redirecting = hostile::serve(move |_, _| hostile::Answer::redirect(&target)).await;
    let sso = hostile_client(&redirecting.url, config(50));
    let error = sso.get_mfa_setting_info(DIRECTORY).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("answered 302")
            && text.contains("redirect to")
            && text.contains("not followed"),
        "{text}"
    );
    assert!(text.contains(&capture.url), "the target is named: {text}");
    assert_one_bounded_line(&text);
    assert!(text.chars().count() < 400, "{} chars: {text}", text.len());
    assert!(!error.is_retryable());
    // Give a follow-up request time to arrive, were one sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(capture.connections(), 0, "the capture server was contacted");
    assert_eq!(redirecting.requests().len(), 1, "a redirect is not retried");
}

#[tokio::test]
async fn an_8_mb_error_body_is_not_read_past_1_mib() {
    const TOTAL: usize = 8 << 20;
    let huge = hostile::serve(|_, _| hostile::Answer::Stream {
        status: 400,
        total: TOTAL,
        pace: Duration::from_millis(5),
    })
    .await;
    let sso = hostile_client(&huge.url, config(50));
    let error = sso.get_mfa_setting_info(DIRECTORY).await.unwrap_err();
    let text = error.to_string();
    eprintln!("{} chars: {text}", text.chars().count());
    assert!(text.contains("larger than 1 MiB"), "{text}");
    assert_one_bounded_line(&text);
    assert!(text.chars().count() < 300);
    assert!(!error.is_retryable());
    // The client hung up: the server could not write the rest.
    let (streamed, finished) = huge.streamed().await;
    eprintln!("the server wrote {streamed} of {TOTAL} bytes before the client closed");
    assert!(!finished, "all 8 MB were accepted");
    // 1 MiB read, plus the chunks in flight when the client closed.
    assert!(streamed < 2 << 20, "{streamed} bytes written");
    assert_eq!(huge.requests().len(), 1, "refused, not retried");
}

#[tokio::test]
async fn a_declared_8_mb_body_is_refused_unread_and_a_big_message_is_cut() {
    let declared = hostile::serve(|_, _| hostile::Answer::Full {
        status: 500,
        headers: vec![],
        body: vec![b' '; 8 << 20],
    })
    .await;
    let error = hostile_client(&declared.url, config(50))
        .get_mfa_setting_info(DIRECTORY)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Content-Length 8388608, not read"),
        "{error}"
    );
    assert_eq!(
        declared.requests().len(),
        1,
        "a 5xx this large is not retried"
    );

    // Under the cap, the cloud's own strings are cut to one bounded line.
    let message = format!("{}\u{1b}[31m\r\nevil", "m".repeat(900_000));
    let wordy = hostile::serve(move |_, _| {
        hostile::Answer::json(
            400,
            json!({"Code": format!("Forbidden.{}\u{7}", "c".repeat(10_000)), "Message": message, "RequestId": "r\u{1b}".repeat(5_000)}),
        )
    })
    .await;
    let error = hostile_client(&wordy.url, config(50))
        .get_mfa_setting_info(DIRECTORY)
        .await
        .unwrap_err();
    let text = error.to_string();
    eprintln!("{} chars from a 900 KB message", text.chars().count());
    assert_one_bounded_line(&text);
    assert!(text.contains("m…"), "{text}");
}

#[tokio::test]
async fn fake_throttling_at_one_endpoint_does_not_slow_the_same_key_at_another() {
    use cloudsso_mfa_operator::controller::clients::CloudClients;
    use cloudsso_mfa_operator::telemetry::Metrics;
    let (url, _state) = start_emulator().await;
    let throttling = hostile::serve(|_, _| hostile::Answer::throttling()).await;
    let once = ClientConfig {
        max_attempts: 1,
        ..config(20)
    };
    let clients = CloudClients::new(
        cloud::http_client().unwrap(),
        Err("no operator credentials in this test".into()),
        once,
        Arc::new(Metrics::new()),
    );
    // Two namespaces' Secrets holding the same key: one points it at its own endpoint.
    let key = || {
        Arc::new(CredentialSource::Static(
            Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET, None).unwrap(),
        ))
    };
    let hostile = clients.cloudsso(Endpoint::parse(&throttling.url).unwrap(), key());
    let real = clients.cloudsso(Endpoint::parse(&url).unwrap(), key());
    // Long enough for four halvings (one a second): 20/s to 1.25/s, were the limiter shared.
    let until = tokio::time::Instant::now() + Duration::from_millis(4_200);
    while tokio::time::Instant::now() < until {
        let error = hostile.get_mfa_setting_info(DIRECTORY).await.unwrap_err();
        assert_eq!(error.code(), Some("Throttling.User"));
    }
    let refused = throttling.requests().len();
    // The hostile endpoint's own calls were slowed: far fewer than 84 at 20/s.
    assert!(
        refused < 50,
        "{refused} calls in 4.2 s: the limiter did not adapt"
    );
    let started = std::time::Instant::now();
    for _ in 0..20 {
        real.get_mfa_setting_info(DIRECTORY).await.unwrap();
    }
    let took = started.elapsed();
    eprintln!("{refused} throttled calls; then 20 calls elsewhere took {took:?}");
    // 20 calls at 20/s take 0.95 s; from a shared limiter cut to 1.25/s, climbing 1/s each
    // second, they would take about 5 s.
    assert!(took < Duration::from_millis(2_500), "{took:?}");
}

/// ListUsers answers: an empty page that names `token(index)` as the next.
async fn endless_listing(token: fn(usize) -> String) -> hostile::Hostile {
    hostile::serve(move |index, _| {
        hostile::Answer::json(
            200,
            json!({"Users": [{"UserId": format!("u-{index}"), "UserName": format!("n{index}")}],
                "NextToken": token(index), "IsTruncated": true, "RequestId": "r"}),
        )
    })
    .await
}

#[tokio::test]
async fn a_next_token_that_never_ends_stops_at_the_page_cap() {
    let endless = endless_listing(|index| format!("t{index}")).await;
    let sso = hostile_client(&endless.url, config(1000));
    let error = sso.list_all_users(DIRECTORY, None).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("did not end after 2000 pages"), "{text}");
    assert_eq!(endless.requests().len(), cloudsso::MAX_PAGES);
    assert!(!error.is_retryable());

    // The same token again ends it at once.
    let repeating = endless_listing(|_| "again".to_string()).await;
    let sso = hostile_client(&repeating.url, config(1000));
    let error = sso.find_user_by_name(DIRECTORY, "alice").await.unwrap_err();
    assert!(error.to_string().contains("sent before"), "{error}");
    assert_eq!(repeating.requests().len(), 2);
}
