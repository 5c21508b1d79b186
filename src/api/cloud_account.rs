//! `CloudAccount` (cluster-scoped): where, as whom, and for which namespaces the operator acts.
//! Written by cluster admins, as cert-manager's ClusterIssuer or Crossplane's ProviderConfig: the
//! only way a namespaced resource reaches the operator's own credentials or a shared Secret.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, ENDPOINT_MESSAGE, ENDPOINT_RULE, default_region};

/// The name of the account a resource without `accountRef` and `credentialsSecretRef` uses.
pub const DEFAULT_ACCOUNT: &str = "default";

/// An Alibaba Cloud account the operator may act in, the credentials it uses there, and the namespaces allowed to use it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cloudsso.mfa-operator.dev",
    version = "v1alpha1",
    kind = "CloudAccount",
    plural = "cloudaccounts",
    shortname = "cloudacct",
    category = "cloudsso",
    doc = "CloudAccount (cluster-scoped, for cluster admins) names an Alibaba Cloud account's credentials and endpoint, and which namespaces may use them.",
    status = "CloudAccountStatus",
    printcolumn = r#"{"name":"Account","type":"string","jsonPath":".status.accountId"}"#,
    printcolumn = r#"{"name":"Region","type":"string","jsonPath":".spec.region"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CloudAccountSpec {
    /// The region whose endpoints the account's calls go to (default cn-shanghai).
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9-]+$')").message("region must be a region id such as cn-shanghai"))]
    pub region: String,

    /// A URL (http(s)://host[:port]) every call of this account goes to instead of the region's endpoints (a private endpoint, the emulator): the only place where the operator's or a shared Secret's credentials may be sent to a non-default endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(ENDPOINT_RULE).message(ENDPOINT_MESSAGE))]
    pub endpoint: Option<String>,

    /// The credentials of the account: exactly one of secretRef or operator.
    pub credentials: AccountCredentials,

    /// Which namespaces may use this account, by their labels (a metav1.LabelSelector; `{}` admits every namespace). To name namespaces, select on `kubernetes.io/metadata.name`.
    pub namespace_selector: LabelSelector,

    /// The CloudSSO directories resources may manage through this account; absent, any directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(length(max = 128), regex(pattern = r"^d-[a-z0-9]+$"))
    )]
    pub directory_ids: Option<Vec<String>>,
}

/// Exactly one way to get the account's keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.operator)").message("credentials must set exactly one of secretRef or operator"))]
#[serde(rename_all = "camelCase")]
pub struct AccountCredentials {
    /// A Secret (in any namespace; cluster admins choose it) with keys `accessKeyId`, `accessKeySecret` and optionally `securityToken`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<NamespacedSecretReference>,
    /// The operator's own credential chain: its environment (ALIBABA_CLOUD_ACCESS_KEY_ID, ...) or RRSA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorCredentials>,
}

/// A Secret by namespace and name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedSecretReference {
    /// The Secret's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The operator's own credentials (no fields: the chain is configured on the operator's pod).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct OperatorCredentials {}

/// Whether the account's credentials resolve.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudAccountStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
}

impl super::HasCommonStatus for CloudAccountStatus {
    fn common(&self) -> &CommonStatus {
        &self.common
    }
    fn common_mut(&mut self) -> &mut CommonStatus {
        &mut self.common
    }
}

impl CloudAccount {
    /// Whether a namespace with `labels` may use this account.
    pub fn admits(&self, labels: &BTreeMap<String, String>) -> Result<bool, String> {
        use kube::core::SelectorExt;
        let selector: kube::core::Selector = self
            .spec
            .namespace_selector
            .clone()
            .try_into()
            .map_err(|error| format!("namespaceSelector: {error}"))?;
        Ok(selector.matches(labels))
    }

    /// Whether resources may manage `directory_id` through this account.
    pub fn allows_directory(&self, directory_id: &str) -> bool {
        self.spec
            .directory_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| id == directory_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(selector: serde_json::Value, directories: Option<Vec<&str>>) -> CloudAccount {
        CloudAccount::new(
            "a",
            serde_json::from_value(serde_json::json!({
                "credentials": {"operator": {}},
                "namespaceSelector": selector,
                "directoryIds": directories,
            }))
            .unwrap(),
        )
    }

    #[test]
    fn selectors_admit_by_labels() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let team = labels(&[("kubernetes.io/metadata.name", "team-a"), ("tier", "prod")]);
        let other = labels(&[("kubernetes.io/metadata.name", "dev")]);
        let by_name = account(
            serde_json::json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}]}),
            None,
        );
        assert_eq!(by_name.admits(&team), Ok(true));
        assert_eq!(by_name.admits(&other), Ok(false));
        let by_label = account(serde_json::json!({"matchLabels": {"tier": "prod"}}), None);
        assert_eq!(by_label.admits(&team), Ok(true));
        assert_eq!(by_label.admits(&other), Ok(false));
        let everyone = account(serde_json::json!({}), None);
        assert_eq!(everyone.admits(&other), Ok(true));
    }

    #[test]
    fn directory_ids_bound_the_directories() {
        let any = account(serde_json::json!({}), None);
        assert!(any.allows_directory("d-1"));
        let some = account(serde_json::json!({}), Some(vec!["d-1"]));
        assert!(some.allows_directory("d-1"));
        assert!(!some.allows_directory("d-2"));
    }
}
