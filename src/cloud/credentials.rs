//! Credentials: static keys (with an optional STS token) and RRSA (OIDC token exchanged through STS
//! AssumeRoleWithOIDC, cached and refreshed before expiry). Secrets never reach Debug or logs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::endpoint::Endpoint;
use super::error::CredentialsError;
use super::wire;

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
pub const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";

/// Refresh RRSA credentials this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(180);
/// Requested lifetime of RRSA credentials (STS allows 900..=43200 s).
const RRSA_DURATION_SECONDS: u32 = 3600;
/// The STS exchange's whole-call timeout, so a slow STS answer cannot hold the credential lock.
const STS_TIMEOUT: Duration = Duration::from_secs(15);

/// A string that must not be printed: Debug shows `***`. Read from JSON as the string it is.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One set of keys to sign with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub security_token: Option<Secret>,
    /// When temporary credentials stop working.
    pub expiration: Option<Timestamp>,
    /// Where they came from, sent as `x-acs-credentials-provider` as the official SDKs do.
    pub provider_name: &'static str,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Result<Self, CredentialsError> {
        let access_key_id = access_key_id.into();
        let access_key_secret = access_key_secret.into();
        if access_key_id.trim().is_empty() {
            return Err(CredentialsError::Invalid(
                "the access key id is empty".into(),
            ));
        }
        if access_key_secret.trim().is_empty() {
            return Err(CredentialsError::Invalid(format!(
                "the access key secret of {access_key_id} is empty"
            )));
        }
        let provider_name = if security_token
            .as_deref()
            .is_some_and(|t| !t.trim().is_empty())
        {
            "static_sts"
        } else {
            "static_ak"
        };
        Ok(Self {
            provider_name,
            access_key_id: access_key_id.trim().to_string(),
            access_key_secret: Secret::new(access_key_secret.trim()),
            security_token: security_token
                .filter(|token| !token.trim().is_empty())
                .map(|token| Secret::new(token.trim())),
            expiration: None,
        })
    }

    fn expires_within(&self, margin: Duration) -> bool {
        match self.expiration {
            Some(expiration) => {
                let margin = jiff::SignedDuration::try_from(margin).unwrap_or_default();
                Timestamp::now()
                    .saturating_add(margin)
                    .unwrap_or(Timestamp::MAX)
                    >= expiration
            }
            None => false,
        }
    }
}

/// The error when nothing is configured; `detail` says what is half there.
fn missing(detail: &str) -> CredentialsError {
    CredentialsError::Missing(format!(
        "no Alibaba Cloud credentials: set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}, or RRSA's {ENV_ROLE_ARN}, {ENV_OIDC_PROVIDER_ARN} and {ENV_OIDC_TOKEN_FILE}{detail}"
    ))
}

/// RRSA: a projected service-account token exchanged for temporary credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrsaConfig {
    pub role_arn: String,
    pub oidc_provider_arn: String,
    pub oidc_token_file: PathBuf,
    pub role_session_name: String,
    pub sts_endpoint: Endpoint,
}

/// Where credentials come from.
#[derive(Debug)]
pub enum CredentialSource {
    Static(Credentials),
    Rrsa {
        config: RrsaConfig,
        http: reqwest::Client,
        cached: Mutex<Option<Credentials>>,
    },
}

impl CredentialSource {
    /// The default chain: static keys from the environment, then RRSA.
    pub fn from_env(http: reqwest::Client) -> Result<Self, CredentialsError> {
        Self::from_lookup(|name| std::env::var(name).ok(), http)
    }

