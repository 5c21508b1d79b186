//! The emulator's HTTP face: signature verification (ACS3-HMAC-SHA256 in the Authorization header,
//! or the RPC HMAC-SHA1 `Signature` parameter), quota and fault injection, the API dispatch, STS
//! (AssumeRoleWithOIDC for RRSA, GetCallerIdentity for the account of each key), and the unsigned
//! admin paths under `/_emulator/` (state, faults, call counters by action
//! and by user, the recent write calls with their arrival time).

use std::collections::{BTreeMap, HashMap, VecDeque};
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
use super::rpc;
use super::seed::Seed;
use crate::cloud::signer::{CanonicalHeaders, RequestToSign, parse_authorization, sha256_hex};

/// How far x-acs-date (ACS3) or Timestamp (RPC) may be from the emulator's clock, as on the real
/// gateway.
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
    /// Actions always answered with a 5xx (a write that fails after the read before it worked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fail_actions: Vec<String>,
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

/// How many write calls `GET /_emulator/writes` keeps (the oldest are dropped first).
pub const WRITES_KEPT: usize = 10_000;

/// One write call (an `Update…` action, any outcome), as `GET /_emulator/writes` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteRecord {
    /// When the call arrived (before any injected latency), in milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub action: String,
    /// `ok` or the error code of the answer.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The RAM user an IMS write names (UpdateLoginProfile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
}

/// The calls that change the cloud: every write the emulator serves is an `Update…` or a
/// `Set…` (IMS SetSecurityPreference, CloudSSO SetMFAAuthenticationStatus).
fn is_write(action: &str) -> bool {
    action.starts_with("Update") || action.starts_with("Set")
}

/// The user a call names: CloudSSO's UserId, or IMS's UserPrincipalName.
fn named_user(params: &Params) -> Option<&String> {
    params
        .get("UserId")
        .or_else(|| params.get("UserPrincipalName"))
}

struct StsKey {
    secret: String,
    token: String,
    expiration: Timestamp,
    /// The account of the role it was minted for (from the role ARN).
    account_id: String,
    role_name: String,
    /// The role's id (digits), as AssumedRoleId and GetCallerIdentity's RoleId carry it.
    role_id: String,
    session_name: String,
}

/// Who signed a call, as STS GetCallerIdentity tells it.
fn caller_identity(state: &EmulatorState, access_key_id: &str) -> Result<Value, ApiFault> {
    if let Some(key) = state
        .seed
        .access_keys
        .iter()
        .find(|key| key.access_key_id == access_key_id)
    {
        let account_id = key.account_id();
        return Ok(match &key.user_name {
            Some(user_name) => {
                let user_id = ram_user_id(account_id, user_name);
                json!({
                    "IdentityType": "RAMUser",
                    "AccountId": account_id,
                    "UserId": user_id,
                    "PrincipalId": user_id,
                    "Arn": format!("acs:ram::{account_id}:user/{user_name}"),
                })
            }
            None => json!({
                "IdentityType": "Account",
                "AccountId": account_id,
                "UserId": account_id,
                "PrincipalId": account_id,
                "Arn": format!("acs:ram::{account_id}:root"),
            }),
        });
    }
    let sts = state
        .sts_keys
        .get(access_key_id)
        .ok_or_else(|| access_key_not_found(access_key_id))?;
    let principal = format!("{}:{}", sts.role_id, sts.session_name);
    Ok(json!({
        "IdentityType": "AssumedRoleUser",
        "AccountId": sts.account_id,
        "UserId": principal,
        "PrincipalId": principal,
        "RoleId": sts.role_id,
        "Arn": format!(
            "acs:ram::{}:assumed-role/{}/{}",
            sts.account_id, sts.role_name, sts.session_name
        ),
    }))
}

/// A RAM user's id: 16 digits, stable for one user of one account (as the real ids are).
pub(super) fn ram_user_id(account_id: &str, user_name: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{account_id}/{user_name}").as_bytes(),
    );
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    // The leading 2 keeps 16 digits whatever the hash; real RAM user ids start with 2 as well.
    format!("2{:015}", u64::from_be_bytes(bytes) % 1_000_000_000_000_000)
}

