//! The process around the controllers (`cloudsso-mfa-operator run`): signals, the metrics and
//! health server, the check that the API server and the CRDs answer, and the leader Lease; then
//! `controller::run_controllers` until SIGTERM or a lost Lease.

use std::sync::Arc;

use kube::api::{Api, ListParams};
use kube::core::DeserializeGuard;

use crate::api::DirectoryMfaPolicy;
use crate::cloud;
use crate::controller::{self, ControllerOptions, api_for};
use crate::leader::{LeaderElector, LeaseSettings};
use crate::telemetry::{self, Health, Metrics};

/// What `run` needs from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub controllers: ControllerOptions,
    pub metrics_addr: std::net::SocketAddr,
    /// Take this Lease before reconciling; None runs as the only replica.
    pub leader_election: Option<LeaseSettings>,
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
    let client = connect(&options.controllers.watch_namespace).await?;
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

    let controllers = controller::run_controllers(
        client,
        http,
        &options.controllers,
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
