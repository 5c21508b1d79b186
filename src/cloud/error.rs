//! Errors of the cloud client, classified as retryable or terminal. A leaf: the credential chain,
//! the transport and the typed operations all build these, and this module needs none of them.

use std::path::PathBuf;
use std::time::Duration;

/// Whether trying the same call again can succeed without anyone changing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, 5xx, timeouts, connection faults.
    Retryable,
    /// Not found, invalid parameter, bad credentials, no permission: someone must fix something.
    Terminal,
}

/// What the caller should make of an API error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    Throttled,
    NotFound,
    InvalidParameter,
    CredentialsInvalid,
    Forbidden,
    ServerError,
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The API answered with an error body.
    #[error("{action} failed: {code}: {message} (HTTP {http_status}, request id {request_id})")]
    Api {
        action: String,
        code: String,
        message: String,
        request_id: String,
        http_status: u16,
        /// `x-acs-retry-after`, when the answer carried it.
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, or a timeout.
    #[error("{action} failed: could not reach {endpoint}: {detail}")]
    Transport {
        action: String,
        endpoint: String,
        detail: String,
        timeout: bool,
    },
    /// An answer that is not what the API documents.
    #[error("{action} failed: unexpected answer (HTTP {http_status}): {detail}")]
    Decode {
        action: String,
        http_status: u16,
        detail: String,
    },
    /// An answer the client will not follow or read to its end: a redirect, a body over the cap,
    /// a listing that does not end. Terminal: an endpoint that does this will do it again.
    #[error("{action} failed: {detail}")]
    Refused {
        action: String,
        /// What was refused, from a fixed set (the metric outcome): `redirect`,
        /// `body_too_large`, `too_many_pages`, `listing_too_large`.
        what: &'static str,
        detail: String,
    },
    /// No usable credentials.
    #[error("{0}")]
    Credentials(#[from] CredentialsError),
}

/// Why no credentials could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing configured; the text names what to set.
    #[error("{0}")]
    Missing(String),
    #[error("invalid credentials: {0}")]
    Invalid(String),
    #[error("cannot read the OIDC token file {path}: {detail}")]
    TokenFile { path: PathBuf, detail: String },
    /// The STS exchange failed; kept as text and its class, so the two error types do not nest.
    #[error("RRSA: STS AssumeRoleWithOIDC failed: {detail}")]
    Sts { detail: String, transient: bool },
}

impl CredentialsError {
    /// The STS call behind RRSA failed with `error`.
    pub fn sts(error: &CloudError) -> Self {
        Self::Sts {
            detail: error.to_string(),
            transient: error.is_retryable(),
        }
    }

    /// Whether asking again later can help (an STS outage, not a bad role).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Sts {
                transient: true,
                ..
            }
        )
    }
}

