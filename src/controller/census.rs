//! The census of a directory's users that feeds the compliance gauges and
//! `DirectoryMfaPolicy.status.users`: taken by the policy that owns the directory, at most once per
//! resync interval, since it costs 1 + 2 × users API calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::context::Context;
use crate::api::DirectoryUserSummary;
use crate::audit::{self, UserReport};
use crate::cloud::{CloudSsoClient, Endpoint};
use crate::telemetry::DirectoryCompliance;

/// When each directory (endpoint, id) was last counted.
#[derive(Default)]
pub struct CensusClock(Mutex<HashMap<(String, String), Instant>>);

impl CensusClock {
    fn key(endpoint: &Endpoint, directory_id: &str) -> (String, String) {
        (endpoint.url(), directory_id.to_string())
    }

    fn last(&self, endpoint: &Endpoint, directory_id: &str) -> Option<Instant> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Self::key(endpoint, directory_id))
            .copied()
    }

    fn record(&self, endpoint: &Endpoint, directory_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Self::key(endpoint, directory_id), Instant::now());
    }

    /// The next owner of the directory counts at once.
    pub fn forget(&self, endpoint: &Endpoint, directory_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Self::key(endpoint, directory_id));
    }
}

pub fn summarize(users: &[UserReport]) -> DirectoryUserSummary {
    let count =
        |keep: &dyn Fn(&UserReport) -> bool| users.iter().filter(|u| keep(u)).count() as u64;
    DirectoryUserSummary {
        total: users.len() as u64,
        mfa_disabled: count(&|u| u.user_mfa_authentication_settings.as_deref() == Some("Disabled")),
        mfa_enabled_without_device: count(&|u| {
            u.user_mfa_authentication_settings.as_deref() == Some("Enabled")
                && u.bound_device_count == 0
        }),
    }
}

/// The directory's summary: a fresh census when one is due, else `previous`. A failed census is
/// logged and retried at the next reconcile; it does not fail the policy, whose own setting is
/// what Ready reports.
pub async fn refresh(
    ctx: &Context,
    client: &CloudSsoClient,
    endpoint: &Endpoint,
    directory_id: &str,
    previous: Option<DirectoryUserSummary>,
) -> Option<DirectoryUserSummary> {
    let due = match (ctx.censuses.last(endpoint, directory_id), previous) {
        (Some(last), Some(_)) => last.elapsed() >= ctx.settings.resync_interval.mul_f64(0.9),
        _ => true,
    };
    if !due {
        return previous;
    }
    match audit::collect_users(client, directory_id).await {
        Ok(users) => {
            let summary = summarize(&users);
            ctx.censuses.record(endpoint, directory_id);
            ctx.metrics.set_compliance(
                directory_id,
                DirectoryCompliance {
                    users: summary.total,
                    mfa_disabled: summary.mfa_disabled,
                    mfa_enabled_without_device: summary.mfa_enabled_without_device,
                },
            );
            Some(summary)
        }
        Err(error) => {
            tracing::warn!(directory = directory_id, %error, "census of the directory's users failed; the compliance gauges keep their last values");
            previous
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(setting: Option<&str>, devices: usize) -> UserReport {
        UserReport {
            user_name: "u".into(),
            user_id: "u-1".into(),
            user_mfa_authentication_settings: setting.map(String::from),
            bound_device_count: devices,
            devices: Vec::new(),
        }
    }

    #[test]
    fn counts_disabled_and_enabled_without_device() {
        let users = [
            user(Some("Enabled"), 1),
            user(Some("Enabled"), 0),
            user(Some("Disabled"), 0),
            user(Some("Disabled"), 2),
            user(None, 0),
        ];
        assert_eq!(
            summarize(&users),
            DirectoryUserSummary {
                total: 5,
                mfa_disabled: 2,
                mfa_enabled_without_device: 1,
            }
        );
    }
}
