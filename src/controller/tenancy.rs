//! Who a namespaced resource may act as, and where: its namespace's own Secret (sent where the
//! resource says), or a CloudAccount that admits its namespace (and its directory), whose
//! credentials go only to the account's endpoint. The operator's own credentials are reached only
//! through a CloudAccount. Also: which cloud account the credentials belong to (STS
//! GetCallerIdentity, once per credential and endpoint), the first part of every ownership claim.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::error::ReconcileError;
use crate::api::{CloudAccount, CloudSpec, DEFAULT_ACCOUNT, DEFAULT_REGION};
use crate::cloud::{ApiErrorKind, CloudError, CredentialSource, Endpoint};

/// Which API a call is for: each has its own endpoint unless an override names one for all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    CloudSso,
    Ims,
}

/// Where a resource's calls go and as whom.
#[derive(Clone)]
pub struct Route {
    pub endpoint: Endpoint,
    /// Where STS GetCallerIdentity goes for the same credentials: the override, or the region's.
    pub sts_endpoint: Endpoint,
    pub source: Arc<CredentialSource>,
    /// The CloudAccount the route goes through; None for the namespace's own Secret.
    pub account: Option<String>,
}

/// Who a pass acts as and where, as its status records it (and its claims are keyed by).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub endpoint: String,
    pub cloud_account: Option<String>,
}

impl Identity {
    pub fn record(&self, common: &mut crate::api::CommonStatus) {
        common.account_id = Some(self.account_id.clone());
        common.endpoint = Some(self.endpoint.clone());
        common.cloud_account = self.cloud_account.clone();
    }
}

/// How a route's credentials are found: a Secret by (namespace, name), or the operator's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keys {
    Secret { namespace: String, name: String },
    Operator,
}

/// A route before its credentials are read: what the resource and its account say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub endpoint_override: Option<String>,
    pub region: String,
    pub keys: Keys,
    pub account: Option<String>,
}

impl Plan {
    /// What a CloudAccount says: its endpoint, region and keys; None when it names no
    /// credentials (the API server refuses such an account; one stored before the rule).
    pub fn of_account(account: &CloudAccount) -> Option<Self> {
        let credentials = &account.spec.credentials;
        let keys = match (&credentials.secret_ref, &credentials.operator) {
            (Some(secret), _) => Keys::Secret {
                namespace: secret.namespace.clone(),
                name: secret.name.clone(),
            },
            (None, Some(_)) => Keys::Operator,
            (None, None) => return None,
        };
        Some(Self {
            endpoint_override: account.spec.endpoint.clone(),
            region: account.spec.region.clone(),
            keys,
            account: Some(account.name_any()),
        })
    }

    /// The endpoint of `service` and the STS endpoint, from the override or the region.
    pub fn endpoints(&self, service: Service) -> Result<(Endpoint, Endpoint), ReconcileError> {
        let invalid = |error: String| ReconcileError::InvalidSpec(format!("endpoint: {error}"));
        let endpoint = Endpoint::resolve(self.endpoint_override.as_deref(), || match service {
            Service::CloudSso => Endpoint::cloudsso(&self.region),
            Service::Ims => Ok(Endpoint::ims()),
        })
        .map_err(invalid)?;
        let sts = Endpoint::resolve(self.endpoint_override.as_deref(), || {
            Ok(Endpoint::sts(Some(&self.region)))
        })
        .map_err(invalid)?;
        Ok((endpoint, sts))
    }
}

/// The accounts and namespaces the operator sees (from its watches), and the account each
/// credential belongs to.
pub struct Tenancy {
    accounts: Store<CloudAccount>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// (credential source's address, STS endpoint) -> account id; an entry lives as long as the
    /// process (a handful per account; a rotated Secret makes a new source).
    identities: Mutex<HashMap<(usize, String), String>>,
}

impl Tenancy {
    pub fn new(
        accounts: Store<CloudAccount>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
    ) -> Self {
        Self {
            accounts,
            namespaces,
            identities: Mutex::default(),
        }
    }

    /// The CloudAccounts the operator sees.
    pub fn accounts(&self) -> &Store<CloudAccount> {
        &self.accounts
    }

