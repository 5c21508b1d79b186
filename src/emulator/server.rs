//! The emulator's HTTP face: signature verification, quota and fault injection, the API
//! dispatch, STS for RRSA, and the unsigned admin paths under `/_emulator/`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use jiff::Timestamp;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api::{self, ApiFault, Params};
use super::seed::Seed;
use crate::cloud::signer::{CanonicalHeaders, RequestToSign, parse_authorization, sha256_hex};

/// How far x-acs-date may be from the emulator's clock, as on the real gateway.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Injected trouble (`PUT /_emulator/faults`); `{}` clears it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Calls per second allowed per access key; above it the answer is Throttling.User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps: Option<u32>,
    /// Share (0..1) of calls answered with a 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<f64>,
    /// Delay added before every API answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Share (0..1) of calls whose connection is closed without an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_rate: Option<f64>,
}

impl Faults {
    fn validate(&self) -> Result<(), String> {
        for (name, rate) in [("errorRate", self.error_rate), ("dropRate", self.drop_rate)] {
            if let Some(rate) = rate
                && !(0.0..=1.0).contains(&rate)
            {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        if self.qps == Some(0) {
            return Err("qps must be at least 1 (leave it out for no quota)".into());
        }
        Ok(())
    }
}

struct StsKey {
    secret: String,
    token: String,
    expiration: Timestamp,
}

/// Everything the emulator holds.
pub struct EmulatorState {
    seed: Seed,
    faults: Faults,
    /// action -> outcome (`ok` or an error code) -> count.
    calls: BTreeMap<String, BTreeMap<String, u64>>,
    sts_keys: HashMap<String, StsKey>,
    seen_nonces: HashMap<String, Instant>,
    /// access key -> (second the window started, calls in it).
    quota_windows: HashMap<String, (u64, u32)>,
    started: Instant,
}

impl EmulatorState {
    pub fn new(seed: Seed) -> Self {
        Self {
            seed,
            faults: Faults::default(),
            calls: BTreeMap::new(),
            sts_keys: HashMap::new(),
            seen_nonces: HashMap::new(),
            quota_windows: HashMap::new(),
            started: Instant::now(),
        }
    }

    fn count(&mut self, action: &str, outcome: &str) {
        *self
            .calls
            .entry(action.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }

    fn secret_for(&self, access_key_id: &str) -> Option<(String, Option<&StsKey>)> {
        if let Some(key) = self
            .seed
            .access_keys
            .iter()
            .find(|key| key.access_key_id == access_key_id)
        {
            return Some((key.access_key_secret.clone(), None));
        }
        self.sts_keys
            .get(access_key_id)
            .map(|sts| (sts.secret.clone(), Some(sts)))
    }

    /// True when this call is over the per-key quota.
    fn over_quota(&mut self, access_key_id: &str) -> Option<Duration> {
        let qps = self.faults.qps?;
        let elapsed = self.started.elapsed();
        let second = elapsed.as_secs();
        let window = self
            .quota_windows
            .entry(access_key_id.to_string())
            .or_insert((second, 0));
        if window.0 != second {
            *window = (second, 0);
        }
        window.1 += 1;
        (window.1 > qps).then(|| Duration::from_secs(second + 1).saturating_sub(elapsed))
    }
}

pub type SharedState = Arc<Mutex<EmulatorState>>;

fn lock(state: &SharedState) -> MutexGuard<'_, EmulatorState> {
    // A panic elsewhere must not take the emulator down with a poisoned lock.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/_emulator/state", get(get_state).put(put_state))
        .route("/_emulator/calls", get(get_calls).delete(reset_calls))
        .route("/_emulator/faults", get(get_faults).put(put_faults))
        .route("/_emulator/healthz", get(|| async { "ok" }))
        .fallback(any(api_call))
        .with_state(state)
}

fn request_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    let hex = hex::encode_upper(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn json_response(status: u16, mut body: Value, request_id: &str) -> Response {
    if let Value::Object(map) = &mut body {
        map.insert("RequestId".into(), json!(request_id));
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn fault_response(fault: &ApiFault, host: &str) -> Response {
    let id = request_id();
    json_response(
        fault.status,
        json!({
            "Code": fault.code,
            "Message": fault.message,
            "HostId": host,
            "Recommend": format!("https://api.aliyun.com/troubleshoot?q={}", fault.code),
        }),
        &id,
    )
}

/// Closes the connection without an answer: the body fails before anything is flushed.
fn dropped_connection() -> Response {
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "dropped by fault injection",
        ))
    });
    Response::new(Body::from_stream(failing))
}

fn parse_params(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiFault> {
    match raw {
        None | Some("") => Ok(Vec::new()),
        Some(raw) => serde_urlencoded::from_str(raw).map_err(|error| {
            ApiFault::new(
                400,
                "InvalidParameter",
                format!("The query string is malformed: {error}"),
            )
        }),
    }
}

async fn api_call(
    State(state): State<SharedState>,
    method: axum::http::Method,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let query = match parse_params(raw_query.as_deref()) {
        Ok(query) => query,
        Err(fault) => return fault_response(&fault, &host),
    };
    let is_form =
        header("content-type").is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        match parse_params(std::str::from_utf8(&body).ok()) {
            Ok(form) => form,
            Err(fault) => return fault_response(&fault, &host),
        }
    } else {
        Vec::new()
    };
    let mut params: Params = query.iter().cloned().collect();
    params.extend(form.iter().cloned());

    let action = header("x-acs-action")
        .or_else(|| params.get("Action").cloned())
        .unwrap_or_else(|| "(none)".into());
    let version = header("x-acs-version")
        .or_else(|| params.get("Version").cloned())
        .unwrap_or_default();

    let (latency, drop_now, error_now) = {
        let faults = lock(&state).faults.clone();
        let mut rng = rand::rng();
        (
            faults.latency_ms.map(Duration::from_millis),
            faults.drop_rate.is_some_and(|rate| rng.random_bool(rate)),
            faults.error_rate.is_some_and(|rate| rng.random_bool(rate)),
        )
    };
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    if drop_now {
        lock(&state).count(&action, "dropped");
        return dropped_connection();
    }

    let request_id = request_id();
    let outcome = {
        let mut state = lock(&state);
        let result = if method != axum::http::Method::POST && method != axum::http::Method::GET {
            Err(ApiFault::new(
                405,
                "UnsupportedHTTPMethod",
                format!("HTTP method {method} is not supported."),
            ))
        } else if version == api::STS_VERSION && action == "AssumeRoleWithOIDC" {
            assume_role_with_oidc(&mut state, &params)
        } else {
            authenticate(
                &mut state,
                method.as_str(),
                &query.into_iter().collect(),
                &headers,
                &body,
            )
            .and_then(|access_key_id| {
                if let Some(wait) = state.over_quota(&access_key_id) {
                    return Err(ApiFault::new(
                        400,
                        "Throttling.User",
                        "Request was denied due to user flow control.",
                    )
                    .retrying_after(wait));
                }
                if error_now {
                    return Err(ApiFault::new(
                        503,
                        "ServiceUnavailable",
                        "The request has failed due to a temporary failure of the server.",
                    ));
                }
                api::dispatch(&mut state.seed, &version, &action, &params)
            })
        };
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(fault) => fault.code.clone(),
        };
        state.count(&action, &outcome);
        result
    };
    match outcome {
        Ok(body) => json_response(200, body, &request_id),
        Err(fault) => {
            let mut response = fault_response(&fault, &host);
            if let Some(wait) = fault.retry_after
                && let Ok(value) = wait.as_millis().max(1).to_string().parse()
            {
                response.headers_mut().insert("x-acs-retry-after", value);
            }
            response
        }
    }
}

