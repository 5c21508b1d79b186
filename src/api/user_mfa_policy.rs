//! `UserMfaPolicy`: one MFA setting for many users of a CloudSSO directory (all of them, the
//! members of groups, a name prefix, or a list of names), with exemptions that carry a reason and
//! may lapse, and a status that counts who complies (the names are in its PolicyReport).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    AccountReference, CommonStatus, DeletionPolicy, ENDPOINT_MESSAGE, ENDPOINT_RULE,
    ManagementPolicy, ONE_CREDENTIAL_MESSAGE, ONE_CREDENTIAL_RULE, OWN_ENDPOINT_MESSAGE,
    OWN_ENDPOINT_RULE, SecretReference, UserMfaAuthenticationSettings,
};

/// The most names, groups or exemptions one policy lists (and what bounds the CEL rules' cost).
pub const MAX_LISTED: usize = 5000;

/// The MFA setting every selected user of a CloudSSO directory should have.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudsso.mfa-operator.dev",
    version = "v1alpha1",
    kind = "UserMfaPolicy",
    plural = "usermfapolicies",
    shortname = "ump",
    category = "cloudsso",
    namespaced,
    doc = "UserMfaPolicy declares one MFA setting for many users of a CloudSSO directory (every user, group members, a name prefix or a list of names), with exemptions; the operator enforces it (or only observes it), counts who complies in status and names who does not in a PolicyReport.",
    status = "UserMfaPolicyStatus",
    printcolumn = r#"{"name":"Directory","type":"string","jsonPath":".spec.directoryId"}"#,
    printcolumn = r#"{"name":"Desired","type":"string","jsonPath":".spec.userMfaAuthenticationSettings"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.managementPolicy"}"#,
    printcolumn = r#"{"name":"Matched","type":"integer","jsonPath":".status.matchedUsers"}"#,
    printcolumn = r#"{"name":"Compliant","type":"integer","jsonPath":".status.compliantUsers"}"#,
    printcolumn = r#"{"name":"Failing","type":"integer","jsonPath":".status.nonCompliantUsers"}"#,
    printcolumn = r#"{"name":"Exempt","type":"integer","jsonPath":".status.exemptUsers"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status","priority":1}"#,
    printcolumn = r#"{"name":"Conflicts","type":"integer","jsonPath":".status.conflicts","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new(ONE_CREDENTIAL_RULE).message(ONE_CREDENTIAL_MESSAGE))]
#[x_kube(validation = Rule::new(OWN_ENDPOINT_RULE).message(OWN_ENDPOINT_MESSAGE))]
#[x_kube(validation = Rule::new("!has(self.requireBoundDevice) || !self.requireBoundDevice || self.userMfaAuthenticationSettings == 'Enabled'").message("requireBoundDevice may be true only with userMfaAuthenticationSettings Enabled"))]
#[serde(rename_all = "camelCase")]
pub struct UserMfaPolicySpec {
    /// The CloudSSO directory id (`d-` followed by lowercase letters and digits). Immutable.
    #[x_kube(validation = Rule::new("self.matches('^d-[a-z0-9]+$')").message("directoryId must be 'd-' followed by lowercase letters and digits, e.g. d-00fc2p61abcd"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("directoryId is immutable"))]
    #[schemars(length(max = 128))]
    pub directory_id: String,

    /// Which users of the directory the policy applies to: exactly one of all, groupNames, userNamePrefix or userNames.
    pub users: UserSelector,

    /// The MFA setting every selected, non-exempt user should have: Enabled or Disabled. Takes effect only while the directory's setting is Byuser.
    pub user_mfa_authentication_settings: UserMfaAuthenticationSettings,

    /// Users the policy neither writes nor counts as failing, each with the reason (required) and optionally when the exemption lapses; a lapsed exemption is enforced at once (the policy passes again at that moment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5000))]
    pub exemptions: Vec<Exemption>,

    /// With Enabled: a user without a bound MFA device fails the policy (default true; the operator cannot bind a device, so such a user is reported, not written). Must be false or absent with Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_bound_device: Option<bool>,

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

    /// Enforce (default: write the setting to every selected user this policy owns, repair drift) or Observe (never write; owns nobody; reports on every selected user).
    #[serde(default)]
    pub management_policy: ManagementPolicy,

    /// Orphan (default: deleting leaves the users as they are) or Restore (on delete, write back each user's setting from before this policy first changed it: `status.restoreTo`).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Which users a policy selects: exactly one way.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.all), has(self.groupNames), has(self.userNamePrefix), has(self.userNames)].filter(x, x).size() == 1").message("users must set exactly one of all, groupNames, userNamePrefix or userNames"))]
#[x_kube(validation = Rule::new("!has(self.all) || self.all").message("users.all must be true when set (select the users otherwise with groupNames, userNamePrefix or userNames)"))]
pub struct UserSelector {
    /// Every user of the directory (ListUsers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,

