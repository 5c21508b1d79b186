//! `RamUserMfaStatus`: an observe-only MFA report of one RAM user (IMS GetUserMFAInfo).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, SecretReference, default_region};

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
#[serde(rename_all = "camelCase")]
pub struct RamUserMfaStatusSpec {
    /// The RAM user's logon name, e.g. bob@example.onaliyun.com.
    #[x_kube(validation = Rule::new("size(self) > 0").message("userPrincipalName must not be empty"))]
    pub user_principal_name: String,

    /// The region; the RAM (IMS) endpoint is global (ims.aliyuncs.com), so this only matters for credentials and private endpoints.
    #[serde(default = "default_region")]
    pub region: String,

    /// A URL that overrides the IMS endpoint (private endpoints, the emulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// A Secret in this namespace holding `accessKeyId`, `accessKeySecret` and optionally `securityToken`. Without it the controller's own credential chain is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
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
