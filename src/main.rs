//! `cloudsso-mfa-operator`: argument parsing and wiring only.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use cloudsso_mfa_operator::cloud::{
    self, ApiClient, ClientConfig, CloudSsoClient, CredentialSource, Endpoint, ImsClient, cloudsso,
    ims,
};
use cloudsso_mfa_operator::leader::LeaseSettings;
use cloudsso_mfa_operator::{api, audit, controller, operator, telemetry};

#[derive(Parser)]
#[command(
    name = "cloudsso-mfa-operator",
    version,
    about = "Declare, enforce and report Alibaba Cloud CloudSSO and RAM MFA posture from Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Print every CRD as YAML (what crds/ holds).
    Crd,
    /// Read a directory's (or, with --ram, the RAM account's) MFA posture from the cloud and
    /// print it (no cluster needed).
    Audit(AuditArgs),
}

/// Parses `30s`, `5m`, `1h30m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as 30s, 5m or 1h"))?;
    let duration = Duration::try_from(parsed).map_err(|_| format!("'{text}' is negative"))?;
    if duration.is_zero() {
        return Err("the duration must be greater than zero".into());
    }
    Ok(duration)
}

/// Parses `HOST:PORT`, `IP:PORT` or `:PORT` (every interface, as Go tools write it).
fn parse_listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_string(),
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| {
            format!("'{text}' is not an address such as 0.0.0.0:8080, localhost:8080 or :8080")
        })
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// How often each resource is read back from the cloud (drift detection).
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    resync_interval: Duration,
    /// How often each user's MFA device list is read back (default: every resync). Longer than
    /// the resync halves the calls per managed user; devices are still read afresh after every
    /// write and spec change, and by the census.
    #[arg(long, env = "DEVICE_RESYNC_INTERVAL", value_parser = parse_duration)]
    device_resync_interval: Option<Duration>,
    /// Passes that may make cloud calls at once, per urgency (spec changes and deletions, new
    /// resources, resyncs each have their own); default: --cloud-qps, from 4 to 128.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", value_parser = clap::value_parser!(u16).range(1..=256))]
    max_concurrent_reconciles: Option<u16>,
    /// Client-side limit of cloud API calls per second, per credential and endpoint.
    #[arg(long, env = "CLOUD_QPS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    cloud_qps: u32,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080", value_parser = parse_listen_address)]
    metrics_addr: std::net::SocketAddr,
    /// Take a coordination.k8s.io Lease before reconciling, so only one replica reconciles.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false)]
    leader_election: bool,
    /// Namespace of the Lease (default: POD_NAMESPACE, else the in-cluster namespace, else
    /// --watch-namespace, else default).
    #[arg(long, env = "LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        env = "LEADER_ELECTION_ID",
        default_value = "cloudsso-mfa-operator"
    )]
    leader_election_id: String,
    /// How long a leader that stopped renewing keeps the Lease (a standby's longest wait).
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading.
    #[arg(long, env = "LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    lease_renew_deadline: Duration,
    /// How often standbys try to take the Lease and the leader renews it.
    #[arg(long, env = "LEASE_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    lease_retry_period: Duration,
    /// Only watch this namespace (all namespaces when absent).
    #[arg(long, env = "WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
}

#[derive(Clone, Copy, ValueEnum, Debug)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
struct AuditArgs {
    /// The CloudSSO directory (d-...).
    #[arg(long, required_unless_present = "ram")]
    directory_id: Option<String>,
    /// Audit the RAM account instead: every RAM user, whether MFA is required at logon, the
    /// bound device, and the account's security preference (IMS).
    #[arg(long, conflicts_with = "directory_id")]
    ram: bool,
    /// Region of the CloudSSO endpoint.
    #[arg(long, default_value = api::DEFAULT_REGION, conflicts_with = "endpoint")]
    region: String,
    /// Endpoint URL overriding the region's (e.g. the emulator).
    #[arg(long)]
    endpoint: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: OutputFormat,
    /// Client-side limit of API calls per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    cloud_qps: u32,
}

