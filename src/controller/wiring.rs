//! How the controllers are started: the watches, the stores, the context, and one kube-runtime
//! Controller per kind, each built by `start` (the one place a Controller is configured).

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, future};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use serde::de::DeserializeOwned;

use super::admission::Admission;
use super::clients::CloudClients;
use super::context::{Context, Queues, Settings, Stores};
use super::error::ReconcileError;
use super::reconciler::{self, Kind};
use super::tenancy::Tenancy;
use super::triggers::Triggers;
use super::watches::{self, Reflector, SHARED_BUFFER, TenancyWatches};
use super::{instrument, kinds, wake};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ReflectHandle;

use crate::api::{
    CloudAccount, DirectoryMfaPolicy, RamSecurityPreference, RamUserMfaSetting, RamUserMfaStatus,
    UserMfaPolicy, UserMfaSetting,
};
use crate::cloud::{ClientConfig, CredentialSource};
use crate::telemetry::Metrics;

/// What the controllers need from the command line.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub resync_interval: Duration,
    /// How often users' device lists are read (None: every resync).
    pub device_resync_interval: Option<Duration>,
    /// Passes making cloud calls at once, per urgency (None: sized from `cloud_qps`).
    pub max_concurrent_reconciles: Option<u16>,
    pub cloud_qps: std::num::NonZeroU32,
    pub watch_namespace: Option<String>,
}

/// Passes at once, per urgency, when not asked: one per call a second of `--cloud-qps`. A pass
/// takes a few calls at tens of milliseconds each, but also its Kubernetes writes (a finalizer,
/// one or two status patches), which a busy API server answers in hundreds: with a quarter of
/// that (25 at 100/s) a bulk of 2,000 converged at 68 calls/s on this machine, under the quota.
/// The limiter, not this, keeps the calls within `--cloud-qps`.
pub fn default_concurrency(cloud_qps: u32) -> usize {
    (cloud_qps as usize).clamp(4, 128)
}

