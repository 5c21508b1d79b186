//! The controllers of the three kinds and their wiring (`cloudsso-mfa-operator run`).

pub mod census;
pub mod conditions;
pub mod context;
pub mod directory;
pub mod error;
pub mod ram;
pub mod status;
pub mod user;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{DirectoryMfaPolicy, RamUserMfaStatus, SecretReference, UserMfaSetting};
use crate::cloud::{self, ClientConfig, CredentialSource};
use context::{CloudClients, Context, Settings, backoff};
use directory::{DirectoryContext, PolicyIndex, UserIndex};
use error::ReconcileError;

use crate::leader::{LeaderElector, LeaseSettings};
use crate::telemetry::{self, Health, Metrics};

/// What `run` needs from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub resync_interval: Duration,
    pub max_concurrent_reconciles: u16,
    pub cloud_qps: std::num::NonZeroU32,
    pub watch_namespace: Option<String>,
    pub metrics_addr: std::net::SocketAddr,
    /// Take this Lease before reconciling; None runs as the only replica.
    pub leader_election: Option<LeaseSettings>,
}

/// Reconcile when the spec, deletion or finalizers change; not for our own status writes.
fn spec_or_lifecycle<K: Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        meta.generation,
        meta.deletion_timestamp.is_some(),
        &meta.finalizers,
    )
        .hash(&mut hasher);
    Some(hasher.finish())
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
    let key = context::key_of(object.as_ref());
    let attempt = ctx.failures.record(&key);
    let delay = backoff(error.is_retryable(), attempt);
    tracing::warn!(object = %key, reason = error.reason(), %error, attempt, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Maps a Secret to the resources whose credentialsSecretRef names it.
fn users_of_secret<K>(
    store: reflector::Store<DeserializeGuard<K>>,
    secret_ref: fn(&K) -> Option<&SecretReference>,
) -> impl Fn(Secret) -> Vec<ObjectRef<DeserializeGuard<K>>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    move |secret: Secret| {
        let (name, namespace) = (secret.name_any(), secret.namespace());
        store
            .state()
            .iter()
            .filter(|guard| {
                guard.namespace() == namespace
                    && guard
                        .0
                        .as_ref()
                        .ok()
                        .and_then(secret_ref)
                        .is_some_and(|r| r.name == name)
            })
            .map(|guard| ObjectRef::from_obj(guard.as_ref()))
            .collect()
    }
}

/// The reference the controllers queue for `object` (they watch its guarded form).
pub fn guarded_ref<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<DeserializeGuard<K>> {
    let reference = ObjectRef::new(object.meta().name.as_deref().unwrap_or_default());
    match object.meta().namespace.as_deref() {
        Some(namespace) => reference.within(namespace),
        None => reference,
    }
}

/// A controller for one kind: its objects (filtered to spec and lifecycle changes) in `store`, and
/// the Secrets they name, so a changed credential re-queues its users.
fn controller_for<K>(
    api: Api<DeserializeGuard<K>>,
    store: reflector::Store<DeserializeGuard<K>>,
    writer: reflector::store::Writer<DeserializeGuard<K>>,
    secrets: &Api<Secret>,
    secret_ref: fn(&K) -> Option<&SecretReference>,
) -> Controller<DeserializeGuard<K>>
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .predicate_filter(spec_or_lifecycle, Default::default());
    Controller::for_stream(stream, store.clone()).watches(
        secrets.clone(),
        watcher::Config::default(),
        users_of_secret(store, secret_ref),
    )
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
    kind: &'static str,
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
    move |guard, ctx| {
        let metrics = metrics.clone();
        let span = tracing::info_span!(
            "reconcile",
            kind,
            object = %context::key_of(guard.as_ref())
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
                        .event(guard.as_ref(), true, "InvalidObject", "Reconcile", note)
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
                    Err(error) => Some(error.reason()),
                    Ok(_) if invalid => Some("InvalidObject"),
                    Ok(_) => None,
                };
                metrics.reconcile_finished(kind, started.elapsed(), failed);
                result
            }
            .instrument(span),
        )
    }
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

    let client = kube::Client::try_default().await.map_err(|error| {
        format!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {error}")
    })?;
    let probe: Api<DeserializeGuard<DirectoryMfaPolicy>> =
        api_for(&client, &options.watch_namespace);
    probe
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) if status.code == 404 => {
                "the CRDs are not installed: kubectl apply -f crds/".to_string()
            }
            other => format!("cannot list DirectoryMfaPolicies: {other}"),
        })?;
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