/// Everything the emulator holds.
pub struct EmulatorState {
    seed: Seed,
    faults: Faults,
    /// action -> outcome (`ok` or an error code) -> count.
    calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// action -> UserId (or, for IMS, UserPrincipalName) -> count, for the calls that name a
    /// user (any outcome).
    user_calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// The last `WRITES_KEPT` write calls, oldest first.
    writes: VecDeque<WriteRecord>,
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
            user_calls: BTreeMap::new(),
            writes: VecDeque::new(),
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

    /// Counts a call that names a user, for `GET /_emulator/calls/users`.
    fn count_user(&mut self, action: &str, user_id: &str) {
        *self
            .user_calls
            .entry(action.to_string())
            .or_default()
            .entry(user_id.to_string())
            .or_default() += 1;
    }

    /// Keeps a write call in the bounded ring of `/_emulator/writes`.
    fn record_write(&mut self, record: WriteRecord) {
        if self.writes.len() >= WRITES_KEPT {
            self.writes.pop_front();
        }
        self.writes.push_back(record);
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
        .route("/_emulator/calls/users", get(get_user_calls))
        .route("/_emulator/writes", get(get_writes).delete(reset_writes))
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
    let arrived = Timestamp::now();
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
            faults.error_rate.is_some_and(|rate| rng.random_bool(rate))
                || faults.fail_actions.contains(&action),
        )
    };
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    let write = |outcome: &str| {
        is_write(&action).then(|| WriteRecord {
            at_ms: arrived.as_millisecond(),
            action: action.clone(),
            outcome: outcome.to_string(),
            directory_id: params.get("DirectoryId").cloned(),
            user_id: params.get("UserId").cloned(),
            user_principal_name: params.get("UserPrincipalName").cloned(),
        })
    };
    if drop_now {
        let mut state = lock(&state);
        state.count(&action, "dropped");
        if let Some(user_id) = named_user(&params) {
            state.count_user(&action, user_id);
        }
        if let Some(record) = write("dropped") {
            state.record_write(record);
        }
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
                &params,
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
                if version == api::STS_VERSION && action == "GetCallerIdentity" {
                    // The one action that answers about the caller, not the seed.
                    return caller_identity(&state, &access_key_id);
                }
                api::dispatch(&mut state.seed, &version, &action, &params)
            })
        };
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(fault) => fault.code.clone(),
        };
        state.count(&action, &outcome);
        if let Some(user_id) = named_user(&params) {
            state.count_user(&action, user_id);
        }
        if let Some(record) = write(&outcome) {
            state.record_write(record);
        }
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

/// Parameters only an RPC-signed call carries: with one of them and no Authorization header, the
/// call is checked as RPC, so a missing piece is named rather than the missing ACS3 header.
const RPC_MARKERS: [&str; 5] = [
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "AccessKeyId",
];