    /// The members of these CloudSSO groups (by group name, resolved through ListGroups; members through ListGroupMembers). A user in several groups counts once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "group_names_schema")]
    pub group_names: Option<Vec<String>>,

    /// Every user whose name starts with this (ListUsers filter `UserName sw`, compared without case as the API does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub user_name_prefix: Option<String>,

    /// These users, by name (resolved through ListUsers). A name the directory does not have is reported as an error result, not a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "user_names_schema")]
    pub user_names: Option<Vec<String>>,
}

/// A list of 1..`max` names of 1..128 characters, each at most once (the bounds keep the API
/// server's CEL cost estimates of the rules above small).
fn names_schema(max: usize) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "minItems": 1,
        "maxItems": max,
        "x-kubernetes-list-type": "set",
        "items": {"type": "string", "minLength": 1, "maxLength": 128},
    })
}

fn group_names_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    names_schema(100)
}

fn user_names_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    names_schema(MAX_LISTED)
}

/// A user the policy leaves alone, and why.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.userName) != has(self.userId)").message("an exemption names exactly one of userName or userId"))]
pub struct Exemption {
    /// The exempt user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub user_name: Option<String>,

    /// The exempt user's id (`u-...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^u-[a-z0-9]+$')").message("userId must be 'u-' followed by lowercase letters and digits"))]
    pub user_id: Option<String>,

    /// Why the user is exempt (shown in the PolicyReport's skip result), e.g. "break-glass account".
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,

    /// When the exemption lapses (RFC 3339, e.g. 2027-03-31T23:59:59Z); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$')").message("expires must be an RFC 3339 time, e.g. 2027-03-31T23:59:59Z"))]
    pub expires: Option<String>,
}

impl Exemption {
    /// When it lapses (None: never, or not a time the operator can read: then it never lapses
    /// early by mistake; the CRD's pattern keeps such values out).
    pub fn expires_at(&self) -> Option<jiff::Timestamp> {
        self.expires.as_deref()?.parse().ok()
    }

    /// Whether it is in force at `now`.
    pub fn live_at(&self, now: jiff::Timestamp) -> bool {
        self.expires_at().is_none_or(|at| at > now)
    }
}

impl UserMfaPolicySpec {
    /// Whether a user must have a bound device to comply.
    pub fn requires_device(&self) -> bool {
        self.user_mfa_authentication_settings == UserMfaAuthenticationSettings::Enabled
            && self.require_bound_device.unwrap_or(true)
    }
}

/// Each user's setting from before this policy first changed it, as two lists of user ids (one
/// per value): an id takes ~25 bytes, so a policy that changed 20,000 users keeps ~500 KiB here.
/// Past `MAX_RESTORE_POINTS` ids the policy changes no more users (it could not restore them;
/// `RestoreLedgerFull`) rather than grow the object towards etcd's limit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRestorePoints {
    /// Users whose setting was Enabled before this policy changed it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enabled: Vec<String>,
    /// Users whose setting was Disabled before this policy changed it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled: Vec<String>,
}

/// The most users one policy's `restoreTo` keeps.
pub const MAX_RESTORE_POINTS: usize = 20_000;

impl PolicyRestorePoints {
    pub fn len(&self) -> usize {
        self.enabled.len() + self.disabled.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `user_id` is kept already.
    pub fn contains(&self, user_id: &str) -> bool {
        self.enabled.iter().any(|id| id == user_id) || self.disabled.iter().any(|id| id == user_id)
    }
}

/// What the PolicyReports of the policy are.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReportStatus {
    /// The PolicyReports (wgpolicyk8s.io/v1alpha2) in this namespace that list the policy's results, first one first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Why no report is written (the PolicyReport CRD is not installed, or writing failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the controller last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserMfaPolicyStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Users the selector selects (exempt users, and users a UserMfaSetting or an older policy owns, included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_users: Option<u64>,
    /// Counted users (selected, not exempt, owned by this policy, or any selected user under Observe) that have the setting (and, with requireBoundDevice, a bound device).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliant_users: Option<u64>,
    /// Counted users that do not: the PolicyReport has one fail result for each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_compliant_users: Option<u64>,
    /// Selected users with an exemption in force: neither written nor counted as failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exempt_users: Option<u64>,
    /// Selected users an older Enforce policy owns: this one neither writes nor counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<u64>,
    /// The older policies (namespace/name) that own the users counted in `conflicts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicting_policies: Vec<String>,
    /// Selected users a UserMfaSetting manages: it wins, so this policy neither writes nor counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_with_own_setting: Option<u64>,
    /// Selected users that could not be read or written this pass (error results in the PolicyReport; retried soon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_users: Option<u64>,
    /// The earliest moment an exemption in force lapses (RFC 3339); the policy passes again then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_exemption_expiry: Option<String>,
    /// Each user's setting from before this policy first changed it; written back on delete under deletionPolicy Restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_to: Option<PolicyRestorePoints>,
    /// The policy's PolicyReports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<PolicyReportStatus>,
}