async fn run_controllers(
    client: kube::Client,
    http: reqwest::Client,
    options: &RunOptions,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    let default_source =
        CredentialSource::from_env(http.clone()).map_err(|error| error.to_string());
    if let Err(error) = &default_source {
        tracing::info!(%error, "no default credentials; resources need a credentialsSecretRef");
    }
    let client_config = ClientConfig {
        qps: options.cloud_qps,
        ..ClientConfig::default()
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        CloudClients::new(http, default_source, client_config.clone(), metrics.clone()),
        Settings {
            resync_interval: options.resync_interval,
        },
        metrics.clone(),
    ));
    let controller_config =
        ControllerConfig::default().concurrency(options.max_concurrent_reconciles);
    let secrets: Api<Secret> = api_for(&client, &options.watch_namespace);

    let (policy_store, policy_writer) = reflector::store();
    let (user_store, user_writer) = reflector::store();
    let (ram_store, ram_writer) = reflector::store();
    // Channels that wake policies (the Conflict rule) and users (Effective follows the directory).
    let (wake_policies, woken_policies) = futures::channel::mpsc::unbounded();
    let (wake_users, woken_users) = futures::channel::mpsc::unbounded();
    let directory_ctx = Arc::new(DirectoryContext {
        base: ctx.clone(),
        index: PolicyIndex {
            store: policy_store.clone(),
            wake: wake_policies,
        },
        users: UserIndex {
            store: user_store.clone(),
            wake: wake_users,
        },
    });
    let namespace = &options.watch_namespace;
    let directories = controller_for(
        api_for(&client, namespace),
        policy_store,
        policy_writer,
        &secrets,
        |p: &DirectoryMfaPolicy| p.spec.credentials_secret_ref.as_ref(),
    )
    .with_config(controller_config.clone())
    .graceful_shutdown_on(shutdown.clone())
    .reconcile_on(woken_policies)
    .run(
        measured("DirectoryMfaPolicy", metrics.clone(), directory::reconcile),
        |object, error, ctx: Arc<DirectoryContext>| error_policy(object, error, &ctx.base),
        directory_ctx,
    )
    .for_each(|_| future::ready(()));
    let users = controller_for(
        api_for(&client, namespace),
        user_store,
        user_writer,
        &secrets,
        |u: &UserMfaSetting| u.spec.credentials_secret_ref.as_ref(),
    )
    .with_config(controller_config.clone())
    .graceful_shutdown_on(shutdown.clone())
    .reconcile_on(woken_users)
    .run(
        measured("UserMfaSetting", metrics.clone(), user::reconcile),
        |object, error, ctx: Arc<Context>| error_policy(object, error, &ctx),
        ctx.clone(),
    )
    .for_each(|_| future::ready(()));
    let rams = controller_for(
        api_for(&client, namespace),
        ram_store,
        ram_writer,
        &secrets,
        |r: &RamUserMfaStatus| r.spec.credentials_secret_ref.as_ref(),
    )
    .with_config(controller_config)
    .graceful_shutdown_on(shutdown)
    .run(
        measured("RamUserMfaStatus", metrics.clone(), ram::reconcile),
        |object, error, ctx: Arc<Context>| error_policy(object, error, &ctx),
        ctx.clone(),
    )
    .for_each(|_| future::ready(()));

    tracing::info!(resync = ?options.resync_interval, namespace = ?options.watch_namespace, "controllers started");
    futures::join!(directories, users, rams);
    tracing::info!("controllers stopped; every reconcile in flight finished");
}
