//! The controllers of the three kinds and CloudAccount, and their wiring (`cloudsso-mfa-operator run`).

pub mod account;
pub mod budget;
pub mod census;
pub mod claims;
pub mod clients;
pub mod clock;
pub mod conditions;
pub mod context;
pub mod directory;
pub mod error;
pub mod keys;
pub mod plan;
pub mod ram;
pub mod reconciler;
pub mod status;
pub mod tenancy;
pub mod user;
pub mod users;
pub mod wake;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, future};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{CloudAccount, DirectoryMfaPolicy, RamUserMfaStatus, Reason, UserMfaSetting};
use crate::api::{CloudSpec, HasCommonStatus};
use crate::cloud::{self, ClientConfig, CredentialSource};
use clients::CloudClients;
use context::{Context, DirectoryContext, Settings, backoff};
use error::ReconcileError;
use keys::{fingerprint, key_of};
use reconciler::Kind;
use tenancy::Tenancy;

use crate::leader::{LeaderElector, LeaseSettings};
use crate::telemetry::{self, Health, Metrics};

/// What `run` needs from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub resync_interval: Duration,
    /// How often users' device lists are read (None: every resync).
    pub device_resync_interval: Option<Duration>,
    pub max_concurrent_reconciles: u16,
    pub cloud_qps: std::num::NonZeroU32,
    pub watch_namespace: Option<String>,
    pub metrics_addr: std::net::SocketAddr,
    /// Take this Lease before reconciling; None runs as the only replica.
    pub leader_election: Option<LeaseSettings>,
}

/// What a reconcile is triggered by: the spec, deletion and finalizers (not status writes).
fn spec_or_lifecycle<K: Resource>(object: &K) -> u64 {
    let meta = object.meta();
    fingerprint(&(
        meta.generation,
        meta.deletion_timestamp.is_some(),
        &meta.finalizers,
    ))
}

fn api_for<K>(client: &kube::Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

fn error_policy<K: Resource>(object: Arc<K>, error: &ReconcileError, ctx: &Context) -> Action {
    let key = key_of(object.as_ref());
    let attempt = ctx.failures.record(&key);
    let delay = backoff(error.is_retryable(), attempt);
    tracing::warn!(object = %key, reason = error.reason().as_str(), %error, attempt, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Maps a Secret (its metadata: the watch never holds a Secret's data) to the resources whose
/// credentialsSecretRef names it, or whose CloudAccount's secretRef does.
fn users_of_secret<K: Kind>(
    store: reflector::Store<DeserializeGuard<K>>,
    accounts: reflector::Store<CloudAccount>,
) -> impl Fn(Arc<PartialObjectMeta<Secret>>) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    move |secret: Arc<PartialObjectMeta<Secret>>| {
        let (name, namespace) = (secret.name_any(), secret.namespace());
        // The accounts whose keys this Secret holds.
        let holders: Vec<String> = accounts
            .state()
            .iter()
            .filter(|account| {
                account
                    .spec
                    .credentials
                    .secret_ref
                    .as_ref()
                    .is_some_and(|r| Some(&r.namespace) == namespace.as_ref() && r.name == name)
            })
            .map(|account| account.name_any())
            .collect();
        store
            .state()
            .iter()
            .filter(|guard| {
                guard.0.as_ref().ok().is_some_and(|object| {
                    let own = guard.namespace() == namespace
                        && object
                            .spec()
                            .credentials_secret_ref()
                            .is_some_and(|r| r.name == name);
                    own || holders.iter().any(|a| Tenancy::uses_account(object, a))
                })
            })
            .map(|guard| ObjectRef::from_obj(guard.as_ref()))
            .collect()
    }
}

/// Maps a CloudAccount to the resources that use it (by accountRef, or as `default`).
fn users_of_account<K: Kind>(
    store: reflector::Store<DeserializeGuard<K>>,
) -> impl Fn(Arc<CloudAccount>) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    move |account: Arc<CloudAccount>| {
        let name = account.name_any();
        store
            .state()
            .iter()
            .filter(|guard| {
                guard
                    .0
                    .as_ref()
                    .is_ok_and(|object| Tenancy::uses_account(object, &name))
            })
            .map(|guard| ObjectRef::from_obj(guard.as_ref()))
            .collect()
    }
}

/// Maps a Namespace (its labels changed) to its resources that go through a CloudAccount.
fn users_in_namespace<K: Kind>(
    store: reflector::Store<DeserializeGuard<K>>,
) -> impl Fn(Arc<PartialObjectMeta<Namespace>>) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    move |namespace: Arc<PartialObjectMeta<Namespace>>| {
        let name = namespace.name_any();
        store
            .state()
            .iter()
            .filter(|guard| {
                guard.namespace().as_deref() == Some(name.as_str())
                    && guard
                        .0
                        .as_ref()
                        .is_ok_and(|object| object.spec().credentials_secret_ref().is_none())
            })
            .map(|guard| ObjectRef::from_obj(guard.as_ref()))
            .collect()
    }
}

/// Lets through an object only when `hash` of it changed since it last did (a CloudAccount's
/// spec, a Namespace's labels: not status writes or unrelated metadata).
fn changes_of<T, H>(
    objects: reflector::ReflectHandle<T>,
    hash: H,
) -> impl futures::Stream<Item = Arc<T>> + Send + 'static
where
    T: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    H: Fn(&T) -> u64 + Send + 'static,
{
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    objects.filter(move |object| {
        let value = hash(object.as_ref());
        let changed = seen.insert(object.name_any(), value) != Some(value);
        future::ready(changed)
    })
}

/// A CloudAccount's spec changes (its generation: not our status writes).
fn account_changes(
    accounts: reflector::ReflectHandle<CloudAccount>,
) -> impl futures::Stream<Item = Arc<CloudAccount>> + Send + 'static {
    changes_of(accounts, |account: &CloudAccount| {
        fingerprint(&account.meta().generation)
    })
}