impl CloudError {
    pub fn api_kind(&self) -> Option<ApiErrorKind> {
        match self {
            CloudError::Api {
                code, http_status, ..
            } => Some(classify_code(code, *http_status)),
            _ => None,
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            CloudError::Api { .. } => match self.api_kind() {
                Some(ApiErrorKind::Throttled | ApiErrorKind::ServerError) => ErrorClass::Retryable,
                _ => ErrorClass::Terminal,
            },
            CloudError::Transport { .. } => ErrorClass::Retryable,
            // A garbled answer from a gateway is usually transient; a bad credential chain is not.
            CloudError::Decode { http_status, .. } if *http_status >= 500 => ErrorClass::Retryable,
            CloudError::Credentials(error) if error.is_transient() => ErrorClass::Retryable,
            _ => ErrorClass::Terminal,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retryable
    }

    /// The API error code, e.g. `EntityNotExists.User`.
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the cloud has no such entity as the call named (a user, a directory): the
    /// `EntityNotExists.*` codes of CloudSSO and the `EntityNotExist.*` of RAM, one test for both
    /// spellings. RAM's "this user has no MFA device" and "no login profile" are answers about a
    /// user that exists.
    pub fn is_entity_gone(&self) -> bool {
        self.code().is_some_and(|code| {
            code.starts_with("EntityNotExist")
                && !self.is_no_mfa_device()
                && code != "EntityNotExist.User.LoginProfile"
        })
    }

    /// RAM's answer for a user that exists with no MFA device bound.
    pub fn is_no_mfa_device(&self) -> bool {
        self.code() == Some("EntityNotExist.User.MFADevice")
    }
}

/// The error codes CloudSSO (2021-05-15), RAM IMS (2019-08-15) and STS document for the calls
/// this operator makes, and those it matches on: the only codes that become metric labels.
pub const KNOWN_CODES: &[&str] = &[
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
    "Throttling.Concurrency",
    "ServiceUnavailable",
    "InternalError",
    "UnknownError",
    "EntityNotExists.User",
    "EntityNotExists.Directory",
    "EntityNotExist.User",
    "EntityNotExist.User.MFADevice",
    "EntityNotExist.User.LoginProfile",
    "EntityNotExists.Group",
    "InvalidAccessKeyId.NotFound",
    "InvalidAccessKeyId.Inactive",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "SignatureNonceUsed",
    "InvalidSecurityToken.Expired",
    "InvalidSecurityToken.Malformed",
    "InvalidSecurityToken.MismatchWithAccessKey",
    "InvalidTimeStamp.Expired",
    "InvalidTimeStamp.Format",
    "InvalidAction.NotFound",
    "InvalidParameter",
    "InvalidParameter.AllowedVerificationTypes",
    "InvalidParameter.MFAAuthenticationSettings",
    "InvalidParameter.UserMFAAuthenticationSettings",
    "InvalidParameter.OperationForRiskLogin",
    "InvalidParameter.MaxResults",
    "InvalidParameter.NextToken",
    "InvalidParameter.Filter",
    "InvalidParameter.Marker",
    "InvalidParameter.MFAOperationForLogin",
    "InvalidParameter.DurationSeconds",
    "InvalidParameter.OIDCProviderArn",
    "InvalidParameter.OIDCToken",
    "InvalidParameter.RoleArn",
    "MissingParameter",
    "MissingDirectoryId",
    "MissingUserId",
    "Forbidden",
    "Forbidden.RAM",
    "Forbidden.AccessKeyDisabled",
    "NoPermission",
    "OperationConflict",
];

/// The metric label for an API error code: the code when known, else `other`, so an endpoint
/// cannot create a series per string it makes up.
pub fn code_label(code: &str) -> &'static str {
    KNOWN_CODES
        .iter()
        .find(|known| **known == code)
        .copied()
        .unwrap_or("other")
}

/// The outcomes that are not an API error code (see `ApiClient::call`).
const OTHER_OUTCOMES: &[&str] = &[
    "ok",
    "timeout",
    "connection",
    "decode",
    "credentials",
    "redirect",
    "body_too_large",
    "too_many_pages",
    "listing_too_large",
    "other",
];

/// The metric label for a call's outcome: one of a fixed set, else `other`.
pub fn outcome_label(outcome: &str) -> &'static str {
    OTHER_OUTCOMES
        .iter()
        .find(|known| **known == outcome)
        .copied()
        .unwrap_or_else(|| code_label(outcome))
}

/// Maps Alibaba Cloud error codes (and, failing that, the HTTP status) to what they mean.
pub fn classify_code(code: &str, http_status: u16) -> ApiErrorKind {
    let lower = code.to_ascii_lowercase();
    if lower.starts_with("throttling") || http_status == 429 {
        ApiErrorKind::Throttled
    } else if lower.starts_with("entitynotexist")
        || lower.ends_with(".notfound") && !lower.starts_with("invalidaccesskeyid")
    {
        ApiErrorKind::NotFound
    } else if lower.starts_with("invalidaccesskeyid")
        || lower.starts_with("signaturedoesnotmatch")
        || lower.starts_with("invalidsecuritytoken")
        || lower.starts_with("incompletesignature")
        || lower == "signaturenoncereused"
        || lower == "invalidtimestamp.expired"
    {
        ApiErrorKind::CredentialsInvalid
    } else if lower.starts_with("forbidden")
        || lower.starts_with("nopermission")
        || http_status == 403
    {
        ApiErrorKind::Forbidden
    } else if lower.starts_with("invalidparameter")
        || lower.starts_with("missing")
        || lower.starts_with("invalid")
    {
        ApiErrorKind::InvalidParameter
    } else if http_status >= 500 || lower.starts_with("internalerror") {
        ApiErrorKind::ServerError
    } else if http_status == 404 {
        ApiErrorKind::NotFound
    } else {
        ApiErrorKind::Other
    }
}

