//! The controllers: one kube-runtime Controller per kind (the six namespaced kinds and
//! CloudAccount), built in one place (`wiring::start`), and what they are made of.
//!
//! - `kinds/`: what each kind says (its `Kind`/`Writable` impl and pure planner).
//! - `reconciler`: the one skeleton every kind runs; `writable`: its observe, plan and write for
//!   the kinds that write; `passes`: the current-status shortcut and urgencies; `admission`: the
//!   slots per urgency and the line of passes waiting; `status`, `conditions`, `plan`,
//!   `restore`, `finalizer`: what a pass writes; `reports`: the PolicyReports a UserMfaPolicy
//!   publishes.
//! - `watches`, `triggers`, `wake`: what starts a pass; `instrument`, `retry`, `events`: what
//!   surrounds one.
//! - `state/`: what the operator keeps of the cloud; `census`, `budget`: the users counted and
//!   the calls planned; `tenancy`, `clients`: who may call the cloud, as whom, and where.
//! - `context`, `keys`, `clock`, `error`: what they share; `wiring`: the stores, the context
//!   and the controllers, started together.

pub mod admission;
pub mod budget;
pub mod census;
pub mod clients;
pub mod clock;
pub mod conditions;
pub mod context;
pub mod error;
pub mod events;
pub mod finalizer;
pub mod instrument;
pub mod keys;
pub mod kinds;
pub mod passes;
pub mod plan;
pub mod reconciler;
pub mod reports;
pub mod restore;
pub mod retry;
pub mod state;
pub mod status;
pub mod tenancy;
pub mod triggers;
pub mod wake;
pub mod watches;
pub mod wiring;
pub mod writable;

pub use wiring::{ControllerOptions, api_for, default_concurrency, run_controllers};
