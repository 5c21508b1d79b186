//! `RamUserMfaStatus`: an observe-only MFA report of one RAM user (IMS GetUserMFAInfo).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    AccountReference, CommonStatus, ENDPOINT_MESSAGE, ENDPOINT_RULE, ONE_CREDENTIAL_MESSAGE,
    ONE_CREDENTIAL_RULE, OWN_ENDPOINT_MESSAGE, OWN_ENDPOINT_RULE, SecretReference,
};

/// Which RAM user to report on. Nothing is ever written to the cloud.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudsso.mfa-operator.dev",
    version = "v1alpha1",
    kind = "RamUserMfaStatus",
    plural = "ramusermfastatuses",
    shortname = "rammfa",
    category = "cloudsso",
    namespaced,
    doc = "RamUserMfaStatus reports whether a RAM user has MFA enabled and which device is bound; it never writes.",
    status = "RamUserMfaStatusStatus",
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".spec.userPrincipalName"}"#,
    printcolumn = r#"{"name":"MFA","type":"boolean","jsonPath":".status.mfaEnabled"}"#,
    printcolumn = r#"{"name":"Device","type":"string","jsonPath":".status.device.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(ONE_CREDENTIAL_RULE).message(ONE_CREDENTIAL_MESSAGE))]
#[x_kube(validation = Rule::new(OWN_ENDPOINT_RULE).message(OWN_ENDPOINT_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct RamUserMfaStatusSpec {
    /// The RAM user's logon name, e.g. bob@example.onaliyun.com.
    #[x_kube(validation = Rule::new("size(self) > 0").message("userPrincipalName must not be empty"))]
    #[schemars(length(max = 128))]
    pub user_principal_name: String,

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

    /// A CloudAccount (cluster-scoped, set up by cluster admins) to act through; it must admit this namespace (and, if it lists directoryIds, this directory). Its region and endpoint apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_ref: Option<AccountReference>,
}

/// The MFA device bound to the RAM user.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RamMfaDevice {
    /// The device's serial number (an ARN such as acs:ram::1234:mfa/bob).
    pub serial_number: String,
    /// VMFA (virtual MFA) or U2F (security key).
    #[serde(rename = "type")]
    pub device_type: String,
}

/// What the controller last saw.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RamUserMfaStatusStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Whether the RAM user has MFA enabled (IsMFAEnable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_enabled: Option<bool>,
    /// The bound MFA device; absent when none is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<RamMfaDevice>,
}
