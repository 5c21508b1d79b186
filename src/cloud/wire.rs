//! What every Alibaba Cloud RPC call shares on the wire, whoever signs it (the API client) or does
//! not (the anonymous STS exchange behind RRSA): the date and nonce formats, and sending a request
//! and reading its answer into JSON or a classified `CloudError`. Every endpoint is treated as
//! hostile: no redirect is followed, no body is read past `MAX_BODY_BYTES`, and every string it
//! sends is bounded to one line before it reaches an error.

use std::time::Duration;

use jiff::Timestamp;
use rand::Rng;
use serde::de::DeserializeOwned;

use super::error::CloudError;
use super::text::{MAX_CLOUD_TEXT, one_line};

/// The largest answer read: a ListUsers page of 100 users is ~60 KiB, so 1 MiB is far above any
/// real answer and bounds what one call can make the operator hold.
pub const MAX_BODY_BYTES: usize = 1 << 20;

pub const USER_AGENT: &str = concat!("cloudsso-mfa-operator/", env!("CARGO_PKG_VERSION"));

/// The `x-acs-date` format: ISO 8601 UTC to the second.
pub fn acs_timestamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_nonce() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

pub(crate) fn transport_error(action: &str, url: &str, error: reqwest::Error) -> CloudError {
    let timeout = error.is_timeout();
    // The URL is named once, as the endpoint; reqwest's copy carries the query too.
    let error = error.without_url();
    // reqwest's Display hides the cause ("error sending request"); the source says what happened.
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        detail = format!("{detail}: {cause}");
        source = cause.source();
    }
    CloudError::Transport {
        action: action.into(),
        endpoint: one_line(url),
        detail: one_line(&detail),
        timeout,
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
            // Bounded like the rest: the known codes are short, so matching on them still works.
            code: one_line(&code),
            // Some messages span lines (the string to sign); status conditions and logs want one.
            message: one_line(&message.unwrap_or_default()),
            request_id: request_id.map_or_else(|| "-".into(), |id| one_line(&id)),
            http_status: status,
            retry_after,
        },
        _ => CloudError::Decode {
            action: action.into(),
            http_status: status,
            detail: format!(
                "error body without a Code: {}",
                // Four bytes a character at most: enough for the bound, and no more is decoded.
                one_line(&String::from_utf8_lossy(
                    &body[..body.len().min(MAX_CLOUD_TEXT * 4)]
                ))
            ),
        },
    }
}

/// A 3xx answer, refused: following it would send the signed request elsewhere.
fn redirect_refused(
    action: &str,
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
) -> CloudError {
    let target = match headers.get(reqwest::header::LOCATION) {
        Some(location) => format!(
            "redirect to {} not followed",
            one_line(&String::from_utf8_lossy(location.as_bytes()))
        ),
        None => "redirect not followed".to_string(),
    };
    CloudError::Refused {
        action: action.into(),
        what: "redirect",
        detail: format!("the endpoint answered {status} ({target})"),
    }
}

fn body_too_large(action: &str, status: u16, read: &str) -> CloudError {
    CloudError::Refused {
        action: action.into(),
        what: "body_too_large",
        detail: format!(
            "the endpoint's answer (HTTP {status}) is larger than {} MiB; {read}",
            MAX_BODY_BYTES >> 20
        ),
    }
}

/// The body, chunk by chunk, refused as soon as it would pass `MAX_BODY_BYTES`: never more is
/// held, whatever the endpoint sends or claims.
async fn read_body(
    mut response: reqwest::Response,
    action: &str,
    url: &str,
    status: u16,
) -> Result<Vec<u8>, CloudError> {
    if let Some(length) = response.content_length()
        && length > MAX_BODY_BYTES as u64
    {
        return Err(body_too_large(
            action,
            status,
            &format!("Content-Length {length}, not read"),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| transport_error(action, url, error))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(body_too_large(
                action,
                status,
                &format!("stopped reading after {} bytes", body.len()),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
        .map_err(|error| transport_error(action, url, error))?;
    if response.status().is_redirection() {
        return Err(redirect_refused(
            action,
            response.status(),
            response.headers(),
        ));
    }
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_body(response, action, url, status).await?;
    if status >= 400 {
        let error = api_error(action, status, &headers, &body);
        tracing::debug!(action, %error, "cloud call failed");
        return Err(error);
    }
    let answer = serde_json::from_slice(&body).map_err(|error| CloudError::Decode {
        action: action.into(),
        http_status: status,
        // serde quotes what it could not read, which is the endpoint's text.
        detail: one_line(&error.to_string()),
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
        detail: one_line(&error.to_string()),
    })
}
