//! What every reconcile shares: the Kubernetes client, the cloud clients (`clients.rs`), the
//! cached observations of the cloud (directory settings here, users in `users.rs`), the budget of
//! cloud calls, the Events it publishes and per-object failure counts for backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::core::DeserializeGuard;
use kube::core::object::HasSpec;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use rand::Rng;

use super::budget::{Budget, Limits};
use super::census::Census;
use super::claims::Registry;
use super::clients::CloudClients;
use super::conditions;
use super::error::ReconcileError;
use super::keys::{MANAGER, key_of};
use super::tenancy::{Route, Service, Tenancy};
use super::users::{NameResolver, UserView};
use super::wake::Waker;
use crate::api::{CloudSpec, CommonStatus, DirectoryMfaPolicy, Reason, UserMfaSetting};
use crate::cloud::cloudsso::MfaSettingInfo;
use crate::cloud::{self, CloudSsoClient, Endpoint, ImsClient};
use crate::telemetry::Metrics;

/// Operator-wide settings from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub resync_interval: Duration,
    /// How often a user's device list is read (never more often than the resync).
    pub device_resync_interval: Duration,
    /// `--cloud-qps`, for the budget.
    pub cloud_qps: u32,
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

/// What an object's last full pass handled: its uid (a re-created object of the same name is
/// another) and generation.
pub type Handled = Option<(String, i64)>;

/// One lock per object, so two controllers of one kind never run passes of it at once; it holds
/// what the object's last full pass handled. An entry is small; `forget` drops it with the object.
#[derive(Default)]
pub struct PassLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Handled>>>>);

impl PassLocks {
    /// What the last full pass of `key` handled, when no pass runs now.
    pub fn handled(&self, key: &str) -> Handled {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)?
            .clone();
        lock.try_lock().ok()?.clone()
    }

    /// The object is gone (its finalizer released): its entry goes too.
    pub fn forget(&self, key: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<Handled> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
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
    pub events: EventSource,
    pub directories: DirectoryCache,
    /// Every user read, shared by the UserMfaSetting reconciles and the census.
    pub users: Arc<UserView>,
    /// userName -> userId, dropped when the id stops resolving.
    pub names: NameResolver,
    /// The UserMfaSettings the controller sees: the names still to resolve are counted there.
    pub user_store: OnceLock<Store<DeserializeGuard<UserMfaSetting>>>,
    /// Queues UserMfaSettings: claimants of one user wake each other when ownership may move.
    pub user_waker: OnceLock<Waker<UserMfaSetting>>,
    pub budget: Budget,
    pub passes: PassLocks,
    pub failures: Failures,
    pub metrics: Arc<Metrics>,
    pub census: Census,
    /// Which CloudAccounts admit which namespaces, and whose account a credential is.
    pub tenancy: Tenancy,
    /// The directories DirectoryMfaPolicies claim, and the users UserMfaSettings claim.
    pub directory_claims: Registry,
    pub user_claims: Registry,
}

/// Who a pass acts as and where, as its status records it (and its claims are keyed by).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub account_id: String,
    pub endpoint: String,
    pub cloud_account: Option<String>,
}

