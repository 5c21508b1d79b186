//! `cloudsso-emulator --listen ADDR --seed FILE`: a local CloudSSO and RAM (IMS) OpenAPI endpoint.

use std::process::ExitCode;

use clap::Parser;

use cloudsso_mfa_operator::emulator::{self, Seed};

#[derive(Parser)]
#[command(
    name = "cloudsso-emulator",
    version,
    about = "A local CloudSSO (2021-05-15) and RAM IMS (2019-08-15) OpenAPI endpoint for tests and demos"
)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8600 (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8600")]
    listen: std::net::SocketAddr,
    /// The seed file (JSON): access keys, directories with users, devices and groups, RAM users
    /// with their login profiles, the RAM account's security preference.
    #[arg(long)]
    seed: String,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let seed = match Seed::load(&args.seed) {
        Ok(seed) => seed,
        Err(error) => {
            eprintln!("cloudsso-emulator: error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cloudsso-emulator: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!(
                    "cloudsso-emulator: error: cannot listen on {}: {error}",
                    args.listen
                );
                return ExitCode::FAILURE;
            }
        };
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let state = std::sync::Arc::new(std::sync::Mutex::new(emulator::EmulatorState::new(seed)));
        println!("cloudsso-emulator listening on http://{address}");
        match emulator::serve(listener, state, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("cloudsso-emulator: error: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