    /// The chain over any variable lookup (the environment in production, a map in tests).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        http: reqwest::Client,
    ) -> Result<Self, CredentialsError> {
        let var = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        match (var(ENV_ACCESS_KEY_ID), var(ENV_ACCESS_KEY_SECRET)) {
            (Some(id), Some(secret)) => {
                return Ok(Self::Static(Credentials::new(
                    id,
                    secret,
                    var(ENV_SECURITY_TOKEN),
                )?));
            }
            (Some(_), None) => {
                return Err(CredentialsError::Invalid(format!(
                    "{ENV_ACCESS_KEY_ID} is set but {ENV_ACCESS_KEY_SECRET} is not"
                )));
            }
            (None, Some(_)) => {
                return Err(CredentialsError::Invalid(format!(
                    "{ENV_ACCESS_KEY_SECRET} is set but {ENV_ACCESS_KEY_ID} is not"
                )));
            }
            (None, None) => {}
        }
        let rrsa = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE].map(var);
        match rrsa {
            [Some(role_arn), Some(oidc_provider_arn), Some(token_file)] => {
                let sts_endpoint = match var(ENV_STS_ENDPOINT) {
                    Some(url) => Endpoint::parse(&url).map_err(|error| {
                        CredentialsError::Invalid(format!("{ENV_STS_ENDPOINT}: {error}"))
                    })?,
                    None => Endpoint::sts(var(ENV_STS_REGION).as_deref()),
                };
                Ok(Self::Rrsa {
                    config: RrsaConfig {
                        role_arn,
                        oidc_provider_arn,
                        oidc_token_file: PathBuf::from(token_file),
                        role_session_name: var(ENV_ROLE_SESSION_NAME)
                            .unwrap_or_else(|| "cloudsso-mfa-operator".to_string()),
                        sts_endpoint,
                    },
                    http,
                    cached: Mutex::new(None),
                })
            }
            [None, None, None] => Err(missing("")),
            partial => {
                let unset: Vec<_> = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE]
                    .iter()
                    .zip(partial.iter())
                    .filter(|(_, value)| value.is_none())
                    .map(|(name, _)| *name)
                    .collect();
                Err(missing(&format!(
                    " (RRSA is partly configured; missing {})",
                    unset.join(", ")
                )))
            }
        }
    }

    /// A short, secret-free name for logs and cache keys.
    pub fn identity(&self) -> String {
        match self {
            Self::Static(credentials) => format!("ak:{}", credentials.access_key_id),
            Self::Rrsa { config, .. } => format!("rrsa:{}", config.role_arn),
        }
    }

    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        match self {
            Self::Static(credentials) => Ok(credentials.clone()),
            Self::Rrsa {
                config,
                http,
                cached,
            } => {
                let mut cached = cached.lock().await;
                if let Some(credentials) = cached.as_ref()
                    && !credentials.expires_within(REFRESH_MARGIN)
                {
                    return Ok(credentials.clone());
                }
                let fresh = assume_role_with_oidc(config, http).await?;
                *cached = Some(fresh.clone());
                Ok(fresh)
            }
        }
    }
}

/// STS's answer; its secrets are `Secret`s from the moment they are read, so Debug never shows them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResponse {
    credentials: StsCredentials,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    access_key_secret: Secret,
    security_token: Secret,
    expiration: String,
}

