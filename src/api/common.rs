//! Spec fields, enums and status pieces shared by the kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The region CloudSSO answers in when a resource names none.
pub const DEFAULT_REGION: &str = "cn-shanghai";

pub fn default_region() -> String {
    DEFAULT_REGION.to_string()
}

/// The longest Kubernetes object name (a DNS subdomain).
pub const MAX_NAME: usize = 253;
/// The longest URL an `endpoint` may be (scheme, host and port only).
pub const MAX_ENDPOINT: usize = 253;
/// The longest id or name of the cloud that a spec names (directory, user, RAM principal).
pub const MAX_CLOUD_NAME: usize = 128;

/// A reference to a Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of a Secret in the same namespace with keys `accessKeyId`, `accessKeySecret` and optionally `securityToken`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to a cluster-scoped `CloudAccount`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountReference {
    /// Name of a CloudAccount (cluster-scoped, written by cluster admins) that admits this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The CEL rules every namespaced spec carries: where its keys may go. A namespace may send its
/// own keys where it likes, never anyone else's: `region` and `endpoint` only beside
/// `credentialsSecretRef`; with an account, the account's region and endpoint apply.
pub const ONE_CREDENTIAL_RULE: &str = "!(has(self.credentialsSecretRef) && has(self.accountRef))";
pub const ONE_CREDENTIAL_MESSAGE: &str =
    "at most one of credentialsSecretRef and accountRef may be set";
pub const OWN_ENDPOINT_RULE: &str =
    "has(self.credentialsSecretRef) || (!has(self.endpoint) && !has(self.region))";
pub const OWN_ENDPOINT_MESSAGE: &str = "endpoint and region are allowed only together with credentialsSecretRef (the namespace's own keys); with accountRef, or with neither (the CloudAccount named default), the account's endpoint and region apply";
/// An endpoint is scheme://host[:port]: no path, query, fragment or user info.
pub const ENDPOINT_RULE: &str = "self.matches('^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$') || self.matches('^https?://\\\\[[0-9A-Fa-f:.]+\\\\](:[0-9]{1,5})?/?$')";
pub const ENDPOINT_MESSAGE: &str = "endpoint must be http(s)://host[:port] with no path, query or user, e.g. https://cloudsso.cn-shanghai.aliyuncs.com";

/// A status with the fields every kind shares.
pub trait HasCommonStatus {
    fn common(&self) -> &CommonStatus;
    fn common_mut(&mut self) -> &mut CommonStatus;
}

/// Where a resource's cloud calls go and with which credentials: the fields every spec shares.
pub trait CloudSpec {
    /// The region the spec names (only beside `credentialsSecretRef`); the default otherwise.
    fn region(&self) -> Option<&str>;
    fn endpoint(&self) -> Option<&str>;
    fn credentials_secret_ref(&self) -> Option<&SecretReference>;
    fn account_ref(&self) -> Option<&AccountReference>;
}

/// Lists every kind's CRD (`crds()`) and implements `CloudSpec` and `HasCommonStatus` for each
/// kind's spec and status, which carry those fields under their usual names.
macro_rules! kinds {
    ($($kind:ty: $spec:ty => $status:ty),* $(,)?) => {
        /// The CRD of every namespaced kind, and of `CloudAccount`.
        fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
            vec![<$crate::api::CloudAccount as kube::CustomResourceExt>::crd(), $(<$kind as kube::CustomResourceExt>::crd()),*]
        }
        $(
        impl $crate::api::HasCommonStatus for $status {
            fn common(&self) -> &$crate::api::CommonStatus {
                &self.common
            }
            fn common_mut(&mut self) -> &mut $crate::api::CommonStatus {
                &mut self.common
            }
        }

        impl $crate::api::CloudSpec for $spec {
            fn region(&self) -> Option<&str> {
                self.region.as_deref()
            }
            fn endpoint(&self) -> Option<&str> {
                self.endpoint.as_deref()
            }
            fn credentials_secret_ref(&self) -> Option<&$crate::api::SecretReference> {
                self.credentials_secret_ref.as_ref()
            }
            fn account_ref(&self) -> Option<&$crate::api::AccountReference> {
                self.account_ref.as_ref()
            }
        }
        )*
    };
}
pub(crate) use kinds;