/// An API error as the cloud would answer `code` with `http_status`, for unit tests here and in
/// the controllers (which map these to condition reasons).
#[cfg(test)]
pub(crate) fn api_error_for_test(code: &str, http_status: u16) -> CloudError {
    CloudError::Api {
        action: "GetUser".into(),
        code: code.into(),
        message: "m".into(),
        request_id: "r".into(),
        http_status,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_of_a_missing_entity_are_gone_but_a_missing_device_is_not() {
        for code in [
            "EntityNotExists.User",
            "EntityNotExist.User",
            "EntityNotExists.Directory",
        ] {
            assert!(api_error_for_test(code, 404).is_entity_gone(), "{code}");
        }
        let no_profile = api_error_for_test("EntityNotExist.User.LoginProfile", 404);
        assert!(
            !no_profile.is_entity_gone(),
            "the user exists, without console logon"
        );
        let no_device = api_error_for_test("EntityNotExist.User.MFADevice", 404);
        assert!(!no_device.is_entity_gone());
        assert!(no_device.is_no_mfa_device());
        assert!(!api_error_for_test("Throttling.User", 400).is_entity_gone());
    }

    fn api(code: &str, status: u16) -> CloudError {
        api_error_for_test(code, status)
    }

    #[test]
    fn throttling_and_server_errors_are_retryable() {
        assert!(api("Throttling.User", 400).is_retryable());
        assert!(api("Throttling.Api", 400).is_retryable());
        assert!(api("InternalError", 500).is_retryable());
        assert!(api("ServiceUnavailable", 503).is_retryable());
    }

    #[test]
    fn reference_and_credential_errors_are_terminal() {
        for (code, status, kind) in [
            ("EntityNotExists.User", 404, ApiErrorKind::NotFound),
            ("EntityNotExists.Directory", 404, ApiErrorKind::NotFound),
            (
                "InvalidAccessKeyId.NotFound",
                404,
                ApiErrorKind::CredentialsInvalid,
            ),
            (
                "SignatureDoesNotMatch",
                400,
                ApiErrorKind::CredentialsInvalid,
            ),
            (
                "InvalidParameter.MFAAuthenticationSettings",
                400,
                ApiErrorKind::InvalidParameter,
            ),
            ("MissingDirectoryId", 400, ApiErrorKind::InvalidParameter),
            ("NoPermission", 403, ApiErrorKind::Forbidden),
        ] {
            let error = api(code, status);
            assert_eq!(error.api_kind(), Some(kind), "{code}");
            assert!(!error.is_retryable(), "{code}");
        }
    }

    #[test]
    fn only_known_codes_become_labels() {
        assert_eq!(code_label("Throttling.User"), "Throttling.User");
        assert_eq!(code_label("EntityNotExists.User"), "EntityNotExists.User");
        assert_eq!(code_label("Throttling.User\u{1b}"), "other");
        assert_eq!(code_label(&"X".repeat(5000)), "other");
        assert_eq!(outcome_label("redirect"), "redirect");
        assert_eq!(outcome_label("Throttling.Api"), "Throttling.Api");
        assert_eq!(outcome_label("made-up"), "other");
    }

    #[test]
    fn refused_answers_are_terminal() {
        let error = CloudError::Refused {
            action: "ListUsers".into(),
            what: "redirect",
            detail: "the endpoint answered 302 Found".into(),
        };
        assert!(!error.is_retryable());
        assert_eq!(error.api_kind(), None);
    }

    #[test]
    fn connection_faults_are_retryable() {
        let error = CloudError::Transport {
            action: "GetUser".into(),
            endpoint: "http://127.0.0.1:1".into(),
            detail: "connection refused".into(),
            timeout: false,
        };
        assert!(error.is_retryable());
    }
}