    /// What `object` may use: its own Secret, or the CloudAccount it names (or `default`) if that
    /// admits its namespace and `directory_id`. Makes no cloud call.
    pub fn plan<K>(&self, object: &K, directory_id: Option<&str>) -> Result<Plan, ReconcileError>
    where
        K: Resource + kube::core::object::HasSpec<Spec: CloudSpec>,
    {
        let spec = object.spec();
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        if let Some(secret) = spec.credentials_secret_ref() {
            return Ok(Plan {
                endpoint_override: spec.endpoint().map(str::to_string),
                region: spec.region().unwrap_or(DEFAULT_REGION).to_string(),
                keys: Keys::Secret {
                    namespace,
                    name: secret.name.clone(),
                },
                account: None,
            });
        }
        // Defence in depth: the API server rejects an endpoint beside an account (CEL), but an
        // object stored before the rule must not send an account's keys where its namespace chose.
        // A stored `region` (every object of an older version has the old schema default) is
        // ignored: the account's region applies, and a region only picks an Alibaba endpoint.
        if spec.endpoint().is_some() {
            return Err(ReconcileError::InvalidSpec(
                "endpoint is allowed only together with credentialsSecretRef".into(),
            ));
        }
        let named = spec.account_ref().map(|r| r.name.as_str());
        let name = named.unwrap_or(DEFAULT_ACCOUNT);
        let refused = |why: String| ReconcileError::AccountNotAllowed {
            account: name.to_string(),
            detail: why,
        };
        let account = self
            .accounts
            .get(&ObjectRef::new(name))
            .ok_or_else(|| match named {
                Some(_) => refused(format!("there is no CloudAccount {name}")),
                None => refused(format!(
                    "no credentialsSecretRef or accountRef, and there is no CloudAccount {name}"
                )),
            })?;
        self.admitted(&account, &namespace, directory_id)
            .map_err(refused)?;
        Plan::of_account(&account).ok_or_else(|| refused("it names no credentials".into()))
    }

    /// Why `account` does not admit `namespace` (its labels) and `directory_id`, if it does not.
    fn admitted(
        &self,
        account: &CloudAccount,
        namespace: &str,
        directory_id: Option<&str>,
    ) -> Result<(), String> {
        let labels = self
            .namespaces
            .get(&ObjectRef::new(namespace))
            .map(|ns| ns.labels().clone())
            .ok_or_else(|| format!("namespace {namespace} is not known yet"))?;
        if !account.admits(&labels)? {
            return Err(format!(
                "its namespaceSelector does not admit namespace {namespace}"
            ));
        }
        match directory_id {
            Some(directory_id) if !account.allows_directory(directory_id) => Err(format!(
                "directory {directory_id} is not in its directoryIds"
            )),
            _ => Ok(()),
        }
    }

    /// The CloudAccounts a resource in `namespace` naming `account_ref` (or neither reference)
    /// would use: to tell which resources a changed account or namespace affects.
    pub fn uses_account<K>(object: &K, account: &str) -> bool
    where
        K: kube::core::object::HasSpec<Spec: CloudSpec>,
    {
        let spec = object.spec();
        spec.credentials_secret_ref().is_none()
            && spec
                .account_ref()
                .map_or(DEFAULT_ACCOUNT, |r| r.name.as_str())
                == account
    }

    /// The account id of `source` at `sts_endpoint`, if a pass already asked.
    pub fn known_account_id(
        &self,
        source: &Arc<CredentialSource>,
        sts_endpoint: &Endpoint,
    ) -> Option<String> {
        let key = (Arc::as_ptr(source) as usize, sts_endpoint.url());
        self.identities.lock().get(&key).cloned()
    }

    /// The account id the credentials belong to, asked once per credential and STS endpoint.
    /// An endpoint that does not serve STS (a private CloudSSO gateway) leaves the access key id
    /// as the identity: claims then hold per key, never across accounts.
    pub async fn account_id<F, Fut>(
        &self,
        source: &Arc<CredentialSource>,
        sts_endpoint: &Endpoint,
        ask: F,
    ) -> Result<String, ReconcileError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<String, CloudError>>,
    {
        let key = (Arc::as_ptr(source) as usize, sts_endpoint.url());
        if let Some(known) = self.identities.lock().get(&key) {
            return Ok(known.clone());
        }
        let account_id = match ask().await {
            Ok(account_id) => account_id,
            Err(error) if no_sts_here(&error) => {
                let credentials = source
                    .get()
                    .await
                    .map_err(|error| ReconcileError::from_cloud(error.into(), "-", None))?;
                tracing::info!(endpoint = %sts_endpoint, %error, "GetCallerIdentity not served; ownership is keyed by access key");
                format!("key:{}", credentials.access_key_id)
            }
            Err(error) => return Err(ReconcileError::from_cloud(error, "-", None)),
        };
        self.identities.lock().insert(key, account_id.clone());
        Ok(account_id)
    }
}