/// The API of a namespaced kind: in the watched namespace, or in all.
pub fn api_for<K>(client: &kube::Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Builds the Controller of `T` over `changes` and `store` (`wire` adds what else wakes it) and
/// runs it until shutdown: the one place a Controller is built and configured (no slot limit:
/// admission is the passes', see `admission`).
fn start<T, R, Fut>(
    (changes, store): (
        impl futures::Stream<Item = Arc<T>> + Send + 'static,
        reflector::Store<T>,
    ),
    wire: impl FnOnce(Controller<T>) -> Controller<T>,
    shutdown: future::Shared<future::BoxFuture<'static, ()>>,
    reconcile: R,
    error_policy: impl Fn(Arc<T>, &ReconcileError, Arc<Context>) -> Action + Send + Sync + 'static,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()>
where
    T: kube::Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    R: FnMut(Arc<T>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    wire(Controller::for_shared_stream(changes, store))
        .with_config(ControllerConfig::default().concurrency(0))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| future::ready(()))
}

/// Kind `K`'s controller and its watch, until shutdown; `woken`: what other passes queue for it.
fn run_kind<K, W>(
    ctx: &Arc<Context>,
    namespace: &Option<String>,
    (store, writer): Reflector<K>,
    woken: W,
    triggers: Triggers,
    shutdown: future::Shared<future::BoxFuture<'static, ()>>,
) -> impl std::future::Future<Output = ()> + use<K, W>
where
    K: Kind,
    W: futures::Stream<Item = ObjectRef<DeserializeGuard<K>>> + Send + 'static,
{
    let (changes, watch) =
        watches::kind_watch(api_for(&ctx.client, namespace), writer, ctx.clone());
    let (marks, woken_store) = (ctx.passes.marks.clone(), store.clone());
    // Passes that waited for a slot come back through their own queue (see `admission`).
    let (wake, admitted) = wake::admission_wake(store.clone());
    let wire = move |controller: Controller<_>| {
        let woken = futures::stream::select(woken, admitted);
        triggers.attach(controller.reconcile_on(woken), woken_store, marks)
    };
    let reconcile = move |guard, ctx| reconciler::reconcile_guarded::<K>(guard, ctx, wake.clone());
    let run = start(
        (changes, store),
        wire,
        shutdown,
        instrument::measured(reconcile),
        instrument::error_policy,
        ctx.clone(),
    );
    // The watch feeds the controller and goes with it.
    async move {
        future::select(Box::pin(run), watch).await;
    }
}

/// Every controller, until `shutdown`; every reconcile in flight finishes first.
pub async fn run_controllers(
    client: kube::Client,
    http: reqwest::Client,
    options: &ControllerOptions,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let namespace = &options.watch_namespace;
    let (secret_index, secrets, secret_watch) = watches::secret_watch(api_for(&client, namespace));
    let TenancyWatches {
        accounts,
        account_handles: [a0, a1, a2, a3, a4, a5, status_accounts],
        namespaces,
        namespace_handles,
        watch: tenancy_watch,
    } = watches::tenancy_watches(&client, namespace);
    let kinds: Reflectors = (
        reflector::store_shared(SHARED_BUFFER),
        reflector::store_shared(SHARED_BUFFER),
        reflector::store_shared(SHARED_BUFFER),
        reflector::store_shared(SHARED_BUFFER),
        reflector::store_shared(SHARED_BUFFER),
        reflector::store_shared(SHARED_BUFFER),
    );
    let stores = Stores {
        policies: kinds.0.0.clone(),
        users: kinds.1.0.clone(),
        ram_preferences: kinds.3.0.clone(),
        ram_users: kinds.4.0.clone(),
        user_policies: kinds.5.0.clone(),
    };
    let cloud = cloud_clients(http, options, &metrics).with_secret_index(secret_index);
    let tenancy = Tenancy::new(accounts.clone(), namespaces);
    let (ctx, queues) = Context::new(client, cloud, settings(options), metrics, tenancy, stores);
    let ctx = Arc::new(ctx);
    let handles = Handles {
        secrets,
        accounts: [a0, a1, a2, a3, a4, a5],
        namespaces: namespace_handles,
    };
    let shutdown = shutdown.boxed().shared();
    let namespaced = run_kinds(&ctx, namespace, kinds, queues, handles, shutdown.clone());
    let accounts = run_accounts(&ctx, status_accounts, accounts, shutdown);
    tracing::info!(resync = ?options.resync_interval, namespace = ?options.watch_namespace, "controllers started");
    // The Secret, CloudAccount and Namespace watches feed the controllers and go with them.
    let controllers = async { futures::join!(namespaced, accounts) };
    let watches = async { futures::join!(secret_watch, tenancy_watch) };
    let controllers = async {
        future::select(Box::pin(controllers), Box::pin(admission_clock(&ctx))).await;
    };
    future::select(Box::pin(controllers), Box::pin(watches)).await;
    tracing::info!("controllers stopped; every reconcile in flight finished");
}

/// Admission's clock (leases that ran out, resyncs past their wait; see `admission`), and the
/// passes waiting, in the metrics.
async fn admission_clock(ctx: &Context) {
    let report = |admission: &Admission| {
        for (urgency, waiting) in admission.waiting_by_name() {
            ctx.metrics.set_passes_waiting(urgency, waiting);
        }
    };
    ctx.passes.admission.keep_time(report).await;
}

/// How many namespaced kinds run (each gets a handle on every shared watch).
const NAMESPACED: usize = 6;

/// The shared watches' handles for the namespaced kinds, in the order policies, users, RAM
/// users' reports, RAM preferences, RAM users' settings, user policies.
struct Handles {
    secrets: [ReflectHandle<PartialObjectMeta<Secret>>; NAMESPACED],
    accounts: [ReflectHandle<CloudAccount>; NAMESPACED],
    namespaces: [ReflectHandle<PartialObjectMeta<Namespace>>; NAMESPACED],
}

/// What starting any kind's controller takes besides its own parts.
struct Starter<'a> {
    ctx: &'a Arc<Context>,
    namespace: &'a Option<String>,
    shutdown: future::Shared<future::BoxFuture<'static, ()>>,
}

