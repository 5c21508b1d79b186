//! `RamUserMfaSetting`: whether one RAM user must bind an MFA device at console logon (the login
//! profile's MFABindRequired; IMS Get/UpdateLoginProfile), with the device bound.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    AccountReference, CommonStatus, DeletionPolicy, ENDPOINT_MESSAGE, ENDPOINT_RULE,
    ManagementPolicy, ONE_CREDENTIAL_MESSAGE, ONE_CREDENTIAL_RULE, OWN_ENDPOINT_MESSAGE,
    OWN_ENDPOINT_RULE, SecretReference,
};
use super::ram_user_mfa_status::RamMfaDevice;

/// Whether a RAM user must bind an MFA device (UpdateLoginProfile's MFABindRequired).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudsso.mfa-operator.dev",
    version = "v1alpha1",
    kind = "RamUserMfaSetting",
    plural = "ramusermfasettings",
    shortname = "ramumfa",
    category = "cloudsso",
    namespaced,
    doc = "RamUserMfaSetting declares whether one RAM user must bind an MFA device at console logon (the login profile's MFABindRequired) and reports the device bound; it takes effect while the account's mfaOperationForLogin is independent.",
    status = "RamUserMfaSettingStatus",
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".spec.userPrincipalName"}"#,
    printcolumn = r#"{"name":"Required","type":"boolean","jsonPath":".spec.mfaBindRequired"}"#,
    printcolumn = r#"{"name":"Observed","type":"boolean","jsonPath":".status.observed.mfaBindRequired"}"#,
    printcolumn = r#"{"name":"Device","type":"string","jsonPath":".status.device.type"}"#,
    printcolumn = r#"{"name":"Effective","type":"string","jsonPath":".status.conditions[?(@.type==\"Effective\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(ONE_CREDENTIAL_RULE).message(ONE_CREDENTIAL_MESSAGE))]
#[x_kube(validation = Rule::new(OWN_ENDPOINT_RULE).message(OWN_ENDPOINT_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct RamUserMfaSettingSpec {
    /// The RAM user's logon name (name@domain, e.g. bob@example.onaliyun.com). Immutable.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+$')").message("userPrincipalName must be name@domain, e.g. bob@example.onaliyun.com"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("userPrincipalName is immutable"))]
    #[schemars(length(min = 3, max = 128))]
    pub user_principal_name: String,

    /// Whether the user must bind an MFA device at the next console logon (the login profile's MFABindRequired). Takes effect only while the account's mfaOperationForLogin is independent.
    pub mfa_bind_required: bool,

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

    /// Orphan (default: deleting leaves the cloud as is) or Restore (write back `status.restoreTo` on delete).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The user's login profile as the cloud reports it (GetLoginProfile).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedRamLogin {
    /// MFABindRequired as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_bind_required: Option<bool>,
}

/// What the controller last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RamUserMfaSettingStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The user's login profile as the cloud reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedRamLogin>,
    /// The MFA device bound to the user (GetUserMFAInfo); absent when none is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<RamMfaDevice>,
    /// The setting the cloud had before this resource first changed it; written back on delete under deletionPolicy Restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to: Option<ObservedRamLogin>,
}
