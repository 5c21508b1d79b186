//! The controllers of the three kinds and their wiring (`cloudsso-mfa-operator run`).

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

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
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

/// What `run` needs from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub resync_interval: Duration,
    pub max_concurrent_reconciles: u16,
    pub cloud_qps: std::num::NonZeroU32,
    pub watch_namespace: Option<String>,
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
    let key = format!(
        "{}/{}",
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default()
    );
    let attempt = ctx.failures.record(&key);
    let delay = backoff(error.is_retryable(), attempt);
    tracing::warn!(object = %key, reason = error.reason(), %error, attempt, ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Maps a Secret to the resources whose credentialsSecretRef names it.
fn users_of_secret<K>(
    store: reflector::Store<K>,
    secret_ref: fn(&K) -> Option<&SecretReference>,
) -> impl Fn(Secret) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    move |secret: Secret| {
        let (name, namespace) = (secret.name_any(), secret.namespace());
        store
            .state()
            .iter()
            .filter(|object| {
                object.namespace() == namespace
                    && secret_ref(object).is_some_and(|r| r.name == name)
            })
            .map(|object| ObjectRef::from_obj(object.as_ref()))
            .collect()
    }
}

/// A controller for one kind: its objects (filtered to spec and lifecycle changes) in `store`, and
/// the Secrets they name, so a changed credential re-queues its users. Stops on SIGTERM/SIGINT
/// after the reconciles in flight finish.
fn controller_for<K>(
    api: Api<K>,
    store: reflector::Store<K>,
    writer: reflector::store::Writer<K>,
    secrets: &Api<Secret>,
    secret_ref: fn(&K) -> Option<&SecretReference>,
) -> Controller<K>
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
    Controller::for_stream(stream, store.clone())
        .watches(
            secrets.clone(),
            watcher::Config::default(),
            users_of_secret(store, secret_ref),
        )
        .shutdown_on_signal()
}

pub async fn run(options: RunOptions) -> Result<(), String> {
    cloud::install_crypto_provider();
    let client = kube::Client::try_default().await.map_err(|error| {
        format!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {error}")
    })?;
    let probe: Api<DirectoryMfaPolicy> = api_for(&client, &options.watch_namespace);
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
        CloudClients::new(http, default_source, client_config.clone()),
        Settings {
            resync_interval: options.resync_interval,
        },
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
    .reconcile_on(woken_policies)
    .run(
        directory::reconcile,
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
    .reconcile_on(woken_users)
    .run(
        user::reconcile,
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
    .run(
        ram::reconcile,
        |object, error, ctx: Arc<Context>| error_policy(object, error, &ctx),
        ctx.clone(),
    )
    .for_each(|_| future::ready(()));

    tracing::info!(resync = ?options.resync_interval, namespace = ?options.watch_namespace, "controllers started");
    futures::join!(directories, users, rams);
    tracing::info!("controllers stopped");
    Ok(())
}