/// What wakes a kind's resources besides their own changes: their Secrets, their CloudAccounts
/// and their Namespaces' labels (tenancy is re-evaluated when any of them changes).
struct Triggers {
    secrets: SecretChanges,
    accounts: reflector::ReflectHandle<CloudAccount>,
    namespaces: reflector::ReflectHandle<PartialObjectMeta<Namespace>>,
    account_store: reflector::Store<CloudAccount>,
}

/// One kind's store and the writer its watch fills it through.
type Reflector<K> = (reflector::Store<DeserializeGuard<K>>, Writer<K>);

/// What fills one kind's store.
type Writer<K> = reflector::store::Writer<DeserializeGuard<K>>;

/// The annotation client-side `kubectl apply` keeps a copy of the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Room for a burst of watch events before the watch waits for the controllers to take them.
const SHARED_BUFFER: usize = 1024;

/// One kind's watch, shared by its two controllers: it fills the store (without managedFields
/// and kubectl's last-applied copy: together most of a small object, and nothing here reads
/// them) and hands every applied object to the `resyncs` and `changes` subscribers, after the
/// store has it.
struct SharedWatch<K: Kind> {
    resyncs: reflector::ReflectHandle<DeserializeGuard<K>>,
    changes: reflector::ReflectHandle<DeserializeGuard<K>>,
    watch: future::BoxFuture<'static, ()>,
}

fn shared_watch<K: Kind>(api: Api<DeserializeGuard<K>>, writer: Writer<K>) -> SharedWatch<K> {
    let subscribe = |writer: &Writer<K>| {
        writer
            .subscribe()
            .expect("the writer of a shared store has subscribers")
    };
    let (resyncs, changes) = (subscribe(&writer), subscribe(&writer));
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|object| {
            object.managed_fields_mut().clear();
            // kubectl's copy of the whole object, as it was last applied: unread here too.
            object.annotations_mut().remove(LAST_APPLIED);
        });
    let watch = reflector::reflector(writer, events)
        .for_each(|_| future::ready(()))
        .boxed();
    SharedWatch {
        resyncs,
        changes,
        watch,
    }
}

