//! The cloud clients of the controllers: one per (endpoint, API version, credential), one rate
//! limiter per credential and endpoint (so one endpoint cannot slow another), and the credential
//! source of each Secret a resource names: read once and kept while the Secret's resourceVersion
//! (from the shared metadata-only watch) stays the same, rebuilt when its keys change.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use super::error::ReconcileError;
use super::keys::fingerprint;
use super::tenancy::Keys;
use crate::cloud::{
    self, ApiClient, ClientConfig, CloudSsoClient, CredentialSource, Credentials, Endpoint,
    ImsClient, SharedLimiter,
};
use crate::telemetry::Metrics;

/// A Secret by (namespace, name); its source is kept with the resourceVersion it was read at and
/// the fingerprint of its keys.
type SecretKey = (String, String);

/// What is known of one referenced Secret.
struct SecretSource {
    resource_version: Option<String>,
    fingerprint: u64,
    source: Arc<CredentialSource>,
}

/// The three keys of a credentials Secret: access key id and secret (required), security token.
fn keys_of(
    secret: Secret,
    namespace: &str,
) -> Result<(String, String, Option<String>), ReconcileError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let data = secret.data.unwrap_or_default();
    let read = |key: &str| -> Result<Option<String>, ReconcileError> {
        match data.get(key) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.0.clone()).map(Some).map_err(|_| {
                ReconcileError::CredentialsInvalid(format!(
                    "Secret {namespace}/{name}: key {key} is not UTF-8"
                ))
            }),
        }
    };
    let missing = |key: &str| {
        ReconcileError::CredentialsMissing(format!("Secret {namespace}/{name} has no key {key}"))
    };
    let access_key_id = read("accessKeyId")?.ok_or_else(|| missing("accessKeyId"))?;
    let access_key_secret = read("accessKeySecret")?.ok_or_else(|| missing("accessKeySecret"))?;
    Ok((access_key_id, access_key_secret, read("securityToken")?))
}

/// Cloud clients, built once per (endpoint, API version, credential) and shared.
pub struct CloudClients {
    http: reqwest::Client,
    default_source: Result<Arc<CredentialSource>, String>,
    config: ClientConfig,
    limiters: Mutex<HashMap<String, SharedLimiter>>,
    /// Keyed by (endpoint, API version, the credential source's address); the address is never
    /// reused while its entry lives, since the client holds the source.
    clients: Mutex<HashMap<(String, &'static str, usize), ApiClient>>,
    secret_sources: Mutex<HashMap<SecretKey, SecretSource>>,
    /// Every Secret's metadata (the controllers' shared watch): a referenced Secret whose
    /// resourceVersion did not move is not read again.
    secret_index: Option<Store<PartialObjectMeta<Secret>>>,
    metrics: Arc<Metrics>,
}

impl CloudClients {
    pub fn new(
        http: reqwest::Client,
        default_source: Result<CredentialSource, String>,
        config: ClientConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            default_source: default_source.map(Arc::new),
            config,
            limiters: Mutex::default(),
            clients: Mutex::default(),
            secret_sources: Mutex::default(),
            secret_index: None,
            metrics,
        }
    }

    /// Reads credentials from referenced Secrets only when `index` shows they changed.
    pub fn with_secret_index(mut self, index: Store<PartialObjectMeta<Secret>>) -> Self {
        self.secret_index = Some(index);
        self
    }

    /// The source kept for a Secret whose resourceVersion in the index is the one it was read at.
    fn unchanged_source(&self, slot: &SecretKey) -> Option<Arc<CredentialSource>> {
        let index = self.secret_index.as_ref()?;
        let current = index.get(&ObjectRef::new(&slot.1).within(&slot.0))?;
        let current = current.metadata.resource_version.as_deref()?;
        let sources = self.secret_sources.lock();
        let known = sources.get(slot)?;
        (known.resource_version.as_deref() == Some(current)).then(|| known.source.clone())
    }