/// Verifies an ACS3-HMAC-SHA256 signature; returns the caller's access key id.
fn authenticate(
    state: &mut EmulatorState,
    method: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiFault> {
    let incomplete = |detail: &str| {
        ApiFault::new(
            400,
            "IncompleteSignature",
            format!("The request signature does not conform to Aliyun standards. {detail}"),
        )
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| incomplete("The Authorization header is missing."))?;
    let parsed = parse_authorization(authorization).map_err(|detail| incomplete(&detail))?;

    let mut canonical = CanonicalHeaders::new();
    for name in &parsed.signed_headers {
        let values: Vec<&str> = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(incomplete(&format!(
                "Signed header '{name}' is not in the request."
            )));
        }
        canonical.insert(name, &values.join(","));
    }
    for required in [
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    ] {
        if canonical.get(required).is_none() {
            return Err(incomplete(&format!(
                "Header '{required}' must be sent and signed."
            )));
        }
    }
    for (name, _) in headers.iter() {
        let name = name.as_str();
        if name.starts_with("x-acs-") && canonical.get(name).is_none() {
            return Err(incomplete(&format!(
                "Header '{name}' is sent but not signed."
            )));
        }
    }

    let date = canonical.get("x-acs-date").unwrap_or_default();
    let sent_at: Timestamp = date.parse().map_err(|_| {
        ApiFault::new(
            400,
            "InvalidTimeStamp.Format",
            format!("Specified time stamp or date value is not well formatted: {date}"),
        )
    })?;
    let skew = Timestamp::now().duration_since(sent_at).unsigned_abs();
    if skew > MAX_CLOCK_SKEW {
        return Err(ApiFault::new(
            400,
            "InvalidTimeStamp.Expired",
            format!("Specified time stamp or date value is expired: {date}"),
        ));
    }

    let payload_hash = sha256_hex(body);
    if canonical.get("x-acs-content-sha256") != Some(payload_hash.as_str()) {
        return Err(ApiFault::new(
            400,
            "InvalidParameter.ContentSHA256",
            "x-acs-content-sha256 does not match the request body.",
        ));
    }

    let (secret, sts) = state.secret_for(&parsed.access_key_id).ok_or_else(|| {
        ApiFault::new(
            404,
            "InvalidAccessKeyId.NotFound",
            format!(
                "Specified access key is not found: {}",
                parsed.access_key_id
            ),
        )
    })?;
    if let Some(sts) = sts {
        if canonical.get("x-acs-security-token") != Some(sts.token.as_str()) {
            return Err(ApiFault::new(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "The security token does not match the access key.",
            ));
        }
        if Timestamp::now() >= sts.expiration {
            return Err(ApiFault::new(
                400,
                "InvalidSecurityToken.Expired",
                "Specified SecurityToken is expired.",
            ));
        }
    }

    let request = RequestToSign {
        method,
        path: "/",
        query,
        headers: &canonical,
        payload_hash: &payload_hash,
    };
    if request.signature(&secret) != parsed.signature {
        return Err(ApiFault::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "The request signature does not conform to Aliyun standards. server string to sign is:{}",
                request.string_to_sign()
            ),
        ));
    }

    let nonce = canonical
        .get("x-acs-signature-nonce")
        .unwrap_or_default()
        .to_string();
    let now = Instant::now();
    state
        .seen_nonces
        .retain(|_, seen| now.duration_since(*seen) < MAX_CLOCK_SKEW * 2);
    if state.seen_nonces.insert(nonce.clone(), now).is_some() {
        return Err(ApiFault::new(
            400,
            "SignatureNonceUsed",
            format!("Specified signature nonce was used already: {nonce}"),
        ));
    }
    Ok(parsed.access_key_id)
}