/// Lets through an object only when its spec, deletion or finalizers changed since it last did
/// (not for status writes, ours included), like kube's `predicate_filter` on a shared stream.
fn spec_or_lifecycle_changes<K: Kind>(
    objects: reflector::ReflectHandle<DeserializeGuard<K>>,
) -> impl futures::Stream<Item = Arc<DeserializeGuard<K>>> + Send + 'static {
    // By a hash of the object's name: at 10,000 objects the names themselves would cost a
    // megabyte, and a collision only delays one object to its next resync.
    let mut seen: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    objects.filter(move |object| {
        let hash = spec_or_lifecycle(object.as_ref());
        let changed = seen.insert(fingerprint(&key_of(object.as_ref())), hash) != Some(hash);
        future::ready(changed)
    })
}

/// The main controller of a kind: its objects (spec and lifecycle changes) from the shared watch,
/// the resyncs it requeues, and the Secrets they name (from the one shared Secret watch), so a
/// changed credential re-queues its users.
fn controller_for<K: Kind>(
    objects: reflector::ReflectHandle<DeserializeGuard<K>>,
    store: reflector::Store<DeserializeGuard<K>>,
    triggers: Triggers,
) -> Controller<DeserializeGuard<K>> {
    // A change no pass handled yet is the fast lane's, which hands the object over once done:
    // so at the start, with every object new, the two queues do not both hold every object.
    let settled = spec_or_lifecycle_changes(objects)
        .filter(|guard| future::ready(!guard.0.as_ref().is_ok_and(change_pending)));
    let accounts = account_changes(triggers.accounts);
    let namespaces = changes_of(
        triggers.namespaces,
        |namespace: &PartialObjectMeta<Namespace>| fingerprint(namespace.labels()),
    );
    Controller::for_shared_stream(settled, store.clone())
        .watches_shared_stream(
            triggers.secrets,
            users_of_secret(store.clone(), triggers.account_store),
        )
        .watches_shared_stream(accounts, users_of_account(store.clone()))
        .watches_shared_stream(namespaces, users_in_namespace(store))
}

/// Every Secret's changes, metadata only, from one watch that the three controllers share.
type SecretChanges = reflector::ReflectHandle<PartialObjectMeta<Secret>>;

/// The one Secret watch: metadata only (a full watch would hold a copy of every Secret in scope,
/// Helm releases included, just to learn that one changed), without managedFields, into a store
/// that the credential cache reads resourceVersions from. Returns the store, a handle for each of
/// the `N` controllers, and the watch to drive.
fn secret_watch<const N: usize>(
    api: Api<PartialObjectMeta<Secret>>,
) -> (
    reflector::Store<PartialObjectMeta<Secret>>,
    [SecretChanges; N],
    impl std::future::Future<Output = ()>,
) {
    let (store, writer) = reflector::store_shared(SHARED_BUFFER);
    // One handle per controller and no other: a handle nobody reads would fill its buffer and
    // stop the watch for everyone.
    let changes = std::array::from_fn(|_| {
        writer
            .subscribe()
            .expect("a shared store always has subscribers")
    });
    let watch = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|secret| {
                secret.managed_fields_mut().clear();
                // kubectl's last-applied annotation is a copy of the Secret's data: never kept.
                secret.annotations_mut().clear();
            }),
    )
    .for_each(|_| future::ready(()));
    (store, changes, watch)
}

/// Resolves once SIGTERM or SIGINT arrived (cloneable: every waiter sees the same signal).
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// Listens for SIGTERM and SIGINT from now on.
    pub fn on_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let (sender, receiver) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: finishing the reconciles in flight, then stopping"),
                _ = interrupt.recv() => tracing::info!("SIGINT: finishing the reconciles in flight, then stopping"),
            }
            let _ = sender.send(true);
            // Keep the sender alive so waiters see `true`, not a closed channel.
            futures::future::pending::<()>().await;
        });
        Ok(Self(receiver))
    }

    pub async fn wait(self) {
        let mut receiver = self.0;
        let _ = receiver.wait_for(|signalled| *signalled).await;
    }
}