/// Whether the controller writes to the cloud or only reports what it finds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ManagementPolicy {
    /// Make the cloud match the spec and put it back when it drifts.
    #[default]
    Enforce,
    /// Never write; report what the cloud has and whether it matches the spec.
    Observe,
}

/// What deleting the resource does to the cloud.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the cloud as it is.
    #[default]
    Orphan,
    /// Write back the value the cloud had before this resource first changed it (`status.restoreTo`).
    Restore,
}

/// Directory-wide MFA setting, as UpdateMFAAuthenticationSettings takes it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum MfaAuthenticationSettings {
    /// MFA is required for every user.
    Enabled,
    /// Each user's own setting applies (see UserMfaSetting).
    Byuser,
    /// MFA is off for every user.
    Disabled,
    /// MFA is required only for unusual (risky) logons.
    OnlyRiskyLogin,
}

impl MfaAuthenticationSettings {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Byuser => "Byuser",
            Self::Disabled => "Disabled",
            Self::OnlyRiskyLogin => "OnlyRiskyLogin",
        }
    }

    /// Whether OperationForRiskLogin means anything under this setting.
    pub fn takes_risk_login_operation(self) -> bool {
        matches!(self, Self::Byuser | Self::OnlyRiskyLogin)
    }
}

impl std::str::FromStr for MfaAuthenticationSettings {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "Enabled" => Ok(Self::Enabled),
            "Byuser" => Ok(Self::Byuser),
            "Disabled" => Ok(Self::Disabled),
            "OnlyRiskyLogin" => Ok(Self::OnlyRiskyLogin),
            other => Err(format!(
                "'{other}' is not an MFA setting (Enabled, Byuser, Disabled, OnlyRiskyLogin)"
            )),
        }
    }
}

/// What happens on an unusual logon under `Byuser` or `OnlyRiskyLogin`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum OperationForRiskLogin {
    /// MFA is prompted but may be skipped by users without a device.
    Autonomous,
    /// MFA is required; users without a device must bind one.
    EnforceVerify,
}

impl OperationForRiskLogin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Autonomous => "Autonomous",
            Self::EnforceVerify => "EnforceVerify",
        }
    }
}

impl std::str::FromStr for OperationForRiskLogin {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "Autonomous" => Ok(Self::Autonomous),
            "EnforceVerify" => Ok(Self::EnforceVerify),
            other => Err(format!(
                "'{other}' is not an operation for risky logons (Autonomous, EnforceVerify)"
            )),
        }
    }
}

/// A single user's MFA setting, as UpdateUserMFAAuthenticationSettings takes it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum UserMfaAuthenticationSettings {
    /// MFA is required for this user (when the directory is `Byuser`).
    Enabled,
    /// MFA is off for this user (when the directory is `Byuser`).
    Disabled,
}

impl UserMfaAuthenticationSettings {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "Enabled",
            Self::Disabled => "Disabled",
        }
    }
}

impl std::str::FromStr for UserMfaAuthenticationSettings {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "Enabled" => Ok(Self::Enabled),
            "Disabled" => Ok(Self::Disabled),
            other => Err(format!(
                "'{other}' is not a user MFA setting (Enabled, Disabled)"
            )),
        }
    }
}

/// Status fields every kind carries.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    /// Latest observations of the resource's state, in the metav1.Condition shape (`Ready`, `Synced`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the cloud was last read successfully (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// The Alibaba Cloud account the credentials belong to (STS GetCallerIdentity), with the endpoint: together with the directory (and user) they say which cloud object this resource claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The endpoint the calls went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The CloudAccount the calls were made through (absent with the namespace's own credentialsSecretRef).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_account: Option<String>,
}