/// Verifies the call's signature, ACS3 or RPC, and the parts around it (time window, key, STS
/// token, nonce); returns the caller's access key id.
fn authenticate(
    state: &mut EmulatorState,
    method: &str,
    query: &BTreeMap<String, String>,
    params: &Params,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, ApiFault> {
    let rpc_signed = !headers.contains_key(header::AUTHORIZATION)
        && RPC_MARKERS.iter().any(|name| params.contains_key(*name));
    if rpc_signed {
        authenticate_rpc(state, method, params)
    } else {
        authenticate_acs3(state, method, query, headers, body)
    }
}

/// InvalidTimeStamp.Format or .Expired unless `sent` is a time within the window.
fn check_time_window(sent: &str) -> Result<(), ApiFault> {
    let sent_at: Timestamp = sent.parse().map_err(|_| {
        ApiFault::new(
            400,
            "InvalidTimeStamp.Format",
            format!("Specified time stamp or date value is not well formatted: {sent}"),
        )
    })?;
    let skew = Timestamp::now().duration_since(sent_at).unsigned_abs();
    if skew > MAX_CLOCK_SKEW {
        return Err(ApiFault::new(
            400,
            "InvalidTimeStamp.Expired",
            format!("Specified time stamp or date value is expired: {sent}"),
        ));
    }
    Ok(())
}

fn access_key_not_found(access_key_id: &str) -> ApiFault {
    ApiFault::new(
        404,
        "InvalidAccessKeyId.NotFound",
        format!("Specified access key is not found: {access_key_id}"),
    )
}

/// Temporary keys need the token they were minted with; a permanent key needs none.
fn check_security_token(sts: Option<&StsKey>, token: Option<&str>) -> Result<(), ApiFault> {
    let Some(sts) = sts else {
        return Ok(());
    };
    let token = token.filter(|token| !token.is_empty()).ok_or_else(|| {
        ApiFault::new(
            400,
            "MissingSecurityToken",
            "SecurityToken is mandatory for this action: the access key is a temporary (STS) key.",
        )
    })?;
    if !token.starts_with("CAIS") {
        return Err(ApiFault::new(
            400,
            "InvalidSecurityToken.Malformed",
            "Specified SecurityToken is malformed.",
        ));
    }
    if token != sts.token {
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
    Ok(())
}

/// Records a nonce; SignatureNonceUsed when it was seen within the window (either signature).
fn use_nonce(state: &mut EmulatorState, nonce: &str) -> Result<(), ApiFault> {
    let now = Instant::now();
    state
        .seen_nonces
        .retain(|_, seen| now.duration_since(*seen) < MAX_CLOCK_SKEW * 2);
    if state.seen_nonces.insert(nonce.to_string(), now).is_some() {
        return Err(ApiFault::new(
            400,
            "SignatureNonceUsed",
            format!("Specified signature nonce was used already: {nonce}"),
        ));
    }
    Ok(())
}

/// Verifies an RPC signature (HMAC-SHA1 over the sorted parameters of query and form body).
fn authenticate_rpc(
    state: &mut EmulatorState,
    method: &str,
    params: &Params,
) -> Result<String, ApiFault> {
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    };
    // The gateway names the missing common parameter in the code: Missing{ParameterName}.
    for name in rpc::REQUIRED_PARAMETERS {
        if param(name).is_none() {
            return Err(ApiFault::new(
                400,
                format!("Missing{name}"),
                format!("{name} is mandatory for this action."),
            ));
        }
    }
    let signature_method = param("SignatureMethod").unwrap_or_default();
    if signature_method != rpc::SIGNATURE_METHOD {
        return Err(ApiFault::new(
            400,
            "InvalidSignatureMethod",
            format!(
                "Specified signature method '{signature_method}' is not supported: use {}.",
                rpc::SIGNATURE_METHOD
            ),
        ));
    }
    let signature_version = param("SignatureVersion").unwrap_or_default();
    if signature_version != rpc::SIGNATURE_VERSION {
        return Err(ApiFault::new(
            400,
            "InvalidSignatureVersion",
            format!(
                "Specified signature version '{signature_version}' is not supported: use {}.",
                rpc::SIGNATURE_VERSION
            ),
        ));
    }
    if let Some(format) = param("Format")
        && !format.eq_ignore_ascii_case("JSON")
    {
        return Err(ApiFault::new(
            400,
            "InvalidParameter.Format",
            format!("Format '{format}' is not served here: the emulator answers JSON only."),
        ));
    }
    check_time_window(param("Timestamp").unwrap_or_default())?;

    let access_key_id = param("AccessKeyId").unwrap_or_default().to_string();
    let (secret, sts) = state
        .secret_for(&access_key_id)
        .ok_or_else(|| access_key_not_found(&access_key_id))?;
    check_security_token(sts, param("SecurityToken"))?;

    let string_to_sign = rpc::string_to_sign(method, params);
    if !rpc::verify(
        &secret,
        &string_to_sign,
        param("Signature").unwrap_or_default(),
    ) {
        // The SDKs compare this echo with their own string to sign to tell a wrong secret apart.
        return Err(ApiFault::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        ));
    }
    use_nonce(state, param("SignatureNonce").unwrap_or_default())?;
    Ok(access_key_id)
}

