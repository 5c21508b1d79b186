//! The signed HTTP transport: one client per endpoint and credential, with a client-side rate
//! limit (adaptive, writes first; see `limiter`) and jittered exponential retry of retryable
//! failures.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::de::DeserializeOwned;

use super::credentials::{CredentialSource, Credentials};
use super::endpoint::Endpoint;
use super::error::{ApiErrorKind, CloudError, code_label};
use super::limiter::{Access, Priority, SharedLimiter};
use super::signer::{CanonicalHeaders, RequestToSign, redacted_headers, sha256_hex};
use super::text::one_line;
use super::wire::{self, USER_AGENT, acs_timestamp, new_nonce};

/// How hard a client pushes and how long it keeps trying.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Calls per second per credential (CloudSSO allows 100/s per account, shared with every tool);
    /// the ceiling the limiter climbs back to after throttling.
    pub qps: NonZeroU32,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            qps: NonZeroU32::new(20).expect("non-zero"),
            max_attempts: 4,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            timeout: Duration::from_secs(15),
        }
    }
}

/// The actions this operator calls (CloudSSO, IMS, STS): the only action metric labels.
pub const KNOWN_ACTIONS: &[&str] = &[
    "GetMFAAuthenticationSettingInfo",
    "UpdateMFAAuthenticationSettings",
    "GetUserMFAAuthenticationSettings",
    "UpdateUserMFAAuthenticationSettings",
    "ListMFADevicesForUser",
    "ListUsers",
    "GetUser",
    "GetDirectory",
    "GetUserMFAInfo",
    "AssumeRoleWithOIDC",
    "GetCallerIdentity",
    "GetSecurityPreference",
    "SetSecurityPreference",
    "GetLoginProfile",
    "UpdateLoginProfile",
    "GetAccountMFAInfo",
    "ListGroups",
    "GetGroup",
    "ListGroupMembers",
    "ListJoinedGroupsForUser",
];

/// The metric label for an action: itself when known, else `other`.
pub fn action_label(action: &str) -> &'static str {
    KNOWN_ACTIONS
        .iter()
        .find(|known| **known == action)
        .copied()
        .unwrap_or("other")
}

/// Hooks for metrics; the default does nothing.
pub trait CallObserver: Send + Sync {
    /// One request (attempt) ended: `outcome` is `ok`, a known error code or a failure kind
    /// (`timeout`, `redirect`, ...), else `other`; `throttled` when the cloud refused it for the
    /// quota.
    fn call_finished(&self, _action: &str, _outcome: &str, _throttled: bool, _elapsed: Duration) {}
    fn rate_limit_waited(&self, _waited: Duration) {}
    /// The credential's adaptive rate moved to `qps` calls per second (throttling cut it, or
    /// answers let it climb back).
    fn rate_changed(&self, _qps: f64) {}
}

struct NoObserver;
impl CallObserver for NoObserver {}

/// One API (product + version) at one endpoint, signing with one credential source.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: Endpoint,
    version: &'static str,
    credentials: Arc<CredentialSource>,
    limiter: SharedLimiter,
    config: ClientConfig,
    observer: Arc<dyn CallObserver>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("endpoint", &self.endpoint)
            .field("version", &self.version)
            .field("credentials", &self.credentials.identity())
            .finish()
    }
}

/// Everything that goes on the wire for one attempt, signed. Debug redacts the credentials.
#[derive(Clone)]
pub struct PreparedRequest {
    pub url: String,
    pub query: BTreeMap<String, String>,
    /// Every header sent, all of them signed, plus `authorization`.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for PreparedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRequest")
            .field("url", &self.url)
            .field("query", &self.query)
            .field(
                "headers",
                &redacted_headers(self.headers.iter().map(|(name, value)| (name, value))),
            )
            .finish()
    }
}

/// What makes each attempt unique: its time, nonce and the caller's user agent.
#[derive(Debug, Clone)]
pub struct RequestStamp {
    pub date: String,
    pub nonce: String,
    pub user_agent: String,
}

impl RequestStamp {
    pub fn now() -> Self {
        Self {
            date: acs_timestamp(Timestamp::now()),
            nonce: new_nonce(),
            user_agent: USER_AGENT.to_string(),
        }
    }
}

/// Builds and signs a request the way Alibaba's SDKs do: POST, parameters in the query string,
/// empty body, and every header sent (host with its port included) signed.
pub fn prepare_request(
    endpoint: &Endpoint,
    version: &str,
    action: &str,
    params: &BTreeMap<String, String>,
    credentials: &Credentials,
    stamp: &RequestStamp,
) -> PreparedRequest {
    let payload_hash = sha256_hex(b"");
    let mut headers = CanonicalHeaders::new();
    headers.insert("host", endpoint.authority());
    headers.insert("x-acs-version", version);
    headers.insert("x-acs-action", action);
    headers.insert("user-agent", &stamp.user_agent);
    headers.insert("x-acs-date", &stamp.date);
    headers.insert("x-acs-signature-nonce", &stamp.nonce);
    headers.insert("accept", "application/json");
    headers.insert("x-acs-content-sha256", &payload_hash);
    headers.insert("x-acs-credentials-provider", credentials.provider_name);
    if let Some(token) = &credentials.security_token {
        headers.insert("x-acs-accesskey-id", &credentials.access_key_id);
        headers.insert("x-acs-security-token", token.expose());
    }
    let authorization = RequestToSign {
        method: "POST",
        path: "/",
        query: params,
        headers: &headers,
        payload_hash: &payload_hash,
    }
    .authorization(
        &credentials.access_key_id,
        credentials.access_key_secret.expose(),
    );
    let mut sent: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    sent.push(("authorization".into(), authorization));
    PreparedRequest {
        url: endpoint.url(),
        query: params.clone(),
        headers: sent,
    }
}