    /// The credential source `keys` name: a Secret, or the operator's own chain (reached only
    /// through a CloudAccount: `tenancy` decides who gets `Keys::Operator`).
    pub async fn source(
        &self,
        kube: &kube::Client,
        keys: &Keys,
    ) -> Result<Arc<CredentialSource>, ReconcileError> {
        let (namespace, secret_name) = match keys {
            Keys::Operator => {
                return self.default_source.clone().map_err(|error| {
                    ReconcileError::CredentialsMissing(format!(
                        "the CloudAccount uses the operator's own credentials, which are not configured: {error}"
                    ))
                });
            }
            Keys::Secret { namespace, name } => (namespace.as_str(), name.as_str()),
        };
        let secret_ref = crate::api::SecretReference {
            name: secret_name.to_string(),
        };
        let slot = (namespace.to_string(), secret_ref.name.clone());
        if let Some(source) = self.unchanged_source(&slot) {
            return Ok(source);
        }
        let secrets: Api<Secret> = Api::namespaced(kube.clone(), namespace);
        let secret = secrets.get_opt(&secret_ref.name).await?.ok_or_else(|| {
            ReconcileError::CredentialsMissing(format!(
                "Secret {namespace}/{} does not exist",
                secret_ref.name
            ))
        })?;
        let resource_version = secret.metadata.resource_version.clone();
        let (access_key_id, access_key_secret, token) = keys_of(secret, namespace)?;
        let key = fingerprint(&(&access_key_id, &access_key_secret, &token));
        let credentials =
            Credentials::new(access_key_id, access_key_secret, token).map_err(|error| {
                ReconcileError::CredentialsInvalid(format!(
                    "Secret {namespace}/{}: {error}",
                    secret_ref.name
                ))
            })?;
        Ok(self.keep(slot, resource_version, key, credentials))
    }

    /// Keeps the source of a Secret just read: the one it had when its keys did not change
    /// (another field did), else a new one, dropping the clients that signed with the old keys
    /// so rotations do not accumulate clients.
    fn keep(
        &self,
        slot: SecretKey,
        resource_version: Option<String>,
        key: u64,
        credentials: Credentials,
    ) -> Arc<CredentialSource> {
        let mut sources = self.secret_sources.lock();
        if let Some(known) = sources.get_mut(&slot)
            && known.fingerprint == key
        {
            known.resource_version = resource_version;
            return known.source.clone();
        }
        let source = Arc::new(CredentialSource::Static(credentials));
        let kept = SecretSource {
            resource_version,
            fingerprint: key,
            source: source.clone(),
        };
        if let Some(SecretSource {
            source: rotated, ..
        }) = sources.insert(slot, kept)
        {
            let rotated = Arc::as_ptr(&rotated) as usize;
            self.clients
                .lock()
                .retain(|(_, _, source), _| *source != rotated);
        }
        source
    }

    fn api_client(
        &self,
        endpoint: Endpoint,
        version: &'static str,
        source: Arc<CredentialSource>,
    ) -> ApiClient {
        let limiter_key = format!("{} {}", source.identity(), endpoint.url());
        let key = (endpoint.url(), version, Arc::as_ptr(&source) as usize);
        let mut clients = self.clients.lock();
        clients
            .entry(key)
            .or_insert_with(|| {
                // One limiter per credential and endpoint: a tenant's endpoint answering fake
                // Throttling slows only its own calls. The price: one key used at two endpoints
                // (two regions, CloudSSO and IMS) may send --cloud-qps to each.
                let limiter = self
                    .limiters
                    .lock()
                    .entry(limiter_key)
                    .or_insert_with(|| cloud::rate_limiter(self.config.qps))
                    .clone();
                let api = match version {
                    cloud::ims::VERSION => "ims",
                    cloud::sts::VERSION => "sts",
                    _ => "cloudsso",
                };
                ApiClient::new(
                    self.http.clone(),
                    endpoint,
                    version,
                    source,
                    limiter,
                    self.config.clone(),
                )
                .with_observer(self.metrics.cloud_observer(api))
            })
            .clone()
    }

    pub fn cloudsso(&self, endpoint: Endpoint, source: Arc<CredentialSource>) -> CloudSsoClient {
        CloudSsoClient::new(self.api_client(endpoint, cloud::cloudsso::VERSION, source))
    }

    pub fn ims(&self, endpoint: Endpoint, source: Arc<CredentialSource>) -> ImsClient {
        ImsClient::new(self.api_client(endpoint, cloud::ims::VERSION, source))
    }

    /// STS, for GetCallerIdentity (the account a credential belongs to).
    pub fn sts(&self, endpoint: Endpoint, source: Arc<CredentialSource>) -> ApiClient {
        self.api_client(endpoint, cloud::sts::VERSION, source)
    }
}
