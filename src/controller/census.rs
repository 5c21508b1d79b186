//! The census of a directory's users that feeds the compliance gauges and
//! `DirectoryMfaPolicy.status.users`. Every DirectoryMfaPolicy that owns a directory and every
//! UserMfaSetting in it asks for the census; it is taken at most once per resync interval per
//! directory (it costs 1 + 2 × users API calls). In between, each UserMfaSetting's own fresh
//! observation of its user updates the census at no cost, so a change the operator makes shows
//! at once. A directory's gauges go when the last resource that counts it is deleted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::context::Context;
use crate::api::DirectoryUserSummary;
use crate::audit::{self, UserReport};
use crate::cloud::{CloudSsoClient, Endpoint};
use crate::telemetry::DirectoryCompliance;

/// (endpoint URL, directory id)
type DirectoryKey = (String, String);

/// What the census knows of one user: its MFA setting and how many devices it has bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    pub setting: Option<String>,
    pub devices: usize,
}

/// One directory's census: when it was taken, and every user by id.
struct Taken {
    at: Instant,
    users: HashMap<String, UserState>,
}

/// The last census of one directory; locked while a census is in flight so that concurrent
/// askers wait for it instead of taking another.
type LastCensus = Arc<tokio::sync::Mutex<Option<Taken>>>;

#[derive(Default)]
pub struct Census {
    taken: Mutex<HashMap<DirectoryKey, LastCensus>>,
    /// The resources (kind/namespace/name) that count each directory.
    counted_by: Mutex<HashMap<DirectoryKey, HashSet<String>>>,
}

fn key(endpoint: &Endpoint, directory_id: &str) -> DirectoryKey {
    (endpoint.url(), directory_id.to_string())
}

pub fn summarize<'a>(users: impl IntoIterator<Item = &'a UserState>) -> DirectoryUserSummary {
    let mut summary = DirectoryUserSummary::default();
    for user in users {
        summary.total += 1;
        match user.setting.as_deref() {
            Some("Disabled") => summary.mfa_disabled += 1,
            Some("Enabled") if user.devices == 0 => summary.mfa_enabled_without_device += 1,
            _ => {}
        }
    }
    summary
}

fn state_of(user: &UserReport) -> UserState {
    UserState {
        setting: user.user_mfa_authentication_settings.clone(),
        devices: user.bound_device_count,
    }
}

fn publish(ctx: &Context, directory_id: &str, summary: DirectoryUserSummary) {
    ctx.metrics.set_compliance(
        directory_id,
        DirectoryCompliance {
            users: summary.total,
            mfa_disabled: summary.mfa_disabled,
            mfa_enabled_without_device: summary.mfa_enabled_without_device,
        },
    );
}

impl Census {
    fn slot(&self, key: &DirectoryKey) -> LastCensus {
        self.taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Records that `resource` counts `key`, and only `key` (its endpoint may have changed).
    fn count_by(&self, ctx: &Context, key: &DirectoryKey, resource: &str) {
        let mut counted_by = self.counted_by.lock().unwrap_or_else(|p| p.into_inner());
        let moved: Vec<DirectoryKey> = counted_by
            .iter()
            .filter(|(other, resources)| *other != key && resources.contains(resource))
            .map(|(other, _)| other.clone())
            .collect();
        for other in moved {
            self.drop_counter(ctx, &mut counted_by, &other, resource);
        }
        counted_by
            .entry(key.clone())
            .or_default()
            .insert(resource.to_string());
    }

    fn drop_counter(
        &self,
        ctx: &Context,
        counted_by: &mut HashMap<DirectoryKey, HashSet<String>>,
        key: &DirectoryKey,
        resource: &str,
    ) {
        let Some(resources) = counted_by.get_mut(key) else {
            return;
        };
        resources.remove(resource);
        if resources.is_empty() {
            counted_by.remove(key);
            self.taken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(key);
            ctx.metrics.forget_directory(&key.1);
        }
    }

    /// The directory's summary: a fresh census when one is due, else the last one. A failed
    /// census is logged and retried at the next reconcile; it does not fail the resource, whose
    /// own setting is what Ready reports.
    pub async fn refresh(
        &self,
        ctx: &Context,
        client: &CloudSsoClient,
        endpoint: &Endpoint,
        directory_id: &str,
        resource: &str,
    ) -> Option<DirectoryUserSummary> {
        let key = key(endpoint, directory_id);
        self.count_by(ctx, &key, resource);
        let slot = self.slot(&key);
        let mut last = slot.lock().await;
        let fresh_for = ctx.settings.resync_interval.mul_f64(0.9);
        if let Some(taken) = last.as_ref()
            && taken.at.elapsed() < fresh_for
        {
            return Some(summarize(taken.users.values()));
        }
        match audit::collect_users(client, directory_id).await {
            Ok(users) => {
                let users: HashMap<String, UserState> = users
                    .iter()
                    .map(|user| (user.user_id.clone(), state_of(user)))
                    .collect();
                let summary = summarize(users.values());
                *last = Some(Taken {
                    at: Instant::now(),
                    users,
                });
                publish(ctx, directory_id, summary);
                Some(summary)
            }
            Err(error) => {
                tracing::warn!(directory = directory_id, %error, "census of the directory's users failed; the compliance gauges keep their last values");
                last.as_ref().map(|taken| summarize(taken.users.values()))
            }
        }
    }

    /// A fresher observation of one user (its UserMfaSetting just read it) replaces what the
    /// census has, and the gauges follow at once.
    pub async fn observe_user(
        &self,
        ctx: &Context,
        endpoint: &Endpoint,
        directory_id: &str,
        user_id: &str,
        state: UserState,
    ) {
        let slot = self.slot(&key(endpoint, directory_id));
        let mut last = slot.lock().await;
        if let Some(taken) = last.as_mut()
            && taken.users.get(user_id) != Some(&state)
        {
            taken.users.insert(user_id.to_string(), state);
            publish(ctx, directory_id, summarize(taken.users.values()));
        }
    }

    /// `resource` was deleted: it no longer counts its directory.
    pub fn release(&self, ctx: &Context, endpoint: &Endpoint, directory_id: &str, resource: &str) {
        let mut counted_by = self.counted_by.lock().unwrap_or_else(|p| p.into_inner());
        self.drop_counter(ctx, &mut counted_by, &key(endpoint, directory_id), resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(setting: Option<&str>, devices: usize) -> UserState {
        UserState {
            setting: setting.map(String::from),
            devices,
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