/// Wraps a reconcile function: objects that do not deserialize (the watch carries them in a
/// `DeserializeGuard`, so one bad object cannot stall the others) get a Warning Event and wait for
/// a change; every run is counted and timed in the metrics; and logs inside it carry the kind and
/// namespace/name (a span of our own target, so it survives the usual `kube=warn` filter that
/// hides kube-runtime's).
fn measured<K, C, F, Fut>(
    metrics: Arc<Metrics>,
    reconcile: F,
) -> impl FnMut(
    Arc<DeserializeGuard<K>>,
    Arc<C>,
) -> futures::future::BoxFuture<'static, Result<Action, ReconcileError>>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    C: AsRef<Context> + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<C>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    use tracing::Instrument;
    let kind: &'static str = match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        // Derived kinds name themselves statically; any other is named once for the process.
        std::borrow::Cow::Owned(kind) => Box::leak(kind.into_boxed_str()),
    };
    move |guard, ctx| {
        let metrics = metrics.clone();
        let span = tracing::info_span!(
            "reconcile",
            kind,
            object = %key_of(guard.as_ref())
        );
        let invalid = guard.0.is_err();
        let run = match &guard.0 {
            Ok(object) => reconcile(Arc::new(object.clone()), ctx).boxed(),
            Err(invalid) => {
                let note = format!(
                    "cannot read this {kind}: {}; fix or delete it (other resources are unaffected)",
                    invalid.error
                );
                async move {
                    let context: &Context = (*ctx).as_ref();
                    context
                        .event(
                            guard.as_ref(),
                            true,
                            Reason::InvalidObject,
                            "Reconcile",
                            note,
                        )
                        .await;
                    Ok(Action::await_change())
                }
                .boxed()
            }
        };
        Box::pin(
            async move {
                let started = std::time::Instant::now();
                let result = run.await;
                let failed = match &result {
                    Err(error) => Some(error.reason().as_str()),
                    Ok(_) if invalid => Some(Reason::InvalidObject.as_str()),
                    Ok(_) => None,
                };
                metrics.reconcile_finished(kind, started.elapsed(), failed);
                result
            }
            .instrument(span),
        )
    }
}

/// Binds `--metrics-addr` and serves /metrics, /healthz and /readyz until the sender is used.
async fn serve_telemetry(
    options: &RunOptions,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) -> Result<
    (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ),
    String,
> {
    let listener = tokio::net::TcpListener::bind(options.metrics_addr)
        .await
        .map_err(|error| format!("--metrics-addr {}: {error}", options.metrics_addr))?;
    let served_at = listener
        .local_addr()
        .map_err(|error| format!("--metrics-addr {}: {error}", options.metrics_addr))?;
    tracing::info!(address = %served_at, "serving /metrics, /healthz and /readyz");
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(telemetry::server::serve(
        listener,
        metrics.clone(),
        health.clone(),
        async move {
            let _ = server_stopped.await;
        },
    ));
    Ok((stop_server, server))
}

/// A Kubernetes client, once the API server and the CRDs answer.
async fn connect(namespace: &Option<String>) -> Result<kube::Client, String> {
    let client = kube::Client::try_default().await.map_err(|error| {
        format!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {error}")
    })?;
    let probe: Api<DeserializeGuard<DirectoryMfaPolicy>> = api_for(&client, namespace);
    probe
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) if status.code == 404 => {
                "the CRDs are not installed: kubectl apply -f crds/".to_string()
            }
            other => format!("cannot list DirectoryMfaPolicies: {other}"),
        })?;
    Ok(client)
}

