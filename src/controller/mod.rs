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
            client: client_config,
        },
    ));
    let controller_config =
        ControllerConfig::default().concurrency(options.max_concurrent_reconciles);
    let secrets: Api<Secret> = api_for(&client, &options.watch_namespace);
    let watch_config = watcher::Config::default();

    // DirectoryMfaPolicy, with a store shared for the Conflict rule and a channel to wake claimants.
    let policies: Api<DirectoryMfaPolicy> = api_for(&client, &options.watch_namespace);
    let (policy_store, policy_writer) = reflector::store();
    let policy_stream =
        reflector::reflector(policy_writer, watcher(policies, watch_config.clone()))
            .default_backoff()
            .applied_objects()
            .predicate_filter(spec_or_lifecycle, Default::default());
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let settings: Api<UserMfaSetting> = api_for(&client, &options.watch_namespace);
    let (user_store, user_writer) = reflector::store();
    let (wake_users, woken_users) = futures::channel::mpsc::unbounded();
    let directory_ctx = Arc::new(DirectoryContext {
        base: ctx.clone(),
        index: PolicyIndex {
            store: policy_store.clone(),
            wake,
        },
        users: UserIndex {
            store: user_store.clone(),
            wake: wake_users,
        },
    });
    let directories = Controller::for_stream(policy_stream, policy_store.clone())
        .with_config(controller_config.clone())
        .watches(
            secrets.clone(),
            watch_config.clone(),
            users_of_secret(policy_store, |p: &DirectoryMfaPolicy| {
                p.spec.credentials_secret_ref.as_ref()
            }),
        )
        .reconcile_on(woken)
        .shutdown_on_signal()
        .run(
            directory::reconcile,
            |object, error, ctx: Arc<DirectoryContext>| error_policy(object, error, &ctx.base),
            directory_ctx,
        )
        .for_each(|_| future::ready(()));

    let user_stream = reflector::reflector(user_writer, watcher(settings, watch_config.clone()))
        .default_backoff()
        .applied_objects()
        .predicate_filter(spec_or_lifecycle, Default::default());
    let users = Controller::for_stream(user_stream, user_store.clone())
        .with_config(controller_config.clone())
        .watches(
            secrets.clone(),
            watch_config.clone(),
            users_of_secret(user_store, |u: &UserMfaSetting| {
                u.spec.credentials_secret_ref.as_ref()
            }),
        )
        .reconcile_on(woken_users)
        .shutdown_on_signal()
        .run(
            user::reconcile,
            |object, error, ctx: Arc<Context>| error_policy(object, error, &ctx),
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));

    let reports: Api<RamUserMfaStatus> = api_for(&client, &options.watch_namespace);
    let (ram_store, ram_writer) = reflector::store();
    let ram_stream = reflector::reflector(ram_writer, watcher(reports, watch_config.clone()))
        .default_backoff()
        .applied_objects()
        .predicate_filter(spec_or_lifecycle, Default::default());
    let rams = Controller::for_stream(ram_stream, ram_store.clone())
        .with_config(controller_config)
        .watches(
            secrets,
            watch_config,
            users_of_secret(ram_store, |r: &RamUserMfaStatus| {
                r.spec.credentials_secret_ref.as_ref()
            }),
        )
        .shutdown_on_signal()
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