async fn run_audit(args: AuditArgs) -> Result<(), String> {
    let http =
        cloud::http_client().map_err(|error| format!("cannot build an HTTP client: {error}"))?;
    let endpoint = Endpoint::resolve(args.endpoint.as_deref(), || {
        if args.ram {
            Ok(Endpoint::ims())
        } else {
            Endpoint::cloudsso(&args.region)
        }
    })
    .map_err(|error| format!("--endpoint/--region: {error}"))?;
    let credentials =
        CredentialSource::from_env(http.clone()).map_err(|error| error.to_string())?;
    let config = ClientConfig {
        qps: std::num::NonZeroU32::new(args.cloud_qps).unwrap_or(ClientConfig::default().qps),
        ..ClientConfig::default()
    };
    let version = if args.ram {
        ims::VERSION
    } else {
        cloudsso::VERSION
    };
    let api = ApiClient::new(
        http,
        endpoint,
        version,
        Arc::new(credentials),
        cloud::rate_limiter(config.qps),
        config,
    );
    let (table, json) = match &args.directory_id {
        Some(directory_id) if !args.ram => {
            let report = audit::collect(&CloudSsoClient::new(api), directory_id)
                .await
                .map_err(|error| error.to_string())?;
            (
                audit::render_table(&report),
                serde_json::to_string_pretty(&report),
            )
        }
        _ => {
            let report = audit::collect_ram(&ImsClient::new(api))
                .await
                .map_err(|error| error.to_string())?;
            (
                audit::render_ram_table(&report),
                serde_json::to_string_pretty(&report),
            )
        }
    };
    match args.output {
        OutputFormat::Table => print!("{table}"),
        OutputFormat::Json => println!("{}", json.map_err(|error| error.to_string())?),
    }
    Ok(())
}

const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The Lease settings when leader election is on; the identity is the pod name (or host name)
/// plus a random suffix, so a restarted pod never mistakes itself for its previous life.
fn lease_settings(args: &RunArgs) -> Result<Option<LeaseSettings>, String> {
    if !args.leader_election {
        return Ok(None);
    }
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| {
            std::fs::read_to_string(IN_CLUSTER_NAMESPACE)
                .ok()
                .map(|text| text.trim().to_string())
        })
        // Outside a cluster, an operator confined to one namespace may only have rights there.
        .or_else(|| args.watch_namespace.clone())
        .filter(|namespace| !namespace.is_empty())
        .unwrap_or_else(|| "default".into());
    let host = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "cloudsso-mfa-operator".into());
    let suffix: u32 = rand::random();
    let settings = LeaseSettings {
        namespace,
        name: args.leader_election_id.clone(),
        identity: format!("{host}_{suffix:08x}"),
        lease_duration: args.lease_duration,
        renew_deadline: args.lease_renew_deadline,
        retry_period: args.lease_retry_period,
    };
    settings.validate().map_err(|error| {
        format!("--lease-duration/--lease-renew-deadline/--lease-retry-period: {error}")
    })?;
    Ok(Some(settings))
}

/// glibc gives every thread that allocates its own malloc arena and returns little of them: with
/// the runtime's threads that fragmentation was a third of the peak at 2,000 resources (44.6 MiB;
/// 31.8 MiB with two arenas, 29.2 MiB with one, converging as fast). Set before any thread
/// starts; `MALLOC_ARENA_MAX` in the environment still wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cloudsso-mfa-operator: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Crd => api::crds_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(|error| format!("cannot render the CRDs: {error}")),
        Command::Audit(args) => runtime.block_on(run_audit(args)),
        Command::Run(args) => {
            telemetry::init_logging();
            lease_settings(&args).and_then(|leader_election| {
                runtime.block_on(operator::run(operator::RunOptions {
                    controllers: controller::ControllerOptions {
                        resync_interval: args.resync_interval,
                        device_resync_interval: args.device_resync_interval,
                        max_concurrent_reconciles: args.max_concurrent_reconciles,
                        cloud_qps: std::num::NonZeroU32::new(args.cloud_qps)
                            .unwrap_or(ClientConfig::default().qps),
                        watch_namespace: args.watch_namespace,
                    },
                    metrics_addr: args.metrics_addr,
                    leader_election,
                }))
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cloudsso-mfa-operator: error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_in_every_usual_spelling() {
        assert_eq!(
            parse_listen_address(":8080").unwrap().to_string(),
            "0.0.0.0:8080"
        );
        assert_eq!(parse_listen_address("127.0.0.1:0").unwrap().port(), 0);
        assert!(
            parse_listen_address("localhost:9090")
                .unwrap()
                .ip()
                .is_loopback()
        );
        assert!(
            parse_listen_address("8080")
                .unwrap_err()
                .contains("not an address")
        );
    }
}
