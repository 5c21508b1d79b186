//! `UserMfaSetting`: one CloudSSO user's MFA setting and the MFA devices bound to the user.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    AccountReference, CommonStatus, DeletionPolicy, ENDPOINT_MESSAGE, ENDPOINT_RULE,
    ManagementPolicy, ONE_CREDENTIAL_MESSAGE, ONE_CREDENTIAL_RULE, OWN_ENDPOINT_MESSAGE,
    OWN_ENDPOINT_RULE, SecretReference, UserMfaAuthenticationSettings,
};

/// The MFA setting a CloudSSO user should have (UpdateUserMFAAuthenticationSettings).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudsso.mfa-operator.dev",
    version = "v1alpha1",
    kind = "UserMfaSetting",
    plural = "usermfasettings",
    shortname = "umfa",
    category = "cloudsso",
    namespaced,
    doc = "UserMfaSetting declares the MFA setting of one CloudSSO user and reports the MFA devices the user has bound.",
    status = "UserMfaSettingStatus",
    printcolumn = r#"{"name":"Directory","type":"string","jsonPath":".spec.directoryId"}"#,
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".status.userId"}"#,
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".spec.userMfaAuthenticationSettings"}"#,
    printcolumn = r#"{"name":"Observed","type":"string","jsonPath":".status.observed.userMfaAuthenticationSettings"}"#,
    printcolumn = r#"{"name":"Devices","type":"integer","jsonPath":".status.boundDeviceCount"}"#,
    printcolumn = r#"{"name":"Effective","type":"string","jsonPath":".status.conditions[?(@.type==\"Effective\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("has(self.userId) != has(self.userName)").message("exactly one of userId or userName must be set"))]
#[x_kube(validation = Rule::new(ONE_CREDENTIAL_RULE).message(ONE_CREDENTIAL_MESSAGE))]
#[x_kube(validation = Rule::new(OWN_ENDPOINT_RULE).message(OWN_ENDPOINT_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct UserMfaSettingSpec {
    /// The CloudSSO directory id (`d-` followed by lowercase letters and digits). Immutable.
    #[x_kube(validation = Rule::new("self.matches('^d-[a-z0-9]+$')").message("directoryId must be 'd-' followed by lowercase letters and digits, e.g. d-00fc2p61abcd"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("directoryId is immutable"))]
    #[schemars(length(max = 128))]
    pub directory_id: String,

    /// The CloudSSO user id (`u-` followed by lowercase letters and digits). Exactly one of userId and userName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^u-[a-z0-9]+$')").message("userId must be 'u-' followed by lowercase letters and digits, e.g. u-00q8wbq42wiltcrk0001"))]
    #[schemars(length(max = 128))]
    pub user_id: Option<String>,

    /// The CloudSSO user name, resolved to an id through ListUsers. Exactly one of userId and userName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("userName must not be empty"))]
    #[schemars(length(max = 128))]
    pub user_name: Option<String>,

    /// The user's MFA setting: Enabled or Disabled. Takes effect only while the directory's setting is Byuser.
    pub user_mfa_authentication_settings: UserMfaAuthenticationSettings,

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

    /// Enforce (default: make the cloud match, repair drift) or Observe (never write; report only).
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Orphan (default: deleting leaves the cloud as is) or Restore (write back `status.restoreTo` on delete).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// The user's MFA setting as the cloud reports it (GetUserMFAAuthenticationSettings).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedUserMfa {
    /// UserMFAAuthenticationSettings as reported by the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_mfa_authentication_settings: Option<String>,
}

/// An MFA device bound to the user (ListMFADevicesForUser).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BoundMfaDevice {
    /// The device id (mfa-...).
    pub device_id: String,
    /// The name the user gave the device.
    #[serde(default)]
    pub device_name: String,
    /// TOTP, CrossPlatformPasskey or PlatformPasskey.
    #[serde(default)]
    pub device_type: String,
    /// When the device was bound (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_time: Option<String>,
}

/// What the controller last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserMfaSettingStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The user id, as given or resolved from userName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The user's setting as the cloud reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedUserMfa>,
    /// How many MFA devices the user has bound (at most two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_device_count: Option<u32>,
    /// The MFA devices bound to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<BoundMfaDevice>>,
    /// The setting the cloud had before this resource first changed it; written back on delete under deletionPolicy Restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to: Option<ObservedUserMfa>,
}
