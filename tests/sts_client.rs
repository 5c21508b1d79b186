//! STS GetCallerIdentity through the typed client against an in-process emulator: each seeded key
//! answers for its own account, a key minted by RRSA for its role's account, an unknown key gets
//! the gateway's error.

mod common;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use cloudsso_mfa_operator::cloud::{
    self, ApiClient, ApiErrorKind, ClientConfig, CredentialSource, Credentials, Endpoint,
    ErrorClass, sts,
};
use cloudsso_mfa_operator::emulator::Seed;
use common::*;

const TEAM_A_ACCOUNT: &str = "5012345678901234";
const TEAM_B_ACCOUNT: &str = "5098765432109876";

fn seed() -> Seed {
    Seed::parse(
        &serde_json::json!({"accessKeys": [
            {"accessKeyId": "LTAI5tTeamA", "accessKeySecret": "secret-a",
             "accountId": TEAM_A_ACCOUNT, "userName": "mfa-operator"},
            {"accessKeyId": "LTAI5tTeamB", "accessKeySecret": "secret-b",
             "accountId": TEAM_B_ACCOUNT},
            {"accessKeyId": "LTAI5tNoAccount", "accessKeySecret": "secret-c"}]})
        .to_string(),
        "sts test seed",
    )
    .expect("sts test seed is valid")
}

fn sts_client(url: &str, source: CredentialSource) -> ApiClient {
    let config = ClientConfig {
        qps: NonZeroU32::new(50).unwrap(),
        max_attempts: 2,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
    };
    ApiClient::new(
        cloud::http_client().unwrap(),
        Endpoint::parse(url).unwrap(),
        sts::VERSION,
        Arc::new(source),
        cloud::rate_limiter(config.qps),
        config,
    )
}

fn key(id: &str, secret: &str) -> CredentialSource {
    CredentialSource::Static(Credentials::new(id, secret, None).unwrap())
}

#[tokio::test]
async fn two_keys_of_two_accounts_get_their_two_account_ids() {
    let (url, _state) = start_emulator_with(seed()).await;
    let a = sts::get_caller_identity(&sts_client(&url, key("LTAI5tTeamA", "secret-a")))
        .await
        .unwrap();
    assert_eq!(a.account_id, TEAM_A_ACCOUNT);
    assert_eq!(a.identity_type, "RAMUser");
    assert_eq!(
        a.arn,
        format!("acs:ram::{TEAM_A_ACCOUNT}:user/mfa-operator")
    );
    assert!(!a.user_id.is_empty());

    let b = sts::get_caller_identity(&sts_client(&url, key("LTAI5tTeamB", "secret-b")))
        .await
        .unwrap();
    assert_eq!(b.account_id, TEAM_B_ACCOUNT);
    assert_eq!(b.identity_type, "Account");
    assert_eq!(b.arn, format!("acs:ram::{TEAM_B_ACCOUNT}:root"));

    // Without an accountId in the seed: the emulator's one default account.
    let c = sts::get_caller_identity(&sts_client(&url, key("LTAI5tNoAccount", "secret-c")))
        .await
        .unwrap();
    assert_eq!(
        c.account_id,
        cloudsso_mfa_operator::emulator::seed::DEFAULT_ACCOUNT_ID
    );
    assert_eq!(calls(&url, "GetCallerIdentity", "ok").await, 3);
}

#[tokio::test]
async fn an_unknown_key_gets_the_gateway_error_once() {
    let (url, _state) = start_emulator_with(seed()).await;
    let error = sts::get_caller_identity(&sts_client(&url, key("LTAI5tNobody", "secret-a")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("InvalidAccessKeyId.NotFound"));
    assert_eq!(error.api_kind(), Some(ApiErrorKind::CredentialsInvalid));
    assert_eq!(error.class(), ErrorClass::Terminal);
    // Terminal: not retried.
    assert_eq!(
        calls(&url, "GetCallerIdentity", "InvalidAccessKeyId.NotFound").await,
        1
    );
    // A known key with the wrong secret is not taken for its account either.
    let error = sts::get_caller_identity(&sts_client(&url, key("LTAI5tTeamA", "secret-b")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("SignatureDoesNotMatch"));
}

#[tokio::test]
async fn an_rrsa_session_belongs_to_the_account_of_its_role() {
    let (url, _state) = start_emulator_with(seed()).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJvcCJ9.c2ln\n").unwrap();
    let vars = [
        (
            "ALIBABA_CLOUD_ROLE_ARN",
            format!("acs:ram::{TEAM_B_ACCOUNT}:role/cloudsso-mfa-operator"),
        ),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            format!("acs:ram::{TEAM_B_ACCOUNT}:oidc-provider/ack-rrsa"),
        ),
        (
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("ALIBABA_CLOUD_STS_ENDPOINT", url.clone()),
    ];
    let source = CredentialSource::from_lookup(
        |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        },
        cloud::http_client().unwrap(),
    )
    .unwrap();
    let identity = sts::get_caller_identity(&sts_client(&url, source))
        .await
        .unwrap();
    assert_eq!(identity.account_id, TEAM_B_ACCOUNT);
    assert_eq!(identity.identity_type, "AssumedRoleUser");
    assert!(
        identity.arn.starts_with(&format!(
            "acs:ram::{TEAM_B_ACCOUNT}:assumed-role/cloudsso-mfa-operator/"
        )),
        "{}",
        identity.arn
    );
}