/// STS AssumeRoleWithOIDC: anonymous; mints temporary keys the emulator then accepts.
fn assume_role_with_oidc(state: &mut EmulatorState, params: &Params) -> Result<Value, ApiFault> {
    let get = |name: &str| {
        params.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiFault::new(
                400,
                format!("Missing{name}"),
                format!("{name} is mandatory for this action."),
            )
        })
    };
    let role_arn = get("RoleArn")?;
    let provider_arn = get("OIDCProviderArn")?;
    let token = get("OIDCToken")?;
    let session = get("RoleSessionName")?;
    if !role_arn.starts_with("acs:ram::") || !role_arn.contains(":role/") {
        return Err(ApiFault::new(
            400,
            "InvalidParameter.RoleArn",
            "The parameter RoleArn is wrongly formed.",
        ));
    }
    if !provider_arn.starts_with("acs:ram::") || !provider_arn.contains(":oidc-provider/") {
        return Err(ApiFault::new(
            400,
            "InvalidParameter.OIDCProviderArn",
            "The parameter OIDCProviderArn is wrongly formed.",
        ));
    }
    if token.split('.').count() != 3 {
        return Err(ApiFault::new(
            400,
            "InvalidParameter.OIDCToken",
            "The OIDC token is not a JWT.",
        ));
    }
    let duration = match params.get("DurationSeconds") {
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|s| (900..=43200).contains(s))
            .ok_or_else(|| {
                ApiFault::new(
                    400,
                    "InvalidParameter.DurationSeconds",
                    "DurationSeconds must be 900 to 43200.",
                )
            })?,
        None => 3600,
    };
    let mut rng = rand::rng();
    let access_key_id = format!("STS.{}", hex::encode(rng.random::<[u8; 12]>()));
    let secret = hex::encode(rng.random::<[u8; 20]>());
    let token = format!("CAIS{}", hex::encode(rng.random::<[u8; 48]>()));
    let expiration = Timestamp::now() + jiff::SignedDuration::from_secs(duration);
    let expiration_text = expiration.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    state.sts_keys.insert(
        access_key_id.clone(),
        StsKey {
            secret: secret.clone(),
            token: token.clone(),
            expiration,
        },
    );
    let account = role_arn
        .trim_start_matches("acs:ram::")
        .split(':')
        .next()
        .unwrap_or("0");
    let role_name = role_arn.rsplit('/').next().unwrap_or("");
    Ok(json!({
        "Credentials": {
            "AccessKeyId": access_key_id,
            "AccessKeySecret": secret,
            "SecurityToken": token,
            "Expiration": expiration_text,
        },
        "AssumedRoleUser": {
            "Arn": format!("acs:ram::{account}:role/{role_name}/{session}"),
            "AssumedRoleId": format!("3{}:{session}", &hex::encode(rng.random::<[u8; 8]>())),
        },
        "OIDCTokenInfo": { "Issuer": "emulator", "Subject": "system:serviceaccount" },
    }))
}

