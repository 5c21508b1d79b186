//! The CloudSSO/RAM emulator: a local OpenAPI endpoint for tests, benchmarks and the demo. Never
//! used by the operator itself.

pub mod api;
pub mod directory_admin;
pub mod groups;
pub mod ram_login;
pub mod rpc;
pub mod seed;
pub mod server;

pub use seed::{Seed, SeedError};
pub use server::{EmulatorState, Faults, SharedState, router, serve};

/// Starts an emulator on `listener` in the background; for in-process tests.
pub fn spawn(listener: tokio::net::TcpListener, seed: Seed) -> SharedState {
    let state: SharedState = std::sync::Arc::new(std::sync::Mutex::new(EmulatorState::new(seed)));
    let served = state.clone();
    tokio::spawn(async move {
        if let Err(error) = serve(listener, served, std::future::pending()).await {
            tracing::error!(%error, "emulator stopped");
        }
    });
    state
}