impl Identity {
    pub fn record(&self, common: &mut CommonStatus) {
        common.account_id = Some(self.account_id.clone());
        common.endpoint = Some(self.endpoint.clone());
        common.cloud_account = self.cloud_account.clone();
    }
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
        tenancy: Tenancy,
    ) -> Self {
        let users = Arc::new(UserView::default());
        let census = Census::new(metrics.clone(), users.clone());
        let budget = Budget::new(
            Limits {
                resync: settings.resync_interval,
                device_interval: settings.device_resync_interval,
                qps: f64::from(settings.cloud_qps),
            },
            metrics.clone(),
        );
        Self {
            events: EventSource::new(),
            client,
            cloud,
            settings,
            directories: DirectoryCache::default(),
            users,
            names: NameResolver::default(),
            user_store: OnceLock::new(),
            user_waker: OnceLock::new(),
            budget,
            passes: PassLocks::default(),
            failures: Failures::default(),
            metrics,
            census,
            tenancy,
            directory_claims: Registry::default(),
            user_claims: Registry::default(),
        }
    }

    /// Where `object`'s calls to `service` go and as whom (its own Secret, or a CloudAccount that
    /// admits it and `directory_id`), and the account the credentials belong to. A resource no
    /// account admits gets `AccountNotAllowed` before any cloud call.
    pub async fn route<K>(
        &self,
        object: &K,
        service: Service,
        directory_id: Option<&str>,
    ) -> Result<(Route, Identity), ReconcileError>
    where
        K: Resource + HasSpec<Spec: CloudSpec>,
    {
        let plan = self.tenancy.plan(object, directory_id)?;
        let (endpoint, sts_endpoint) = plan.endpoints(service)?;
        let source = self.cloud.source(&self.client, &plan.keys).await?;
        let sts = self.cloud.sts(sts_endpoint.clone(), source.clone());
        let account_id = self
            .tenancy
            .account_id(&source, &sts_endpoint, || async move {
                cloud::sts::get_caller_identity(&sts)
                    .await
                    .map(|identity| identity.account_id)
            })
            .await?;
        let identity = Identity {
            account_id,
            endpoint: endpoint.url(),
            cloud_account: plan.account.clone(),
        };
        let route = Route {
            endpoint,
            sts_endpoint,
            source,
            account: plan.account,
        };
        Ok((route, identity))
    }

    /// The CloudSSO client for `object`'s directory, and who it acts as.
    pub async fn cloudsso_of<K>(
        &self,
        object: &K,
        directory_id: &str,
    ) -> Result<(Endpoint, CloudSsoClient, Identity), ReconcileError>
    where
        K: Resource + HasSpec<Spec: CloudSpec>,
    {
        let (route, identity) = self
            .route(object, Service::CloudSso, Some(directory_id))
            .await?;
        let client = self.cloud.cloudsso(route.endpoint.clone(), route.source);
        Ok((route.endpoint, client, identity))
    }

    /// The RAM (IMS) client for `object`, and who it acts as.
    pub async fn ims_of<K>(&self, object: &K) -> Result<(ImsClient, Identity), ReconcileError>
    where
        K: Resource + HasSpec<Spec: CloudSpec>,
    {
        let (route, identity) = self.route(object, Service::Ims, None).await?;
        Ok((self.cloud.ims(route.endpoint, route.source), identity))
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

    /// Deletion goes on without writing back `restoreTo`: a Warning Event says why.
    pub async fn skip_restore<K>(
        &self,
        object: &K,
        reason: Reason,
        why: String,
    ) -> kube::runtime::controller::Action
    where
        K: Resource<DynamicType = ()>,
    {
        let note = format!("not restored before deletion: {why}");
        self.event(object, true, reason, "Delete", note).await;
        kube::runtime::controller::Action::await_change()
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
        // Every Event is logged too, with the object, so logs alone tell the story.
        let object_name = key_of(object);
        if warning {
            tracing::warn!(kind = %K::kind(&()), object = %object_name, reason, note, "event");
        } else {
            tracing::info!(kind = %K::kind(&()), object = %object_name, reason, note, "event");
        }
        let event = self
            .events
            .event(&object.object_ref(&()), warning, reason, action, note);
        let namespace = event.metadata.namespace.clone().unwrap_or_default();
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = events.create(&PostParams::default(), &event).await {
            tracing::warn!(object = %object.name_any(), %error, "could not publish event");
        }
    }
}

/// Who publishes Events, and how one is built: as kube-runtime's `Recorder` builds them, without
/// its cache of every Event of the last six minutes (kept there to count repeats into a series):
/// at 10,000 resources that cache alone is megabytes, and this operator does not repeat an Event
/// (a failure is reported only when Ready's message changes).
pub struct EventSource {
    controller: String,
    instance: String,
}

impl EventSource {
    fn new() -> Self {
        Self {
            controller: MANAGER.into(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER.into()),
        }
    }

    fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) -> K8sEvent {
        let now = jiff::Timestamp::now();
        K8sEvent {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                ..ObjectMeta::default()
            },
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        }
    }
}
