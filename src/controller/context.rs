//! What every reconcile shares: the Kubernetes client, the cloud clients (one per credential and
//! endpoint, one rate limiter per credential), the cached observations of the cloud, the event
//! recorder and per-object failure counts for backoff.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::core::object::HasSpec;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Resource, ResourceExt};
use rand::Rng;

use super::census::Census;
use super::conditions;
use super::error::ReconcileError;
use super::keys::{MANAGER, key_of};
use super::wake::Waker;
use crate::api::{CloudSpec, DirectoryMfaPolicy, Reason, SecretReference, UserMfaSetting};
use crate::cloud::cloudsso::MfaSettingInfo;
use crate::cloud::{
    self, ApiClient, ClientConfig, CloudSsoClient, CredentialSource, Credentials, Endpoint,
    ImsClient, SharedLimiter,
};
use crate::telemetry::Metrics;

/// Operator-wide settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub resync_interval: Duration,
}

impl Settings {
    /// The resync interval with ±10% jitter, so resources spread out.
    pub fn jittered_resync(&self) -> Duration {
        let base = self.resync_interval.as_millis() as u64;
        let spread = (base / 10).max(1);
        Duration::from_millis(base - spread + rand::rng().random_range(0..=2 * spread))
    }
}

/// A Secret by (namespace, name); its source is kept with the fingerprint of its keys.
type SecretKey = (String, String);

