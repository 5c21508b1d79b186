//! `DirectoryMfaPolicy`: one CloudSSO directory's MFA setting.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    AccountReference, CommonStatus, DeletionPolicy, ENDPOINT_MESSAGE, ENDPOINT_RULE,
    ManagementPolicy, MfaAuthenticationSettings, ONE_CREDENTIAL_MESSAGE, ONE_CREDENTIAL_RULE,
    OWN_ENDPOINT_MESSAGE, OWN_ENDPOINT_RULE, OperationForRiskLogin, SecretReference,
};

/// The MFA setting a CloudSSO directory should have (UpdateMFAAuthenticationSettings).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudsso.mfa-operator.dev",
    version = "v1alpha1",
    kind = "DirectoryMfaPolicy",
    plural = "directorymfapolicies",
    shortname = "dmp",
    category = "cloudsso",
    namespaced,
    doc = "DirectoryMfaPolicy declares the MFA setting of one CloudSSO directory; the operator enforces it (or only observes it) and reports what the cloud has.",
    status = "DirectoryMfaPolicyStatus",
    printcolumn = r#"{"name":"Directory","type":"string","jsonPath":".spec.directoryId"}"#,
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".spec.mfaAuthenticationSettings"}"#,
    printcolumn = r#"{"name":"Observed","type":"string","jsonPath":".status.observed.mfaAuthenticationSettings"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.managementPolicy"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Users","type":"integer","priority":1,"jsonPath":".status.users.total"}"#,
    printcolumn = r#"{"name":"MFA-Off","type":"integer","priority":1,"jsonPath":".status.users.mfaDisabled"}"#,
    printcolumn = r#"{"name":"No-Device","type":"integer","priority":1,"jsonPath":".status.users.mfaEnabledWithoutDevice"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(
    "!has(self.operationForRiskLogin) || self.mfaAuthenticationSettings == 'Byuser' || self.mfaAuthenticationSettings == 'OnlyRiskyLogin'"
).message("operationForRiskLogin is only valid when mfaAuthenticationSettings is Byuser or OnlyRiskyLogin"))]
#[x_kube(validation = Rule::new(ONE_CREDENTIAL_RULE).message(ONE_CREDENTIAL_MESSAGE))]
#[x_kube(validation = Rule::new(OWN_ENDPOINT_RULE).message(OWN_ENDPOINT_MESSAGE))]
#[serde(rename_all = "camelCase")]
pub struct DirectoryMfaPolicySpec {
    /// The CloudSSO directory id (`d-` followed by lowercase letters and digits). Immutable.
    #[x_kube(validation = Rule::new("self.matches('^d-[a-z0-9]+$')").message("directoryId must be 'd-' followed by lowercase letters and digits, e.g. d-00fc2p61abcd"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("directoryId is immutable"))]
    #[schemars(length(max = 128))]
    pub directory_id: String,

    /// The MFA setting of every user of the directory: Enabled, Byuser (each user's own setting applies), Disabled or OnlyRiskyLogin.
    pub mfa_authentication_settings: MfaAuthenticationSettings,

    /// What an unusual logon requires: Autonomous (MFA may be skipped) or EnforceVerify (MFA required). Only valid with Byuser or OnlyRiskyLogin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_for_risk_login: Option<OperationForRiskLogin>,

    /// Verification methods users may use, passed to the API's AllowedVerificationTypes (e.g. [TOTP]) and observed back. Left alone when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "verification_types_schema")]
    pub allowed_verification_types: Option<Vec<String>>,

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

    /// The census of every user of the directory (status.users and the per-directory compliance gauges). Off by default: it reads every user of the directory (1 + 2 x users calls per census), where without it only the users that UserMfaSettings manage are read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub census: Option<CensusSpec>,
}

/// The verification methods CloudSSO knows, as AllowedVerificationTypes takes them.
pub const VERIFICATION_TYPES: [&str; 2] = ["TOTP", "WebAuthn"];

/// `allowedVerificationTypes`: a short list of the known methods, each at most once.
fn verification_types_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": VERIFICATION_TYPES.len(),
        "x-kubernetes-list-type": "set",
        "items": {"type": "string", "enum": VERIFICATION_TYPES},
    })
}

/// Whether and how often the directory's users are all read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CensusSpec {
    /// Take the census (default false).
    #[serde(default)]
    pub enabled: bool,
    /// How often the census is taken, e.g. 1h (a duration such as 30s, 5m or 1h30m). Never more often than the resync interval; absent, once per resync interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$')").message("interval must be a duration such as 30s, 5m or 1h30m"))]
    #[schemars(length(max = 32))]
    pub interval: Option<String>,
}

impl CensusSpec {
    /// The census interval asked for, if any and if it parses.
    pub fn interval(&self) -> Option<std::time::Duration> {
        let text = self.interval.as_deref()?;
        let parsed: jiff::SignedDuration = text.parse().ok()?;
        std::time::Duration::try_from(parsed).ok()
    }
}

/// The directory's MFA setting as the cloud reports it (GetMFAAuthenticationSettingInfo).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedDirectoryMfa {
    /// MfaAuthenticationAdvanceSettings as reported by the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_authentication_settings: Option<String>,
    /// OperationForRiskLogin as reported (only present under Byuser or OnlyRiskyLogin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_for_risk_login: Option<String>,
    /// AllowedVerificationTypes as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_verification_types: Option<Vec<String>>,
}

/// What the controller last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryMfaPolicyStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The directory's settings as the cloud reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedDirectoryMfa>,
    /// The settings the cloud had before this resource first changed them; written back on delete under deletionPolicy Restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to: Option<ObservedDirectoryMfa>,
    /// Other DirectoryMfaPolicies (namespace/name) that name the same directory; they are not applied while this one owns it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contenders: Vec<String>,
    /// How many of the directory's users are in each MFA state, from the last census of the directory (only with spec.census.enabled; taken once per census interval by the owning policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<DirectoryUserSummary>,
    /// The operator's cloud-call budget: how often resources are really read back, given the calls a resync needs and the client-side rate (--cloud-qps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync: Option<ResyncBudget>,
}

/// How often resources are read back: the interval asked for (--resync-interval) and the one in force.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResyncBudget {
    /// The resync interval asked for, in seconds.
    pub requested_seconds: u64,
    /// The resync interval in force, in seconds: longer than the one asked for when a resync needs more calls than --cloud-qps allows in it.
    pub effective_seconds: u64,
    /// Cloud API calls one resync of everything the operator manages needs.
    pub calls_per_resync: u64,
    /// Why the interval in force differs from the one asked for (absent when they are equal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A census of a directory's users (ListUsers, then each user's MFA setting and devices).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryUserSummary {
    /// Users in the directory.
    pub total: u64,
    /// Users whose own MFA setting is Disabled.
    pub mfa_disabled: u64,
    /// Users whose MFA setting is Enabled but who have no MFA device bound.
    pub mfa_enabled_without_device: u64,
}