async fn get_state(State(state): State<SharedState>) -> Response {
    let seed = lock(&state).seed.clone();
    (StatusCode::OK, axum::Json(seed)).into_response()
}

async fn put_state(State(state): State<SharedState>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    match Seed::parse(&text, "PUT /_emulator/state") {
        Ok(seed) => {
            lock(&state).seed = seed;
            (StatusCode::OK, axum::Json(json!({"status": "replaced"}))).into_response()
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": error.to_string()})),
        )
            .into_response(),
    }
}

async fn get_calls(State(state): State<SharedState>) -> Response {
    let calls = lock(&state).calls.clone();
    (StatusCode::OK, axum::Json(calls)).into_response()
}

async fn reset_calls(State(state): State<SharedState>) -> Response {
    lock(&state).calls.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_faults(State(state): State<SharedState>) -> Response {
    let faults = lock(&state).faults.clone();
    (StatusCode::OK, axum::Json(faults)).into_response()
}

async fn put_faults(State(state): State<SharedState>, body: Bytes) -> Response {
    let parsed: Result<Faults, String> = serde_json::from_slice::<Faults>(&body)
        .map_err(|error| format!("invalid faults JSON: {error}"))
        .and_then(|faults| faults.validate().map(|()| faults));
    match parsed {
        Ok(faults) => {
            lock(&state).faults = faults.clone();
            (StatusCode::OK, axum::Json(faults)).into_response()
        }
        Err(error) => {
            (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
        }
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: SharedState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
