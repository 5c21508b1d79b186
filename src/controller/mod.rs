//! The controllers: one kube-runtime Controller per kind (the three namespaced kinds and
//! CloudAccount), built in one place (`start`), and what they are made of.
//!
//! - `kinds/`: what each kind says (its `Kind`/`Writable` impl and pure planner).
//! - `reconciler`: the one skeleton every kind runs; `passes`: the current-status shortcut,
//!   urgencies and admission; `status`, `conditions`, `plan`, `restore`: what a pass writes.
//! - `watches`, `triggers`, `wake`: what starts a pass; `instrument`, `retry`, `events`: what
//!   surrounds one.
//! - `state/`: what the operator keeps of the cloud; `census`, `budget`: the users counted and
//!   the calls planned; `tenancy`, `clients`: who may call the cloud, as whom, and where.
//! - `context`, `keys`, `clock`, `error`: what they share.

pub mod budget;
pub mod census;
pub mod clients;
pub mod clock;
pub mod conditions;
pub mod context;
pub mod error;
pub mod events;
pub mod instrument;
pub mod keys;
pub mod kinds;
pub mod passes;
pub mod plan;
pub mod reconciler;
pub mod restore;
pub mod retry;
pub mod state;
pub mod status;
pub mod tenancy;
pub mod triggers;
pub mod wake;
pub mod watches;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, future};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use serde::de::DeserializeOwned;

use crate::api::{CloudAccount, DirectoryMfaPolicy, RamUserMfaStatus, UserMfaSetting};
use crate::cloud::{ClientConfig, CredentialSource};
use crate::telemetry::Metrics;
use clients::CloudClients;
use context::{Context, Settings, Stores};
use error::ReconcileError;
use reconciler::Kind;
use tenancy::Tenancy;
use triggers::Triggers;
use watches::{Reflector, SHARED_BUFFER, TenancyWatches};

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

/// Passes at once when not asked: a quarter second of calls at `--cloud-qps` (40 ms a call, a
/// few calls a pass), so the quota is reached, not exceeded by a crowd waiting at the limiter.
pub fn default_concurrency(cloud_qps: u32) -> usize {
    (cloud_qps as usize / 4).clamp(4, 64)
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

/// Runs `controller` until shutdown: the one place a Controller gets its configuration (no
/// slot limit: admission is the passes', see `passes`) and its reconcile.
fn start<T, R, Fut>(
    controller: Controller<T>,
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
    controller
        .with_config(ControllerConfig::default().concurrency(0))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| future::ready(()))
}

/// Kind `K`'s controller and its watch, until shutdown; `woken`: what other passes queue for it.
fn run_kind<K: Kind>(
    ctx: &Arc<Context>,
    namespace: &Option<String>,
    (store, writer): Reflector<K>,
    woken: impl futures::Stream<Item = ObjectRef<DeserializeGuard<K>>> + Send + 'static,
    triggers: Triggers,
    shutdown: future::Shared<future::BoxFuture<'static, ()>>,
) -> impl std::future::Future<Output = ()> {
    let (changes, watch) =
        watches::kind_watch(api_for(&ctx.client, namespace), writer, ctx.clone());
    let controller = Controller::for_shared_stream(changes, store.clone()).reconcile_on(woken);
    let controller = triggers.attach(controller, store, ctx.passes.marks.clone());
    let run = start(
        controller,
        shutdown,
        instrument::measured(reconciler::reconcile::<K>),
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
    let namespace = &options.watch_namespace;
    let (secret_index, [policy_secrets, user_secrets, ram_secrets], secret_watch) =
        watches::secret_watch(api_for(&client, namespace));
    let TenancyWatches {
        accounts,
        account_handles:
            [
                policy_accounts,
                user_accounts,
                ram_accounts,
                status_accounts,
            ],
        namespaces,
        namespace_handles: [policy_namespaces, user_namespaces, ram_namespaces],
        watch: tenancy_watch,
    } = watches::tenancy_watches(&client, namespace);
    let (policies, users, rams): (
        Reflector<DirectoryMfaPolicy>,
        Reflector<UserMfaSetting>,
        Reflector<RamUserMfaStatus>,
    ) = (
        reflector::store_shared(SHARED_BUFFER),
        reflector::store_shared(SHARED_BUFFER),
        reflector::store_shared(SHARED_BUFFER),
    );
    let settings = Settings {
        resync_interval: options.resync_interval,
        device_resync_interval: options
            .device_resync_interval
            .unwrap_or(options.resync_interval)
            .max(options.resync_interval),
        cloud_qps: options.cloud_qps.get(),
        concurrency: options
            .max_concurrent_reconciles
            .map_or_else(|| default_concurrency(options.cloud_qps.get()), usize::from),
    };
    let cloud = CloudClients::new(http, default_source, client_config, metrics.clone())
        .with_secret_index(secret_index);
    let stores = Stores {
        policies: policies.0.clone(),
        users: users.0.clone(),
    };
    let (ctx, woken_policies, woken_users) = Context::new(
        client.clone(),
        cloud,
        settings,
        metrics,
        Tenancy::new(accounts.clone(), namespaces),
        stores,
    );
    let ctx = Arc::new(ctx);
    let shutdown = shutdown.boxed().shared();
    let triggers = |secrets, accounts, namespaces| Triggers {
        secrets,
        accounts,
        namespaces,
        account_store: accounts_store(&ctx),
    };
    let directories = run_kind(
        &ctx,
        namespace,
        policies,
        woken_policies,
        triggers(policy_secrets, policy_accounts, policy_namespaces),
        shutdown.clone(),
    );
    let users = run_kind(
        &ctx,
        namespace,
        users,
        woken_users,
        triggers(user_secrets, user_accounts, user_namespaces),
        shutdown.clone(),
    );
    let rams = run_kind(
        &ctx,
        namespace,
        rams,
        futures::stream::pending(),
        triggers(ram_secrets, ram_accounts, ram_namespaces),
        shutdown.clone(),
    );
    let account_controller =
        Controller::for_shared_stream(watches::account_changes(status_accounts), accounts);
    let accounts = start(
        account_controller,
        shutdown,
        kinds::account::reconcile,
        kinds::account::error_policy,
        ctx.clone(),
    );

    tracing::info!(resync = ?options.resync_interval, namespace = ?options.watch_namespace, "controllers started");
    // The Secret, CloudAccount and Namespace watches feed the controllers and go with them.
    let controllers = async { futures::join!(directories, users, rams, accounts) };
    let watches = async { futures::join!(secret_watch, tenancy_watch) };
    future::select(Box::pin(controllers), Box::pin(watches)).await;
    tracing::info!("controllers stopped; every reconcile in flight finished");
}

/// The CloudAccounts tenancy reads, for the triggers that map a Secret to its accounts' users.
fn accounts_store(ctx: &Context) -> reflector::Store<CloudAccount> {
    ctx.tenancy.accounts().clone()
}