impl ApiClient {
    pub fn new(
        http: reqwest::Client,
        endpoint: Endpoint,
        version: &'static str,
        credentials: Arc<CredentialSource>,
        limiter: SharedLimiter,
        config: ClientConfig,
    ) -> Self {
        Self {
            http,
            endpoint,
            version,
            credentials,
            limiter,
            config,
            observer: Arc::new(NoObserver),
        }
    }

    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = observer;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Calls an action that only reads (see `call`).
    pub async fn read<T: DeserializeOwned>(
        &self,
        action: &str,
        params: BTreeMap<String, String>,
    ) -> Result<T, CloudError> {
        self.call(action, Access::Read, params).await
    }

    /// Calls an action that changes the cloud (see `call`): its calls go before the reads of
    /// passes as urgent as its own.
    pub async fn write<T: DeserializeOwned>(
        &self,
        action: &str,
        params: BTreeMap<String, String>,
    ) -> Result<T, CloudError> {
        self.call(action, Access::Write, params).await
    }

    /// Calls `action` with `params`, retrying what is retryable, and decodes the answer.
    async fn call<T: DeserializeOwned>(
        &self,
        action: &str,
        access: Access,
        params: BTreeMap<String, String>,
    ) -> Result<T, CloudError> {
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = self.attempt(action, access, &params).await;
            // From a fixed set, whatever the endpoint answers: each value is a metric series.
            let outcome = match &result {
                Ok(_) => "ok",
                Err(error) => error
                    .code()
                    .map_or_else(|| error_outcome(error), code_label),
            };
            let throttled =
                matches!(&result, Err(error) if error.api_kind() == Some(ApiErrorKind::Throttled));
            self.observer
                .call_finished(action, outcome, throttled, started.elapsed());
            if let Some(qps) = self.adapt_rate(&result, throttled) {
                tracing::debug!(qps, throttled, "cloud call rate changed");
                self.observer.rate_changed(qps);
            }
            match result {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable() && attempt < self.config.max_attempts => {
                    let delay = error
                        .retry_after()
                        .map(|after| after.min(self.config.max_backoff))
                        .unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(action, attempt, ?delay, %error, "retrying cloud call");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Feeds the limiter what the cloud said of its quota. A terminal answer (not found, bad
    /// parameter) is the cloud accepting the call within quota as much as a success is; a 5xx or
    /// no answer at all says nothing either way.
    fn adapt_rate<T>(&self, result: &Result<T, CloudError>, throttled: bool) -> Option<f64> {
        if throttled {
            return self.limiter.on_throttled();
        }
        let accepted = match result {
            Ok(_) => true,
            Err(error) => error
                .api_kind()
                .is_some_and(|kind| kind != ApiErrorKind::ServerError),
        };
        if accepted {
            self.limiter.on_success()
        } else {
            None
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        super::backoff::delay(self.config.base_backoff, self.config.max_backoff, attempt)
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        action: &str,
        access: Access,
        params: &BTreeMap<String, String>,
    ) -> Result<T, CloudError> {
        let waited = Instant::now();
        self.limiter.acquire(Priority::current(access)).await;
        self.observer.rate_limit_waited(waited.elapsed());
        let credentials = self.credentials.get().await?;
        let prepared = prepare_request(
            &self.endpoint,
            self.version,
            action,
            params,
            &credentials,
            &RequestStamp::now(),
        );
        let mut request = self
            .http
            .post(&prepared.url)
            .query(&prepared.query)
            .timeout(self.config.timeout);
        for (name, value) in &prepared.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let (status, answer) = wire::exchange(request, action, &prepared.url).await?;
        // The request id is what Alibaba Cloud support asks for; it is logged for every call.
        let request_id = one_line(answer["RequestId"].as_str().unwrap_or("-"));
        tracing::debug!(
            action,
            request_id,
            elapsed_ms = waited.elapsed().as_millis() as u64,
            "cloud call succeeded"
        );
        wire::decode(action, status, answer)
    }
}

fn error_outcome(error: &CloudError) -> &'static str {
    match error {
        CloudError::Transport { timeout: true, .. } => "timeout",
        CloudError::Transport { .. } => "connection",
        CloudError::Decode { .. } => "decode",
        CloudError::Credentials(_) => "credentials",
        CloudError::Refused { what, .. } => what,
        CloudError::Api { .. } => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_requests_never_print_their_secrets() {
        let credentials = Credentials::new(
            "LTAI5tDebugKey",
            "debug-secret-value",
            Some("debug-security-token".into()),
        )
        .unwrap();
        let prepared = prepare_request(
            &Endpoint::parse("http://127.0.0.1:1").unwrap(),
            "2021-05-15",
            "GetUser",
            &BTreeMap::from([("UserId".to_string(), "u-1".to_string())]),
            &credentials,
            &RequestStamp::now(),
        );
        let sent = |name: &str| {
            prepared
                .headers
                .iter()
                .find(|(header, _)| header == name)
                .map(|(_, value)| value.clone())
                .unwrap()
        };
        let authorization = sent("authorization");
        let signature = authorization.rsplit("Signature=").next().unwrap();
        let debug = format!("{prepared:?}");
        for secret in [
            "debug-secret-value",
            "debug-security-token",
            signature,
            authorization.as_str(),
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        // What is not secret stays, so the output is still of use.
        assert!(
            debug.contains("LTAI5tDebugKey") && debug.contains("GetUser"),
            "{debug}"
        );
        assert_eq!(sent("x-acs-security-token"), "debug-security-token");
    }
}