/// STS AssumeRoleWithOIDC (2015-04-01). Anonymous: the OIDC token is the proof.
async fn assume_role_with_oidc(
    config: &RrsaConfig,
    http: &reqwest::Client,
) -> Result<Credentials, CredentialsError> {
    let token = tokio::fs::read_to_string(&config.oidc_token_file)
        .await
        .map_err(|error| CredentialsError::TokenFile {
            path: config.oidc_token_file.clone(),
            detail: error.to_string(),
        })?;
    if token.trim().is_empty() {
        return Err(CredentialsError::TokenFile {
            path: config.oidc_token_file.clone(),
            detail: "the file is empty".into(),
        });
    }
    let query: BTreeMap<&str, String> = BTreeMap::from([
        ("Action", "AssumeRoleWithOIDC".to_string()),
        ("Format", "JSON".to_string()),
        ("Version", "2015-04-01".to_string()),
        ("Timestamp", wire::acs_timestamp(Timestamp::now())),
    ]);
    let form: BTreeMap<&str, String> = BTreeMap::from([
        ("RoleArn", config.role_arn.clone()),
        ("OIDCProviderArn", config.oidc_provider_arn.clone()),
        ("OIDCToken", token.trim().to_string()),
        ("RoleSessionName", config.role_session_name.clone()),
        ("DurationSeconds", RRSA_DURATION_SECONDS.to_string()),
    ]);
    let action = "AssumeRoleWithOIDC";
    let url = config.sts_endpoint.url();
    let request = http
        .post(&url)
        .query(&query)
        .form(&form)
        .timeout(STS_TIMEOUT);
    let parsed: AssumeRoleResponse = wire::exchange(request, action, &url)
        .await
        .and_then(|(status, answer)| wire::decode(action, status, answer))
        .map_err(|error| CredentialsError::sts(&error))?;
    let mut credentials = Credentials::new(
        parsed.credentials.access_key_id,
        parsed.credentials.access_key_secret.0,
        Some(parsed.credentials.security_token.0),
    )?;
    credentials.provider_name = "oidc_role_arn";
    credentials.expiration = Some(parsed.credentials.expiration.parse().map_err(|error| {
        CredentialsError::Invalid(format!("STS returned an unreadable Expiration: {error}"))
    })?);
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn static_keys_win_and_never_print_the_secret() {
        let source = CredentialSource::from_lookup(
            lookup(&[
                (ENV_ACCESS_KEY_ID, "AKID1"),
                (ENV_ACCESS_KEY_SECRET, "very-secret"),
                (ENV_SECURITY_TOKEN, "token-value"),
                (ENV_ROLE_ARN, "acs:ram::1:role/x"),
            ]),
            crate::cloud::http_client().unwrap(),
        )
        .unwrap();
        let debug = format!("{source:?}");
        assert!(debug.contains("AKID1"));
        assert!(!debug.contains("very-secret"));
        assert!(!debug.contains("token-value"));
        assert_eq!(source.identity(), "ak:AKID1");
    }

    #[test]
    fn half_configured_sources_are_clear_errors() {
        let error = CredentialSource::from_lookup(
            lookup(&[(ENV_ACCESS_KEY_ID, "AK")]),
            crate::cloud::http_client().unwrap(),
        )
        .unwrap_err();
        assert!(error.to_string().contains(ENV_ACCESS_KEY_SECRET), "{error}");
        let error = CredentialSource::from_lookup(
            lookup(&[(ENV_ROLE_ARN, "acs:ram::1:role/x")]),
            crate::cloud::http_client().unwrap(),
        )
        .unwrap_err();
        assert!(error.to_string().contains(ENV_OIDC_TOKEN_FILE), "{error}");
        let error =
            CredentialSource::from_lookup(lookup(&[]), crate::cloud::http_client().unwrap())
                .unwrap_err();
        assert!(matches!(error, CredentialsError::Missing(_)));
    }

    #[test]
    fn rrsa_is_chosen_when_its_three_variables_are_set() {
        let source = CredentialSource::from_lookup(
            lookup(&[
                (ENV_ROLE_ARN, "acs:ram::1:role/op"),
                (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/ack"),
                (ENV_OIDC_TOKEN_FILE, "/var/run/token"),
                (ENV_STS_ENDPOINT, "http://127.0.0.1:9"),
            ]),
            crate::cloud::http_client().unwrap(),
        )
        .unwrap();
        assert_eq!(source.identity(), "rrsa:acs:ram::1:role/op");
    }

    #[test]
    fn sts_answers_never_print_their_secrets() {
        let answer: AssumeRoleResponse = serde_json::from_value(serde_json::json!({
            "RequestId": "r",
            "Credentials": {
                "AccessKeyId": "STS.AKID",
                "AccessKeySecret": "sts-secret-value",
                "SecurityToken": "sts-token-value",
                "Expiration": "2026-12-01T00:00:00Z"
            }
        }))
        .unwrap();
        let debug = format!("{answer:?}");
        assert!(debug.contains("STS.AKID"), "{debug}");
        assert!(!debug.contains("sts-secret-value"), "{debug}");
        assert!(!debug.contains("sts-token-value"), "{debug}");
        let credentials = Credentials::new(
            answer.credentials.access_key_id,
            answer.credentials.access_key_secret.0,
            Some(answer.credentials.security_token.0),
        )
        .unwrap();
        let debug = format!("{credentials:?}");
        assert!(!debug.contains("sts-secret-value") && !debug.contains("sts-token-value"));
        assert_eq!(
            credentials.security_token.as_ref().map(Secret::expose),
            Some("sts-token-value")
        );
    }

    #[test]
    fn expiry_margin_triggers_refresh() {
        let mut credentials = Credentials::new("AK", "S", Some("T".into())).unwrap();
        credentials.expiration = Some(Timestamp::now() + jiff::SignedDuration::from_secs(60));
        assert!(credentials.expires_within(REFRESH_MARGIN));
        credentials.expiration = Some(Timestamp::now() + jiff::SignedDuration::from_secs(3600));
        assert!(!credentials.expires_within(REFRESH_MARGIN));
    }
}