/// Everything `run` starts, in order: the metrics and health server, the check that the API
/// server and the CRDs answer, the leader Lease when asked for, and the three controllers, which
/// finish their reconciles in flight on SIGTERM before the Lease is released.
pub async fn run(options: RunOptions) -> Result<(), String> {
    cloud::install_crypto_provider();
    let shutdown =
        Shutdown::on_signals().map_err(|error| format!("cannot listen for signals: {error}"))?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (stop_server, server) = serve_telemetry(&options, &metrics, &health).await?;
    let client = connect(&options.watch_namespace).await?;
    let http =
        cloud::http_client().map_err(|error| format!("cannot build an HTTP client: {error}"))?;
    health.set_ready(true);

    let elector = options
        .leader_election
        .clone()
        .map(|settings| LeaderElector::new(client.clone(), settings));
    if let Some(elector) = &elector {
        tracing::info!(lease = %elector.lease(), identity = elector.identity(), "waiting to become the leader");
        tokio::select! {
            () = elector.acquire() => {}
            () = shutdown.clone().wait() => {
                tracing::info!("stopped while standing by");
                let _ = stop_server.send(());
                return Ok(());
            }
        }
    }
    metrics.set_leader(true);

    let controllers = run_controllers(
        client,
        http,
        &options,
        metrics.clone(),
        shutdown.clone().wait(),
    );
    let outcome = match &elector {
        None => {
            controllers.await;
            Ok(())
        }
        Some(elector) => {
            tokio::select! {
                () = controllers => {
                    elector.release().await;
                    Ok(())
                }
                lost = elector.hold() => {
                    metrics.set_leader(false);
                    // Like controller-runtime: stop at once, so two replicas never reconcile together;
                    // the Deployment restarts this one as a standby.
                    Err(format!("lost leadership: {lost}"))
                }
            }
        }
    };
    metrics.set_leader(false);
    let _ = stop_server.send(());
    if let Ok(Err(error)) = server.await {
        tracing::warn!(%error, "the metrics server failed");
    }
    outcome
}

/// What every kind's controller shares in `run_controllers`.
struct Wiring<'a> {
    client: &'a kube::Client,
    namespace: &'a Option<String>,
    config: ControllerConfig,
    shutdown: future::Shared<future::BoxFuture<'static, ()>>,
    metrics: Arc<Metrics>,
}

impl Wiring<'_> {
    /// Kind `K`'s controller, run until shutdown: its watch, the shared reconcile, the backoff
    /// policy, and `woken`, the objects other controllers queue for it.
    fn run<K, W>(
        &self,
        reflector: Reflector<K>,
        woken: W,
        triggers: Triggers,
        ctx: Arc<K::Ctx>,
    ) -> impl std::future::Future<Output = ()> + use<K, W>
    where
        K: Kind,
        W: futures::Stream<Item = ObjectRef<DeserializeGuard<K>>> + Send + 'static,
    {
        let (store, writer) = reflector;
        let shared = shared_watch(api_for(self.client, self.namespace), writer);
        // What the fast lane handled, handed to the main controller for its resyncs.
        let (handoff, handed) = futures::channel::mpsc::unbounded();
        let resyncs = controller_for(shared.resyncs, store.clone(), triggers)
            .with_config(self.config.clone())
            .graceful_shutdown_on(self.shutdown.clone())
            .reconcile_on(futures::stream::select(woken, handed))
            .run(
                measured(self.metrics.clone(), reconciler::reconcile::<K>),
                |object, error, ctx: Arc<K::Ctx>| error_policy(object, error, (*ctx).as_ref()),
                ctx.clone(),
            )
            .for_each(|_| future::ready(()));
        let changes = fast_lane(shared.changes, store)
            .with_config(self.config.clone())
            .graceful_shutdown_on(self.shutdown.clone())
            .run(
                measured(
                    self.metrics.clone(),
                    move |object: Arc<K>, ctx: Arc<K::Ctx>| {
                        let handoff = handoff.clone();
                        async move {
                            // Resyncs are the main controller's: a change handled is handed to it,
                            // and this lane waits for the next (it retries its own failures).
                            let reference = keys::guarded_ref(object.as_ref());
                            let (key, this) = (
                                key_of(object.as_ref()),
                                object.meta().uid.clone().zip(object.meta().generation),
                            );
                            let base = ctx.clone();
                            let result = reconciler::reconcile::<K>(object, ctx).await;
                            // Handed over once a full pass handled this generation (not after the
                            // step that only adds the finalizer: the fast lane goes on to the pass).
                            let passes = &(*base).as_ref().passes;
                            if result.is_ok() && this.is_some() && this == passes.handled(&key) {
                                let _ = handoff.unbounded_send(reference);
                            }
                            result.map(|_| Action::await_change())
                        }
                    },
                ),
                |object, error, ctx: Arc<K::Ctx>| error_policy(object, error, (*ctx).as_ref()),
                ctx,
            )
            .for_each(|_| future::ready(()));
        let watch = shared.watch;
        async move {
            // The watch feeds both controllers and goes with them.
            let controllers = Box::pin(async { futures::join!(resyncs, changes) });
            future::select(controllers, watch).await;
        }
    }
}

