//! cloudsso-mfa-operator: declare, enforce and report the MFA posture of Alibaba Cloud CloudSSO
//! directories and users, and of RAM users, as Kubernetes resources.

pub mod api;
pub mod audit;
pub mod cloud;
pub mod controller;
#[cfg(feature = "emulator")]
pub mod emulator;
pub mod leader;
pub mod operator;
pub mod telemetry;
