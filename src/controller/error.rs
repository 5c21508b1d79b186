//! The controllers' error type: what went wrong, which condition reason it shows as, and whether
//! waiting can fix it.

use crate::api::Reason;
use crate::cloud::{ApiErrorKind, CloudError, CredentialsError};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("credentials missing: {0}")]
    CredentialsMissing(String),
    #[error("credentials rejected: {0}")]
    CredentialsInvalid(String),
    #[error("directory {directory_id} not found: {detail}")]
    DirectoryNotFound {
        directory_id: String,
        detail: String,
    },
    #[error("user {user} not found in directory {directory_id}{detail}")]
    UserNotFound {
        user: String,
        directory_id: String,
        detail: String,
    },
    #[error(
        "RAM user {user} has no login profile (no console logon), so there is no logon to require MFA at; nothing was written"
    )]
    NoLoginProfile { user: String },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("throttled by the cloud: {0}")]
    Throttled(String),
    #[error("cloud unavailable: {0}")]
    CloudUnavailable(String),
    #[error("{0}")]
    Cloud(String),
    #[error("{subject} is already managed by {owner}")]
    Conflict { subject: String, owner: String },
    #[error("CloudAccount {account} does not allow this resource: {detail}")]
    AccountNotAllowed { account: String, detail: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("{0}")]
    Pending(String),
}

impl ReconcileError {
    /// The condition reason (and Event reason) a person sees.
    pub fn reason(&self) -> Reason {
        match self {
            Self::CredentialsMissing(_) => Reason::CredentialsMissing,
            Self::CredentialsInvalid(_) => Reason::CredentialsInvalid,
            Self::DirectoryNotFound { .. } => Reason::DirectoryNotFound,
            Self::UserNotFound { .. } => Reason::UserNotFound,
            Self::NoLoginProfile { .. } => Reason::NoLoginProfile,
            Self::InvalidSpec(_) => Reason::InvalidSpec,
            Self::Forbidden(_) => Reason::Forbidden,
            Self::Throttled(_) => Reason::Throttled,
            Self::CloudUnavailable(_) => Reason::CloudUnavailable,
            Self::Cloud(_) => Reason::CloudError,
            Self::Conflict { .. } => Reason::Conflict,
            Self::AccountNotAllowed { .. } => Reason::AccountNotAllowed,
            Self::Kube(_) => Reason::KubernetesError,
            Self::Finalizer(_) => Reason::FinalizerError,
            Self::Pending(_) => Reason::WaitingForOlderPolicy,
        }
    }

    /// Whether the same call can succeed later without anyone fixing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled(_)
                | Self::CloudUnavailable(_)
                | Self::Kube(_)
                | Self::Finalizer(_)
                | Self::Pending(_)
        )
    }

    /// Maps a cloud error met while working on `directory_id` (and `user`, when about a user).
    pub fn from_cloud(error: CloudError, directory_id: &str, user: Option<&str>) -> Self {
        let text = error.to_string();
        if let CloudError::Credentials(credentials) = &error {
            return match credentials {
                CredentialsError::Missing(_) => Self::CredentialsMissing(text),
                error if error.is_transient() => Self::CloudUnavailable(text),
                _ => Self::CredentialsInvalid(text),
            };
        }
        match error.api_kind() {
            Some(ApiErrorKind::NotFound) => {
                let code = error.code().unwrap_or_default();
                if code.contains(".Directory") {
                    Self::DirectoryNotFound {
                        directory_id: directory_id.to_string(),
                        detail: text,
                    }
                } else if code.contains(".User") && user.is_some() {
                    Self::UserNotFound {
                        user: user.unwrap_or_default().to_string(),
                        directory_id: directory_id.to_string(),
                        detail: format!(": {text}"),
                    }
                } else {
                    Self::Cloud(text)
                }
            }
            Some(ApiErrorKind::CredentialsInvalid) => Self::CredentialsInvalid(text),
            Some(ApiErrorKind::Forbidden) => Self::Forbidden(text),
            Some(ApiErrorKind::Throttled) => Self::Throttled(text),
            Some(ApiErrorKind::InvalidParameter) => Self::InvalidSpec(text),
            Some(ApiErrorKind::ServerError) => Self::CloudUnavailable(text),
            _ if error.is_retryable() => Self::CloudUnavailable(text),
            _ => Self::Cloud(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cloud::error::api_error_for_test as api;

    #[test]
    fn cloud_errors_map_to_specific_reasons() {
        let cases = [
            (
                api("EntityNotExists.Directory", 404),
                Reason::DirectoryNotFound,
                false,
            ),
            (
                api("EntityNotExists.User", 404),
                Reason::UserNotFound,
                false,
            ),
            (
                api("InvalidAccessKeyId.NotFound", 404),
                Reason::CredentialsInvalid,
                false,
            ),
            (
                api("SignatureDoesNotMatch", 400),
                Reason::CredentialsInvalid,
                false,
            ),
            (api("Throttling.User", 400), Reason::Throttled, true),
            (
                api("ServiceUnavailable", 503),
                Reason::CloudUnavailable,
                true,
            ),
            (api("NoPermission", 403), Reason::Forbidden, false),
            (
                api("InvalidParameter.AllowedVerificationTypes", 400),
                Reason::InvalidSpec,
                false,
            ),
        ];
        for (error, reason, retryable) in cases {
            let mapped = ReconcileError::from_cloud(error, "d-1", Some("alice"));
            assert_eq!(
                (mapped.reason(), mapped.is_retryable()),
                (reason, retryable),
                "{mapped}"
            );
        }
    }
}
