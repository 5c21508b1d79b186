//! What every Alibaba Cloud RPC call shares on the wire, whoever signs it (the API client) or does
//! not (the anonymous STS exchange behind RRSA): the date and nonce formats, and sending a request
//! and reading its answer into JSON or a classified `CloudError`.

use std::time::Duration;

use jiff::Timestamp;
use rand::Rng;
use serde::de::DeserializeOwned;

use super::error::CloudError;

pub const USER_AGENT: &str = concat!("cloudsso-mfa-operator/", env!("CARGO_PKG_VERSION"));

/// The `x-acs-date` format: ISO 8601 UTC to the second.
pub fn acs_timestamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_nonce() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

pub(crate) fn transport_error(action: &str, url: &str, error: &reqwest::Error) -> CloudError {
    // reqwest's Display hides the cause ("error sending request"); the source says what happened.
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail = format!("{detail}: {cause}");
        source = cause.source();
    }
    CloudError::Transport {
        action: action.into(),
        endpoint: url.into(),
        detail,
        timeout: error.is_timeout(),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    request_id: Option<String>,
}

pub(crate) fn api_error(
    action: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) -> CloudError {
    let retry_after = headers
        .get("x-acs-retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .filter(|millis| *millis > 0)
        .map(Duration::from_millis);
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            code: Some(code),
            message,
            request_id,
        }) => CloudError::Api {
            action: action.into(),
            code,
            // Some messages span lines (the string to sign); status conditions and logs want one.
            message: message
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            request_id: request_id.unwrap_or_else(|| "-".into()),
            http_status: status,
            retry_after,
        },
        _ => CloudError::Decode {
            action: action.into(),
            http_status: status,
            detail: format!(
                "error body without a Code: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        },
    }
}

/// Sends `request` and reads the answer: an API error from a 4xx/5xx body, else the JSON value
/// with the HTTP status it came with.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    action: &str,
    url: &str,
) -> Result<(u16, serde_json::Value), CloudError> {
    let response = request
        .send()
        .await
        .map_err(|error| transport_error(action, url, &error))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|error| transport_error(action, url, &error))?;
    if status >= 400 {
        let error = api_error(action, status, &headers, &body);
        tracing::debug!(action, %error, "cloud call failed");
        return Err(error);
    }
    let answer = serde_json::from_slice(&body).map_err(|error| CloudError::Decode {
        action: action.into(),
        http_status: status,
        detail: error.to_string(),
    })?;
    Ok((status, answer))
}

/// The typed answer of `action` from its JSON.
pub(crate) fn decode<T: DeserializeOwned>(
    action: &str,
    status: u16,
    answer: serde_json::Value,
) -> Result<T, CloudError> {
    serde_json::from_value(answer).map_err(|error| CloudError::Decode {
        action: action.into(),
        http_status: status,
        detail: error.to_string(),
    })
}