/// Verifies an ACS3-HMAC-SHA256 signature; returns the caller's access key id.
fn authenticate_acs3(
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
        .ok_or_else(|| {
            incomplete(
                "The Authorization header is missing (ACS3), and so is the Signature parameter (RPC).",
            )
        })?;
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

    check_time_window(canonical.get("x-acs-date").unwrap_or_default())?;

    let payload_hash = sha256_hex(body);
    if canonical.get("x-acs-content-sha256") != Some(payload_hash.as_str()) {
        return Err(ApiFault::new(
            400,
            "InvalidParameter.ContentSHA256",
            "x-acs-content-sha256 does not match the request body.",
        ));
    }

    let (secret, sts) = state
        .secret_for(&parsed.access_key_id)
        .ok_or_else(|| access_key_not_found(&parsed.access_key_id))?;
    check_security_token(sts, canonical.get("x-acs-security-token"))?;

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
    use_nonce(state, &nonce)?;
    Ok(parsed.access_key_id)
}

/// A role's id: 19 digits starting with 3, stable for one role of one account.
fn role_id(account_id: &str, role_name: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("role:{account_id}/{role_name}").as_bytes(),
    );
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    format!(
        "3{:018}",
        u64::from_be_bytes(bytes) % 1_000_000_000_000_000_000
    )
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
    // acs:ram::<account digits>:role/<name>: the minted key belongs to that account.
    let (account, role_name) = role_arn
        .strip_prefix("acs:ram::")
        .and_then(|rest| rest.split_once(":role/"))
        .filter(|(account, name)| {
            super::seed::valid_account_id(account) && !name.is_empty() && !name.contains(':')
        })
        .ok_or_else(|| {
            ApiFault::new(
                400,
                "InvalidParameter.RoleArn",
                "The parameter RoleArn is wrongly formed.",
            )
        })?;
    let (account, role_name) = (account.to_string(), role_name.to_string());
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
    let role_id = role_id(&account, &role_name);
    let session = session.to_string();
    state.sts_keys.insert(
        access_key_id.clone(),
        StsKey {
            secret: secret.clone(),
            token: token.clone(),
            expiration,
            account_id: account.clone(),
            role_name: role_name.clone(),
            role_id: role_id.clone(),
            session_name: session.clone(),
        },
    );
    Ok(json!({
        "Credentials": {
            "AccessKeyId": access_key_id,
            "AccessKeySecret": secret,
            "SecurityToken": token,
            "Expiration": expiration_text,
        },
        "AssumedRoleUser": {
            "Arn": format!("acs:ram::{account}:role/{role_name}/{session}"),
            "AssumedRoleId": format!("{role_id}:{session}"),
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

/// The calls that named a user, by action and user: which users a client read (or wrote).
async fn get_user_calls(State(state): State<SharedState>) -> Response {
    let calls = lock(&state).user_calls.clone();
    (StatusCode::OK, axum::Json(calls)).into_response()
}

async fn reset_calls(State(state): State<SharedState>) -> Response {
    let mut state = lock(&state);
    state.calls.clear();
    state.user_calls.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn get_writes(State(state): State<SharedState>) -> Response {
    let writes: Vec<WriteRecord> = lock(&state).writes.iter().cloned().collect();
    (StatusCode::OK, axum::Json(writes)).into_response()
}

async fn reset_writes(State(state): State<SharedState>) -> Response {
    lock(&state).writes.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> EmulatorState {
        let seed = Seed::parse(
            r#"{"accessKeys": [{"accessKeyId": "AK1", "accessKeySecret": "S1"}]}"#,
            "test",
        )
        .unwrap();
        EmulatorState::new(seed)
    }

    fn now() -> String {
        Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// An RPC call as the older SDKs send it, signed with `secret` after `changes` are applied
    /// (an empty value removes the parameter).
    fn signed(method: &str, secret: &str, nonce: &str, changes: &[(&str, &str)]) -> Params {
        let mut params: Params = [
            ("AccessKeyId", "AK1"),
            ("Action", "GetUser"),
            ("Version", api::CLOUDSSO_VERSION),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce),
            ("DirectoryId", "d-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        params.insert("Timestamp".into(), now());
        for (name, value) in changes {
            if value.is_empty() {
                params.remove(*name);
            } else {
                params.insert(name.to_string(), value.to_string());
            }
        }
        let string_to_sign = rpc::string_to_sign(method, &params);
        params.insert("Signature".into(), rpc::signature(secret, &string_to_sign));
        params
    }

    fn check(state: &mut EmulatorState, method: &str, params: &Params) -> Result<String, String> {
        authenticate(
            state,
            method,
            &BTreeMap::new(),
            params,
            &HeaderMap::new(),
            b"",
        )
        .map_err(|fault| fault.code)
    }

    #[test]
    fn a_good_rpc_call_passes_once() {
        let mut state = state();
        for method in ["GET", "POST"] {
            let params = signed(method, "S1", &format!("nonce-{method}"), &[]);
            assert_eq!(check(&mut state, method, &params), Ok("AK1".into()));
            assert_eq!(
                check(&mut state, method, &params),
                Err("SignatureNonceUsed".into())
            );
        }
        // Signed for GET, sent as POST: the method is part of the string to sign.
        let params = signed("GET", "S1", "n-method", &[]);
        assert_eq!(
            check(&mut state, "POST", &params),
            Err("SignatureDoesNotMatch".into())
        );
    }

    #[test]
    fn rpc_failures_carry_the_gateway_codes() {
        let mut state = state();
        let stale = (Timestamp::now() - jiff::SignedDuration::from_mins(20))
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let cases: Vec<(Params, &str)> = vec![
            (signed("GET", "wrong", "n1", &[]), "SignatureDoesNotMatch"),
            (
                signed("GET", "S1", "n2", &[("AccessKeyId", "AK9")]),
                "InvalidAccessKeyId.NotFound",
            ),
            (
                signed("GET", "S1", "n3", &[("Timestamp", &stale)]),
                "InvalidTimeStamp.Expired",
            ),
            (
                signed("GET", "S1", "n4", &[("Timestamp", "yesterday")]),
                "InvalidTimeStamp.Format",
            ),
            (
                signed("GET", "S1", "n5", &[("SignatureMethod", "HMAC-SHA256")]),
                "InvalidSignatureMethod",
            ),
            (
                signed("GET", "S1", "n6", &[("SignatureVersion", "2.0")]),
                "InvalidSignatureVersion",
            ),
            (
                signed("GET", "S1", "n7", &[("Format", "XML")]),
                "InvalidParameter.Format",
            ),
            (
                signed("GET", "S1", "n8", &[("SignatureNonce", "")]),
                "MissingSignatureNonce",
            ),
            (
                signed("GET", "S1", "n9", &[("Timestamp", "")]),
                "MissingTimestamp",
            ),
            (
                signed("GET", "S1", "n10", &[("SignatureMethod", "")]),
                "MissingSignatureMethod",
            ),
            (
                signed("GET", "S1", "n11", &[("SignatureVersion", "")]),
                "MissingSignatureVersion",
            ),
            (
                signed("GET", "S1", "n14", &[("Action", "")]),
                "MissingAction",
            ),
            (
                signed("GET", "S1", "n15", &[("Version", "")]),
                "MissingVersion",
            ),
            (
                signed("GET", "S1", "n16", &[("AccessKeyId", "")]),
                "MissingAccessKeyId",
            ),
        ];
        for (params, code) in cases {
            assert_eq!(check(&mut state, "GET", &params), Err(code.to_string()));
        }
        let mut unsigned = signed("GET", "S1", "n12", &[]);
        unsigned.remove("Signature");
        assert_eq!(
            check(&mut state, "GET", &unsigned),
            Err("MissingSignature".into())
        );
        let mut tampered = signed("GET", "S1", "n13", &[]);
        tampered.insert("DirectoryId".into(), "d-2".into());
        assert_eq!(
            check(&mut state, "GET", &tampered),
            Err("SignatureDoesNotMatch".into())
        );
        // Nothing of either signature: the ACS3 answer, which names both.
        let fault = authenticate(
            &mut state,
            "GET",
            &BTreeMap::new(),
            &Params::new(),
            &HeaderMap::new(),
            b"",
        )
        .unwrap_err();
        assert_eq!(fault.code, "IncompleteSignature");
        assert!(
            fault.message.contains("Signature parameter"),
            "{}",
            fault.message
        );
    }

    #[test]
    fn rpc_calls_with_temporary_keys_need_their_token() {
        let mut state = state();
        state.sts_keys.insert(
            "STS.1".into(),
            StsKey {
                secret: "S2".into(),
                token: "CAIStoken".into(),
                expiration: Timestamp::now() + jiff::SignedDuration::from_mins(30),
                account_id: "1234".into(),
                role_name: "op".into(),
                role_id: "300000000000000001".into(),
                session_name: "s".into(),
            },
        );
        let call = |nonce: &str, token: &str| {
            signed(
                "POST",
                "S2",
                nonce,
                &[("AccessKeyId", "STS.1"), ("SecurityToken", token)],
            )
        };
        assert_eq!(
            check(&mut state, "POST", &call("t1", "")),
            Err("MissingSecurityToken".into())
        );
        assert_eq!(
            check(&mut state, "POST", &call("t2", "forged")),
            Err("InvalidSecurityToken.Malformed".into())
        );
        assert_eq!(
            check(&mut state, "POST", &call("t3", "CAISother")),
            Err("InvalidSecurityToken.MismatchWithAccessKey".into())
        );
        assert_eq!(
            check(&mut state, "POST", &call("t4", "CAIStoken")),
            Ok("STS.1".into())
        );
        if let Some(key) = state.sts_keys.get_mut("STS.1") {
            key.expiration = Timestamp::now() - jiff::SignedDuration::from_secs(1);
        }
        assert_eq!(
            check(&mut state, "POST", &call("t5", "CAIStoken")),
            Err("InvalidSecurityToken.Expired".into())
        );
    }

    fn oidc(role_arn: &str) -> Params {
        [
            ("RoleArn", role_arn),
            (
                "OIDCProviderArn",
                "acs:ram::5012345678901234:oidc-provider/ack",
            ),
            ("OIDCToken", "a.b.c"),
            ("RoleSessionName", "op-session"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Seeded keys answer for their own account (or the default one), as the account itself or
    /// as the RAM user named; a minted STS key for the role ARN's account; an unknown key not.
    #[test]
    fn get_caller_identity_names_each_key_s_account() {
        let seed = Seed::parse(
            r#"{"accessKeys": [
                {"accessKeyId": "AK1", "accessKeySecret": "S1"},
                {"accessKeyId": "AK2", "accessKeySecret": "S2", "accountId": "5012345678901234",
                 "userName": "ops.bot"},
                {"accessKeyId": "AK3", "accessKeySecret": "S3"}]}"#,
            "test",
        )
        .unwrap();
        let mut state = EmulatorState::new(seed);
        let root = caller_identity(&state, "AK1").unwrap();
        assert_eq!(root["IdentityType"], "Account");
        assert_eq!(root["AccountId"], super::super::seed::DEFAULT_ACCOUNT_ID);
        assert_eq!(root["Arn"], "acs:ram::1000000000000001:root");
        assert_eq!(root["UserId"], root["AccountId"]);
        // Every key without an account id is of the same (default) account.
        assert_eq!(
            caller_identity(&state, "AK3").unwrap()["AccountId"],
            root["AccountId"]
        );

        let user = caller_identity(&state, "AK2").unwrap();
        assert_eq!(user["IdentityType"], "RAMUser");
        assert_eq!(user["AccountId"], "5012345678901234");
        assert_eq!(user["Arn"], "acs:ram::5012345678901234:user/ops.bot");
        let user_id = user["UserId"].as_str().unwrap_or_default().to_string();
        assert!(
            user_id.len() == 16 && user_id.bytes().all(|b| b.is_ascii_digit()),
            "{user}"
        );
        assert_eq!(user["PrincipalId"], user["UserId"]);
        assert_eq!(
            caller_identity(&state, "AK2").unwrap()["UserId"],
            user["UserId"]
        );

        let minted =
            assume_role_with_oidc(&mut state, &oidc("acs:ram::7000000000000007:role/mfa-op"))
                .unwrap();
        let sts_key = minted["Credentials"]["AccessKeyId"]
            .as_str()
            .unwrap_or_default();
        let assumed = caller_identity(&state, sts_key).unwrap();
        assert_eq!(assumed["IdentityType"], "AssumedRoleUser");
        assert_eq!(assumed["AccountId"], "7000000000000007");
        assert_eq!(
            assumed["Arn"],
            "acs:ram::7000000000000007:assumed-role/mfa-op/op-session"
        );
        assert_eq!(
            assumed["PrincipalId"],
            minted["AssumedRoleUser"]["AssumedRoleId"]
        );
        let role_id = assumed["RoleId"].as_str().unwrap_or_default();
        assert_eq!(assumed["PrincipalId"], format!("{role_id}:op-session"));
        assert!(role_id.len() == 19 && role_id.starts_with('3'), "{assumed}");

        let unknown = caller_identity(&state, "AK9").unwrap_err();
        assert_eq!(
            (unknown.status, unknown.code.as_str()),
            (404, "InvalidAccessKeyId.NotFound")
        );
    }

    #[test]
    fn a_role_arn_without_an_account_of_digits_is_refused() {
        let mut state = state();
        for arn in [
            "acs:ram::12ab:role/op",
            "acs:ram:::role/op",
            "acs:ram::1234:role/",
            "acs:ram::1234:user/op",
            "arn:aws:iam::1234:role/op",
        ] {
            let fault = assume_role_with_oidc(&mut state, &oidc(arn)).unwrap_err();
            assert_eq!(fault.code, "InvalidParameter.RoleArn", "{arn}");
        }
        assert!(state.sts_keys.is_empty());
    }

    /// GetCallerIdentity over HTTP, RPC-signed as the older SDKs send it: the seeded account in
    /// the answer with a RequestId; an unknown key gets the gateway's 404.
    #[tokio::test]
    async fn get_caller_identity_over_http() {
        let seed = Seed::parse(
            r#"{"accessKeys": [{"accessKeyId": "AK1", "accessKeySecret": "S1",
                                "accountId": "5012345678901234"}]}"#,
            "test",
        )
        .unwrap();
        let state: SharedState = Arc::new(Mutex::new(EmulatorState::new(seed)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        let http = crate::cloud::http_client().unwrap();
        let sts = [
            ("Action", "GetCallerIdentity"),
            ("Version", api::STS_VERSION),
            ("DirectoryId", ""),
        ];
        let known = signed("POST", "S1", "gci-1", &sts);
        let answer = http
            .post(format!("{base}/"))
            .form(&known)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::OK);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["AccountId"], "5012345678901234", "{body}");
        assert_eq!(body["IdentityType"], "Account");
        assert!(body["RequestId"].is_string(), "{body}");

        let mut unknown_key = sts.to_vec();
        unknown_key.push(("AccessKeyId", "AK9"));
        let unknown = signed("POST", "S1", "gci-2", &unknown_key);
        let answer = http
            .post(format!("{base}/"))
            .form(&unknown)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::NOT_FOUND);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["Code"], "InvalidAccessKeyId.NotFound", "{body}");
        assert_eq!(lock(&state).calls["GetCallerIdentity"]["ok"], 1);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[test]
    fn the_write_ring_keeps_only_the_newest() {
        let mut state = state();
        for i in 0..WRITES_KEPT + 5 {
            state.record_write(WriteRecord {
                at_ms: i as i64,
                action: "UpdateUserMFAAuthenticationSettings".into(),
                outcome: "ok".into(),
                directory_id: Some("d-1".into()),
                user_id: Some(format!("u-{i}")),
                user_principal_name: None,
            });
        }
        assert_eq!(state.writes.len(), WRITES_KEPT);
        assert_eq!(state.writes.front().map(|w| w.at_ms), Some(5));
        assert_eq!(
            state.writes.back().and_then(|w| w.user_id.clone()),
            Some(format!("u-{}", WRITES_KEPT + 4))
        );
    }

    /// `/_emulator/writes` lists write calls (any outcome) with their arrival time, user and
    /// directory, and nothing of the reads; `DELETE` clears it. `/_emulator/calls/users` counts
    /// the calls naming a user, by action and user.
    #[tokio::test]
    async fn the_writes_path_lists_write_calls_with_their_time() {
        let seed = Seed::parse(
            r#"{"accessKeys": [{"accessKeyId": "AK1", "accessKeySecret": "S1"}],
                "directories": [{"directoryId": "d-1", "mfaAuthenticationSettings": "Byuser",
                                 "users": [{"userId": "u-1", "userName": "one",
                                            "userMfaAuthenticationSettings": "Enabled"}]}]}"#,
            "test",
        )
        .unwrap();
        let state: SharedState = Arc::new(Mutex::new(EmulatorState::new(seed)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        let http = crate::cloud::http_client().unwrap();
        let before = Timestamp::now().as_millisecond();
        let update = [
            ("Action", "UpdateUserMFAAuthenticationSettings"),
            ("UserId", "u-1"),
            ("UserMFAAuthenticationSettings", "Disabled"),
        ];
        let read = signed("GET", "S1", "w-read", &[("UserId", "u-1")]);
        let good = signed("GET", "S1", "w-good", &update);
        let forged = signed("GET", "wrong", "w-forged", &update);
        for params in [&read, &good, &forged] {
            http.get(format!("{base}/"))
                .query(params)
                .send()
                .await
                .unwrap();
        }
        let after = Timestamp::now().as_millisecond();
        let recorded = || async {
            let answer = http
                .get(format!("{base}/_emulator/writes"))
                .send()
                .await
                .unwrap();
            answer.json::<Value>().await.unwrap()
        };
        let writes: Vec<WriteRecord> = serde_json::from_value(recorded().await).unwrap();
        let outcomes: Vec<&str> = writes.iter().map(|w| w.outcome.as_str()).collect();
        assert_eq!(outcomes, ["ok", "SignatureDoesNotMatch"]);
        for write in &writes {
            assert_eq!(write.action, "UpdateUserMFAAuthenticationSettings");
            assert_eq!(write.user_id.as_deref(), Some("u-1"));
            assert_eq!(write.directory_id.as_deref(), Some("d-1"));
            assert!((before..=after).contains(&write.at_ms), "{write:?}");
        }
        let raw = recorded().await;
        assert!(
            raw[0]["atMs"].is_i64() && raw[0]["userId"] == "u-1",
            "{raw}"
        );
        let cleared = http
            .delete(format!("{base}/_emulator/writes"))
            .send()
            .await
            .unwrap();
        assert_eq!(cleared.status(), reqwest::StatusCode::NO_CONTENT);
        let writes: Vec<WriteRecord> = serde_json::from_value(recorded().await).unwrap();
        assert!(writes.is_empty());
        // The counters are another view: the writes' clearing leaves them.
        assert_eq!(
            lock(&state).calls["UpdateUserMFAAuthenticationSettings"]["ok"],
            1
        );
        let by_user: Value = http
            .get(format!("{base}/_emulator/calls/users"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            by_user,
            json!({"GetUser": {"u-1": 1}, "UpdateUserMFAAuthenticationSettings": {"u-1": 2}})
        );
        http.delete(format!("{base}/_emulator/calls"))
            .send()
            .await
            .unwrap();
        assert!(lock(&state).user_calls.is_empty());
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
