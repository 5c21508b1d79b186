//! `RamSecurityPreference`: the RAM account's MFA preferences for every RAM user (IMS
//! Get/SetSecurityPreference), one per account and endpoint.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    AccountReference, CommonStatus, DeletionPolicy, ENDPOINT_MESSAGE, ENDPOINT_RULE,
    ManagementPolicy, ONE_CREDENTIAL_MESSAGE, ONE_CREDENTIAL_RULE, OWN_ENDPOINT_MESSAGE,
    OWN_ENDPOINT_RULE, SecretReference,
};

/// Whether RAM users must use MFA at logon (SetSecurityPreference's MFAOperationForLogin).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MfaOperationForLogin {
    /// Every RAM user must use MFA at logon.
    Mandatory,
    /// Each RAM user's login profile decides (mfaBindRequired, see RamUserMfaSetting).
    Independent,
    /// MFA only for unusual logons.
    Adaptive,
}

impl MfaOperationForLogin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mandatory => "mandatory",
            Self::Independent => "independent",
            Self::Adaptive => "adaptive",
        }
    }
}

/// What RAM asks of an unusual logon (SetSecurityPreference's OperationForRiskLogin).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RamOperationForRiskLogin {
    /// MFA is prompted but a user without a device may skip it.
    Autonomous,
    /// MFA is required; a user without a device must bind one.
    EnforceVerify,
}

impl RamOperationForRiskLogin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Autonomous => "autonomous",
            Self::EnforceVerify => "enforceVerify",
        }
    }
}

/// The MFA preferences a RAM account should have for its RAM users (SetSecurityPreference).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudsso.mfa-operator.dev",
    version = "v1alpha1",
    kind = "RamSecurityPreference",
    plural = "ramsecuritypreferences",
    shortname = "ramsp",
    category = "cloudsso",
    namespaced,
    doc = "RamSecurityPreference declares a RAM account's MFA preferences for every RAM user (whether MFA is required at logon, what unusual logons require, whether users may keep an MFA ticket and manage their own devices); the operator enforces them (or only observes them) and reports what the cloud has. Only the fields the spec names are written.",
    status = "RamSecurityPreferenceStatus",
    printcolumn = r#"{"name":"MFA-Login","type":"string","jsonPath":".spec.mfaOperationForLogin"}"#,
    printcolumn = r#"{"name":"Observed","type":"string","jsonPath":".status.observed.mfaOperationForLogin"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.managementPolicy"}"#,
    printcolumn = r#"{"name":"Account","type":"string","priority":1,"jsonPath":".status.accountId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(ONE_CREDENTIAL_RULE).message(ONE_CREDENTIAL_MESSAGE))]
#[x_kube(validation = Rule::new(OWN_ENDPOINT_RULE).message(OWN_ENDPOINT_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct RamSecurityPreferenceSpec {
    /// Whether RAM users must use MFA at logon: mandatory (every RAM user), independent (each user's login profile decides: see RamUserMfaSetting) or adaptive (only unusual logons).
    pub mfa_operation_for_login: MfaOperationForLogin,

    /// What an unusual logon requires: autonomous (MFA may be skipped by a user without a device) or enforceVerify (MFA required). Left as it is when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_for_risk_login: Option<RamOperationForRiskLogin>,

    /// Whether a RAM user may skip MFA for seven days after passing it once (EnableSaveMFATicket). Left as it is when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_save_mfa_ticket: Option<bool>,

    /// Whether RAM users may bind and unbind their own MFA devices (AllowUserToManageMFADevices). Left as it is when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_to_manage_mfa_devices: Option<bool>,

    /// The region of the endpoint (default cn-shanghai): the endpoint is derived from it unless `endpoint` is set. Only together with credentialsSecretRef; with an account, the account's region applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9-]+$')").message("region must be a region id such as cn-shanghai"))]
    pub region: Option<String>,

    /// A URL (http(s)://host[:port], no path) that overrides the endpoint derived from the region (private endpoints, the emulator). Only together with credentialsSecretRef: the namespace's own keys may go where it likes, never anyone else's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(ENDPOINT_RULE).message(ENDPOINT_MESSAGE))]
    pub endpoint: Option<String>,

    /// A Secret in this namespace holding `accessKeyId`, `accessKeySecret` and optionally `securityToken`: the namespace's own keys. At most one of credentialsSecretRef and accountRef; with neither, the CloudAccount named `default` is used if it admits this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,

    /// A CloudAccount (cluster-scoped, set up by cluster admins) to act through; it must admit this namespace. Its region and endpoint apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountReference>,

    /// Enforce (default: make the cloud match, repair drift) or Observe (never write; report only).
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Orphan (default: deleting leaves the cloud as is) or Restore (write back `status.restoreTo`, only the fields the spec names, on delete).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The account's MFA preferences as the cloud reports them (GetSecurityPreference).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedRamSecurityPreference {
    /// MFAOperationForLogin as reported: mandatory, independent or adaptive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_operation_for_login: Option<String>,
    /// OperationForRiskLogin as reported: autonomous or enforceVerify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_for_risk_login: Option<String>,
    /// EnableSaveMFATicket as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_save_mfa_ticket: Option<bool>,
    /// AllowUserToManageMFADevices as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_user_to_manage_mfa_devices: Option<bool>,
}

/// What the controller last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RamSecurityPreferenceStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The account's preferences as the cloud reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedRamSecurityPreference>,
    /// The preferences the cloud had before this resource first changed them; under deletionPolicy Restore the fields the spec names are written back on delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to: Option<ObservedRamSecurityPreference>,
    /// Other RamSecurityPreferences (namespace/name) for the same account and endpoint; they are not applied while this one owns it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contenders: Vec<String>,
}