/// An answer that says the endpoint has no such action (not that the keys are wrong).
fn no_sts_here(error: &CloudError) -> bool {
    error
        .code()
        .is_some_and(|code| code.starts_with("InvalidAction") || code.starts_with("InvalidVersion"))
        || error.api_kind() == Some(ApiErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::UserMfaSetting;
    use kube::core::PartialObjectMetaExt;
    use kube::runtime::{reflector, watcher};

    fn tenancy(accounts: &[serde_json::Value], namespaces: &[(&str, &str)]) -> Tenancy {
        let (account_store, mut account_writer) = reflector::store::<CloudAccount>();
        for account in accounts {
            let account: CloudAccount = serde_json::from_value(account.clone()).unwrap();
            account_writer.apply_watcher_event(&watcher::Event::Apply(account));
        }
        let (namespace_store, mut namespace_writer) = reflector::store();
        for (name, team) in namespaces {
            let meta = kube::api::ObjectMeta {
                name: Some(name.to_string()),
                labels: Some([("team".to_string(), team.to_string())].into()),
                ..Default::default()
            };
            namespace_writer.apply_watcher_event(&watcher::Event::Apply(
                meta.into_request_partial::<Namespace>(),
            ));
        }
        Tenancy::new(account_store, namespace_store)
    }

    fn account(name: &str, team: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut spec = serde_json::json!({"credentials": {"operator": {}},
            "namespaceSelector": {"matchLabels": {"team": team}}, "endpoint": "http://127.0.0.1:1"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::json!({"apiVersion": "cloudsso.mfa-operator.dev/v1alpha1", "kind": "CloudAccount",
            "metadata": {"name": name}, "spec": spec})
    }

    fn user(namespace: &str, spec: serde_json::Value) -> UserMfaSetting {
        let mut full = serde_json::json!({"directoryId": "d-1", "userId": "u-1",
            "userMfaAuthenticationSettings": "Enabled"});
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let mut object = UserMfaSetting::new("u", serde_json::from_value(full).unwrap());
        object.metadata.namespace = Some(namespace.into());
        object
    }

    fn refused(result: Result<Plan, ReconcileError>) -> String {
        match result {
            Err(error @ ReconcileError::AccountNotAllowed { .. }) => error.to_string(),
            other => panic!("not refused: {:?}", other.map(|plan| plan.keys)),
        }
    }

    #[test]
    fn the_operators_credentials_only_through_an_account_that_admits_the_namespace() {
        let tenancy = tenancy(
            &[
                account("corp", "sec", serde_json::json!({"directoryIds": ["d-1"]})),
                account("default", "sec", serde_json::json!({})),
            ],
            &[("security", "sec"), ("dev", "dev")],
        );
        let by_ref = serde_json::json!({"accountRef": {"name": "corp"}});
        let plan = tenancy
            .plan(&user("security", by_ref.clone()), Some("d-1"))
            .unwrap();
        assert_eq!(plan.keys, Keys::Operator);
        assert_eq!(
            plan.endpoint_override.as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(plan.account.as_deref(), Some("corp"));
        let message = refused(tenancy.plan(&user("dev", by_ref.clone()), Some("d-1")));
        assert!(
            message.contains("corp") && message.contains("dev"),
            "{message}"
        );
        let message = refused(tenancy.plan(&user("security", by_ref), Some("d-2")));
        assert!(message.contains("directoryIds"), "{message}");
        // Neither reference: the account named default, on the same terms.
        let none = serde_json::json!({});
        assert_eq!(
            tenancy
                .plan(&user("security", none.clone()), Some("d-2"))
                .unwrap()
                .account
                .as_deref(),
            Some("default")
        );
        refused(tenancy.plan(&user("dev", none), Some("d-1")));
        let missing = serde_json::json!({"accountRef": {"name": "nope"}});
        assert!(
            refused(tenancy.plan(&user("security", missing), None))
                .contains("no CloudAccount nope")
        );
        // An unknown namespace is refused, not guessed.
        refused(tenancy.plan(&user("elsewhere", serde_json::json!({})), None));
    }

    #[test]
    fn own_keys_go_where_the_resource_says_and_no_account_is_needed() {
        let tenancy = tenancy(&[], &[]);
        let own = serde_json::json!({"credentialsSecretRef": {"name": "keys"}, "endpoint": "http://127.0.0.9:1", "region": "cn-hangzhou"});
        let plan = tenancy.plan(&user("dev", own), Some("d-1")).unwrap();
        assert_eq!(
            plan.keys,
            Keys::Secret {
                namespace: "dev".into(),
                name: "keys".into()
            }
        );
        assert_eq!(plan.region, "cn-hangzhou");
        assert_eq!(plan.account, None);
        // Stored before the CEL rule: an endpoint beside no Secret never reaches an account's keys.
        let stale = serde_json::json!({"endpoint": "http://evil:1"});
        assert!(matches!(
            tenancy.plan(&user("dev", stale), None),
            Err(ReconcileError::InvalidSpec(_))
        ));
    }

    #[test]
    fn a_region_stored_by_an_older_version_gives_way_to_the_accounts() {
        let tenancy = tenancy(
            &[account(
                "default",
                "sec",
                serde_json::json!({"region": "cn-hangzhou"}),
            )],
            &[("security", "sec")],
        );
        let upgraded = serde_json::json!({"region": "cn-shanghai"});
        let plan = tenancy.plan(&user("security", upgraded), None).unwrap();
        assert_eq!(
            (plan.region.as_str(), plan.keys),
            ("cn-hangzhou", Keys::Operator)
        );
    }
}