/// Cloud clients, built once per (endpoint, API version, credential) and shared.
pub struct CloudClients {
    http: reqwest::Client,
    default_source: Result<Arc<CredentialSource>, String>,
    config: ClientConfig,
    limiters: Mutex<HashMap<String, SharedLimiter>>,
    /// Keyed by (endpoint, API version, the credential source's address); the address is never
    /// reused while its entry lives, since the client holds the source.
    clients: Mutex<HashMap<(String, &'static str, usize), ApiClient>>,
    secret_sources: Mutex<HashMap<SecretKey, (u64, Arc<CredentialSource>)>>,
    metrics: Arc<Metrics>,
}

fn fingerprint(value: &impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
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
            metrics,
        }
    }

    /// The credential source for a resource: its Secret, or the operator's own chain.
    pub async fn source(
        &self,
        kube: &kube::Client,
        namespace: &str,
        secret_ref: Option<&SecretReference>,
    ) -> Result<Arc<CredentialSource>, ReconcileError> {
        let Some(secret_ref) = secret_ref else {
            return self.default_source.clone().map_err(|error| {
                ReconcileError::CredentialsMissing(format!("no credentialsSecretRef and the operator's own credentials are not configured: {error}"))
            });
        };
        let secrets: Api<Secret> = Api::namespaced(kube.clone(), namespace);
        let secret = secrets.get_opt(&secret_ref.name).await?.ok_or_else(|| {
            ReconcileError::CredentialsMissing(format!(
                "Secret {namespace}/{} does not exist",
                secret_ref.name
            ))
        })?;
        let data = secret.data.unwrap_or_default();
        let read = |key: &str| -> Result<Option<String>, ReconcileError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.0.clone()).map(Some).map_err(|_| {
                    ReconcileError::CredentialsInvalid(format!(
                        "Secret {namespace}/{}: key {key} is not UTF-8",
                        secret_ref.name
                    ))
                }),
            }
        };
        let missing = |key: &str| {
            ReconcileError::CredentialsMissing(format!(
                "Secret {namespace}/{} has no key {key}",
                secret_ref.name
            ))
        };
        let access_key_id = read("accessKeyId")?.ok_or_else(|| missing("accessKeyId"))?;
        let access_key_secret =
            read("accessKeySecret")?.ok_or_else(|| missing("accessKeySecret"))?;
        let token = read("securityToken")?;
        let key = fingerprint(&(&access_key_id, &access_key_secret, &token));
        let credentials =
            Credentials::new(access_key_id, access_key_secret, token).map_err(|error| {
                ReconcileError::CredentialsInvalid(format!(
                    "Secret {namespace}/{}: {error}",
                    secret_ref.name
                ))
            })?;
        let mut sources = self
            .secret_sources
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let slot = (namespace.to_string(), secret_ref.name.clone());
        if let Some((known, source)) = sources.get(&slot)
            && *known == key
        {
            return Ok(source.clone());
        }
        let source = Arc::new(CredentialSource::Static(credentials));
        if let Some((_, rotated)) = sources.insert(slot, (key, source.clone())) {
            // The Secret's keys changed: the clients that signed with the old ones go, so
            // rotations do not accumulate clients.
            let rotated = Arc::as_ptr(&rotated) as usize;
            self.clients
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(_, _, source), _| *source != rotated);
        }
        Ok(source)
    }

    fn api_client(
        &self,
        endpoint: Endpoint,
        version: &'static str,
        source: Arc<CredentialSource>,
    ) -> ApiClient {
        let identity = source.identity();
        let key = (endpoint.url(), version, Arc::as_ptr(&source) as usize);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(key)
            .or_insert_with(|| {
                // One limiter per credential: the account's quota is shared by all its endpoints.
                let limiter = self
                    .limiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(identity)
                    .or_insert_with(|| cloud::rate_limiter(self.config.qps))
                    .clone();
                let api = if version == cloud::ims::VERSION {
                    "ims"
                } else {
                    "cloudsso"
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
}

/// One directory's last observed setting and when it was read; locked while a read is in flight.
type CachedSetting = Arc<tokio::sync::Mutex<Option<(MfaSettingInfo, Instant)>>>;

/// Directory settings shared by all users of a directory: one read per resync period, and
/// concurrent readers of a cold entry wait for the one call in flight.
#[derive(Default)]
pub struct DirectoryCache {
    entries: Mutex<HashMap<(String, String), CachedSetting>>,
}

impl DirectoryCache {
    fn slot(&self, endpoint: &Endpoint, directory_id: &str) -> CachedSetting {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((endpoint.url(), directory_id.to_string()))
            .or_default()
            .clone()
    }

    pub async fn get_or_fetch<F, Fut>(
        &self,
        endpoint: &Endpoint,
        directory_id: &str,
        ttl: Duration,
        fetch: F,
    ) -> Result<MfaSettingInfo, cloud::CloudError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<MfaSettingInfo, cloud::CloudError>>,
    {
        let slot = self.slot(endpoint, directory_id);
        let mut entry = slot.lock().await;
        if let Some((info, fetched)) = entry.as_ref()
            && fetched.elapsed() < ttl
        {
            return Ok(info.clone());
        }
        let info = fetch().await?;
        *entry = Some((info.clone(), Instant::now()));
        Ok(info)
    }

    /// Records a fresh observation (the directory controller just read or wrote it).
    pub async fn store(&self, endpoint: &Endpoint, directory_id: &str, info: MfaSettingInfo) {
        let slot = self.slot(endpoint, directory_id);
        *slot.lock().await = Some((info, Instant::now()));
    }
}

/// Failure counts per object, for backoff that grows (kube-runtime keeps none per object).
#[derive(Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    pub fn record(&self, key: &str) -> u32 {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key.to_string()).or_default();
        *count = count.saturating_add(1);
        *count
    }

    pub fn clear(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Requeue delay after the `attempt`-th consecutive failure: retryable errors start at 1 s and
/// cap at 1 min; terminal ones (someone must fix something) start at 5 s and cap at 5 min.
pub fn backoff(retryable: bool, attempt: u32) -> Duration {
    let (base, cap) = if retryable {
        (Duration::from_secs(1), Duration::from_secs(60))
    } else {
        (Duration::from_secs(5), Duration::from_secs(300))
    };
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(cap);
    let millis = ceiling.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(millis * 3 / 4..=millis))
}

pub struct Context {
    pub client: kube::Client,
    pub cloud: CloudClients,
    pub settings: Settings,
    pub recorder: Recorder,
    pub directories: DirectoryCache,
    /// (endpoint, directory, userName) -> userId, dropped when the id stops resolving.
    pub user_ids: Mutex<HashMap<(String, String, String), String>>,
    pub failures: Failures,
    pub metrics: Arc<Metrics>,
    pub census: Census,
}

/// What the DirectoryMfaPolicy controller adds: the policies it sees (for ownership) and the
/// UserMfaSettings (their Effective condition follows the directory), each with a way to wake them.
pub struct DirectoryContext {
    pub base: Arc<Context>,
    pub policies: Waker<DirectoryMfaPolicy>,
    pub users: Waker<UserMfaSetting>,
}

impl AsRef<Context> for DirectoryContext {
    fn as_ref(&self) -> &Context {
        &self.base
    }
}

impl AsRef<Context> for Context {
    fn as_ref(&self) -> &Context {
        self
    }
}

impl Context {
    pub fn new(
        client: kube::Client,
        cloud: CloudClients,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let census = Census::new(metrics.clone(), settings.resync_interval);
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            cloud,
            settings,
            directories: DirectoryCache::default(),
            user_ids: Mutex::default(),
            failures: Failures::default(),
            metrics,
            census,
        }
    }

    /// The credential source a resource asks for: its Secret, or the operator's own chain.
    pub async fn source_of<K>(&self, object: &K) -> Result<Arc<CredentialSource>, ReconcileError>
    where
        K: Resource + HasSpec<Spec: CloudSpec>,
    {
        let namespace = object.meta().namespace.as_deref().unwrap_or_default();
        let secret_ref = object.spec().credentials_secret_ref();
        self.cloud.source(&self.client, namespace, secret_ref).await
    }

    /// The CloudSSO client a resource asks for: its endpoint (or its region's) and its credentials.
    pub async fn cloudsso_of<K>(
        &self,
        object: &K,
    ) -> Result<(Endpoint, CloudSsoClient), ReconcileError>
    where
        K: Resource + HasSpec<Spec: CloudSpec>,
    {
        let spec = object.spec();
        let endpoint = Endpoint::resolve(spec.endpoint(), || Endpoint::cloudsso(spec.region()))
            .map_err(|error| ReconcileError::InvalidSpec(format!("endpoint: {error}")))?;
        let source = self.source_of(object).await?;
        Ok((endpoint.clone(), self.cloud.cloudsso(endpoint, source)))
    }

    /// Finishes a deletion after writing back `status.restoreTo`: an Event either way, and a cloud
    /// object that is already gone counts as restored, so deletion never hangs on it.
    pub async fn finish_restore<K>(
        &self,
        object: &K,
        written: Result<(), cloud::CloudError>,
        directory_id: &str,
        user: Option<&str>,
        restored: String,
    ) -> Result<kube::runtime::controller::Action, ReconcileError>
    where
        K: Resource<DynamicType = ()>,
    {
        match written {
            Ok(()) => {
                self.event(object, false, Reason::Restored, "Delete", restored)
                    .await;
                Ok(kube::runtime::controller::Action::await_change())
            }
            Err(error)
                if error
                    .code()
                    .is_some_and(|code| code.starts_with("EntityNotExist")) =>
            {
                Ok(kube::runtime::controller::Action::await_change())
            }
            Err(error) => {
                let error = ReconcileError::from_cloud(error, directory_id, user);
                let note = format!("could not restore before deletion: {error}");
                self.event(object, true, error.reason(), "Delete", note)
                    .await;
                Err(error)
            }
        }
    }

    /// A Warning Event for a failed reconcile, only when Ready did not already say the same.
    pub async fn report_failure<K>(
        &self,
        object: &K,
        previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
        error: &ReconcileError,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let message = error.to_string();
        if !conditions::ready_says(previous, error.reason(), &message) {
            self.event(object, true, error.reason(), "Reconcile", message)
                .await;
        }
    }

    /// Publishes an Event on `object`; a failure to publish is logged, never fatal.
    pub async fn event<K>(
        &self,
        object: &K,
        warning: bool,
        reason: Reason,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let reason = reason.as_str();
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        // Every Event is logged too, with the object, so logs alone tell the story.
        let object_name = key_of(object);
        if warning {
            tracing::warn!(kind = %K::kind(&()), object = %object_name, reason, note = event.note.as_deref().unwrap_or_default(), "event");
        } else {
            tracing::info!(kind = %K::kind(&()), object = %object_name, reason, note = event.note.as_deref().unwrap_or_default(), "event");
        }
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(object = %object.name_any(), %error, "could not publish event");
        }
    }
}