impl Starter<'_> {
    fn run<K, W>(
        &self,
        reflector: Reflector<K>,
        woken: W,
        triggers: Triggers,
    ) -> impl std::future::Future<Output = ()> + use<K, W>
    where
        K: Kind,
        W: futures::Stream<Item = ObjectRef<DeserializeGuard<K>>> + Send + 'static,
    {
        let shutdown = self.shutdown.clone();
        run_kind(
            self.ctx,
            self.namespace,
            reflector,
            woken,
            triggers,
            shutdown,
        )
    }
}

/// The controllers of the namespaced kinds, until shutdown.
fn run_kinds(
    ctx: &Arc<Context>,
    namespace: &Option<String>,
    (policies, users, rams, ram_preferences, ram_users, user_policies): Reflectors,
    queues: Queues,
    handles: Handles,
    shutdown: future::Shared<future::BoxFuture<'static, ()>>,
) -> impl std::future::Future<Output = ()> {
    let Handles {
        secrets: [s0, s1, s2, s3, s4, s5],
        accounts: [a0, a1, a2, a3, a4, a5],
        namespaces: [n0, n1, n2, n3, n4, n5],
    } = handles;
    let triggers = |secrets, accounts, namespaces| Triggers {
        secrets,
        accounts,
        namespaces,
        account_store: ctx.tenancy.accounts().clone(),
    };
    let start = Starter {
        ctx,
        namespace,
        shutdown,
    };
    let directories = start.run(policies, queues.policies, triggers(s0, a0, n0));
    let users = start.run(users, queues.users, triggers(s1, a1, n1));
    let rams = start.run(rams, futures::stream::pending(), triggers(s2, a2, n2));
    let preferences = start.run(
        ram_preferences,
        queues.ram_preferences,
        triggers(s3, a3, n3),
    );
    let ram_users = start.run(ram_users, queues.ram_users, triggers(s4, a4, n4));
    let user_policies = start.run(user_policies, queues.user_policies, triggers(s5, a5, n5));
    async {
        futures::join!(
            directories,
            users,
            rams,
            preferences,
            ram_users,
            user_policies
        );
    }
}

/// The CloudAccount controller (its status only), until shutdown.
fn run_accounts(
    ctx: &Arc<Context>,
    changes: ReflectHandle<CloudAccount>,
    store: reflector::Store<CloudAccount>,
    shutdown: future::Shared<future::BoxFuture<'static, ()>>,
) -> impl std::future::Future<Output = ()> {
    start(
        (watches::account_changes(changes), store),
        |controller| controller,
        shutdown,
        kinds::account::reconcile,
        instrument::error_policy,
        ctx.clone(),
    )
}

/// The stores of the namespaced kinds and the writers their watches fill them through.
type Reflectors = (
    Reflector<DirectoryMfaPolicy>,
    Reflector<UserMfaSetting>,
    Reflector<RamUserMfaStatus>,
    Reflector<RamSecurityPreference>,
    Reflector<RamUserMfaSetting>,
    Reflector<UserMfaPolicy>,
);

/// What the options say of the controllers' settings.
fn settings(options: &ControllerOptions) -> Settings {
    let qps = options.cloud_qps.get();
    Settings {
        resync_interval: options.resync_interval,
        device_resync_interval: options
            .device_resync_interval
            .unwrap_or(options.resync_interval)
            .max(options.resync_interval),
        cloud_qps: qps,
        concurrency: options
            .max_concurrent_reconciles
            .map_or_else(|| default_concurrency(qps), usize::from),
    }
}

/// The cloud clients: the operator's own credential chain (reached only through a CloudAccount)
/// and the client-side rate.
fn cloud_clients(
    http: reqwest::Client,
    options: &ControllerOptions,
    metrics: &Arc<Metrics>,
) -> CloudClients {
    let default_source =
        CredentialSource::from_env(http.clone()).map_err(|error| error.to_string());
    if let Err(error) = &default_source {
        tracing::info!(%error, "no operator credentials; only CloudAccounts with a secretRef and namespaces' own Secrets work");
    }
    metrics.set_cloud_rate(f64::from(options.cloud_qps.get()));
    let config = ClientConfig {
        qps: options.cloud_qps,
        ..ClientConfig::default()
    };
    CloudClients::new(http, default_source, config, metrics.clone())
}