/// Whether an object has a change no pass has handled yet: a new spec (generation ahead of
/// status.observedGeneration) or a deletion.
fn change_pending<K: Kind>(object: &K) -> bool {
    let handled = object
        .status()
        .and_then(|status| status.common().observed_generation);
    object.meta().deletion_timestamp.is_some() || object.meta().generation != handled
}

/// The fast lane for spec changes and deletions: a second controller over the same objects that
/// is woken only by changes no pass has handled, so a write never waits behind a queue of
/// resyncs (thousands of reads after a restart, or a census) in the main controller. The main
/// controller leaves such changes to it and gets the object back once the change is handled; a
/// pass it still makes meanwhile (a resync, a Secret that changed) finds the work done (a fresh
/// read in the shared view, an unchanged status). The two never run one object at once
/// (`reconcile` holds a per-object lock).
fn fast_lane<K: Kind>(
    objects: reflector::ReflectHandle<DeserializeGuard<K>>,
    store: reflector::Store<DeserializeGuard<K>>,
) -> Controller<DeserializeGuard<K>> {
    let pending = objects.filter(|guard| future::ready(guard.0.as_ref().is_ok_and(change_pending)));
    Controller::for_shared_stream(pending, store)
}

/// What `tenancy_watches` starts: the two stores, their handles, and the watches to drive.
struct TenancyWatches<const A: usize, const N: usize> {
    accounts: reflector::Store<CloudAccount>,
    account_handles: [reflector::ReflectHandle<CloudAccount>; A],
    namespaces: reflector::Store<PartialObjectMeta<Namespace>>,
    namespace_handles: [reflector::ReflectHandle<PartialObjectMeta<Namespace>>; N],
    watch: future::BoxFuture<'static, ()>,
}

/// The CloudAccounts (cluster-scoped, few) and the Namespaces (metadata only: their labels)
/// that tenancy reads, each into a store, with handles for the controllers they wake.
fn tenancy_watches<const A: usize, const N: usize>(
    client: &kube::Client,
    namespace: &Option<String>,
) -> TenancyWatches<A, N> {
    let (accounts, account_writer) = reflector::store_shared(SHARED_BUFFER);
    let account_handles = std::array::from_fn(|_| {
        account_writer
            .subscribe()
            .expect("a shared store always has subscribers")
    });
    let account_watch = reflector::reflector(
        account_writer,
        watcher(
            Api::<CloudAccount>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|account| account.managed_fields_mut().clear()),
    )
    .for_each(|_| future::ready(()));
    let (namespaces, namespace_writer) = reflector::store_shared(SHARED_BUFFER);
    let namespace_handles = std::array::from_fn(|_| {
        namespace_writer
            .subscribe()
            .expect("a shared store always has subscribers")
    });
    // Only the watched namespace's labels matter when the operator watches one.
    let config = match namespace {
        Some(namespace) => watcher::Config::default().fields(&format!("metadata.name={namespace}")),
        None => watcher::Config::default(),
    };
    let namespace_watch = reflector::reflector(
        namespace_writer,
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            config,
        )
        .default_backoff()
        .modify(|namespace| {
            namespace.managed_fields_mut().clear();
            namespace.annotations_mut().clear();
        }),
    )
    .for_each(|_| future::ready(()));
    let watch = async move {
        futures::join!(account_watch, namespace_watch);
    }
    .boxed();
    TenancyWatches {
        accounts,
        account_handles,
        namespaces,
        namespace_handles,
        watch,
    }
}

async fn run_controllers(
    client: kube::Client,
    http: reqwest::Client,
    options: &RunOptions,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let default_source =
        CredentialSource::from_env(http.clone()).map_err(|error| error.to_string());
    if let Err(error) = &default_source {
        tracing::info!(%error, "no operator credentials; only CloudAccounts with a secretRef and namespaces' own Secrets work");
    }
    metrics.set_cloud_rate(f64::from(options.cloud_qps.get()));
    let client_config = ClientConfig {
        qps: options.cloud_qps,
        ..ClientConfig::default()
    };
    let (secret_index, [policy_secrets, user_secrets, ram_secrets], secret_watch) =
        secret_watch(api_for(&client, &options.watch_namespace));
    let TenancyWatches {
        accounts: account_store,
        account_handles:
            [
                policy_accounts,
                user_accounts,
                ram_accounts,
                status_accounts,
            ],
        namespaces: namespace_store,
        namespace_handles: [policy_namespaces, user_namespaces, ram_namespaces],
        watch: tenancy_watch,
    } = tenancy_watches(&client, &options.watch_namespace);
    let ctx = Arc::new(Context::new(
        client.clone(),
        CloudClients::new(http, default_source, client_config, metrics.clone())
            .with_secret_index(secret_index),
        Settings {
            resync_interval: options.resync_interval,
            device_resync_interval: options
                .device_resync_interval
                .unwrap_or(options.resync_interval)
                .max(options.resync_interval),
            cloud_qps: options.cloud_qps.get(),
        },
        metrics.clone(),
        Tenancy::new(account_store.clone(), namespace_store),
    ));
    let wiring = Wiring {
        client: &client,
        namespace: &options.watch_namespace,
        config: ControllerConfig::default().concurrency(options.max_concurrent_reconciles),
        shutdown: shutdown.boxed().shared(),
        metrics,
    };
    let triggers = |secrets, accounts, namespaces| Triggers {
        secrets,
        accounts,
        namespaces,
        account_store: account_store.clone(),
    };

    let (policies, users, rams) = (
        reflector::store_shared(SHARED_BUFFER),
        reflector::store_shared(SHARED_BUFFER),
        reflector::store_shared(SHARED_BUFFER),
    );
    // Name resolution counts the names still to resolve among every UserMfaSetting.
    let _ = ctx.user_store.set(users.0.clone());
    // Policies wake each other (the Conflict rule) and their users (Effective follows the directory).
    let (wake_policies, woken_policies) = wake::channel(policies.0.clone());
    let (wake_users, woken_users) = wake::channel(users.0.clone());
    // Two UserMfaSettings for one user wake each other too (the Conflict rule).
    let _ = ctx.user_waker.set(wake_users.clone());
    let directory_ctx = Arc::new(DirectoryContext {
        base: ctx.clone(),
        policies: wake_policies,
        users: wake_users,
    });
    let directories = wiring.run::<DirectoryMfaPolicy, _>(
        policies,
        woken_policies,
        triggers(policy_secrets, policy_accounts, policy_namespaces),
        directory_ctx,
    );
    let users = wiring.run::<UserMfaSetting, _>(
        users,
        woken_users,
        triggers(user_secrets, user_accounts, user_namespaces),
        ctx.clone(),
    );
    let rams = wiring.run::<RamUserMfaStatus, _>(
        rams,
        futures::stream::pending(),
        triggers(ram_secrets, ram_accounts, ram_namespaces),
        ctx.clone(),
    );
    let accounts =
        Controller::for_shared_stream(account_changes(status_accounts), account_store.clone())
            .with_config(wiring.config.clone())
            .graceful_shutdown_on(wiring.shutdown.clone())
            .run(account::reconcile, account::error_policy, ctx)
            .for_each(|_| future::ready(()));

    tracing::info!(resync = ?options.resync_interval, namespace = ?options.watch_namespace, "controllers started");
    // The Secret, CloudAccount and Namespace watches feed the controllers and go with them.
    let controllers = async { futures::join!(directories, users, rams, accounts) };
    let watches = async { futures::join!(secret_watch, tenancy_watch) };
    future::select(Box::pin(controllers), Box::pin(watches)).await;
    tracing::info!("controllers stopped; every reconcile in flight finished");
}
