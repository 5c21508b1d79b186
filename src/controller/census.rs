//! The census of a directory's users that feeds the compliance gauges and
//! `DirectoryMfaPolicy.status.users`. Every DirectoryMfaPolicy that owns a directory and every
//! UserMfaSetting in it asks for the census; it is taken at most once per resync interval per
//! directory (it costs 1 + 2 × users API calls, minutes for a large directory under the rate
//! limit), in the background, so no reconcile waits for it. In between, each UserMfaSetting's
//! own fresh observation of its user updates the census at no cost, so a change the operator
//! makes shows at once. A directory's gauges go when the last resource that counts it is deleted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::keys::key_of;
use crate::api::DirectoryUserSummary;
use crate::cloud::cloudsso::UserMfa;
use crate::cloud::{CloudSsoClient, Endpoint};
use crate::telemetry::{DirectoryCompliance, Metrics};

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

/// Called when a directory's summary changed (the owning policy shows it in its status).
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Directory {
    taken: Option<Taken>,
    in_flight: bool,
    /// The resources (kind/namespace/name) that count this directory.
    counted_by: HashSet<String>,
    on_change: Option<OnChange>,
    /// Users observed while a census was in flight (or before the first one): applied over its
    /// result, which may have read them before the change.
    observed_meanwhile: HashMap<String, UserState>,
}

pub struct Census {
    directories: Arc<Mutex<HashMap<DirectoryKey, Directory>>>,
    metrics: Arc<Metrics>,
    /// How long a census stays fresh (the resync interval, a little less so that resyncs find
    /// it due).
    fresh_for: Duration,
}

/// How a resource is known to the census: `Kind/namespace/name`.
pub fn counter_key<K: kube::Resource<DynamicType = ()>>(resource: &K) -> String {
    format!("{}/{}", K::kind(&()), key_of(resource))
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

fn state_of(read: &UserMfa) -> UserState {
    UserState {
        setting: read.setting.clone(),
        devices: read.devices.len(),
    }
}

fn publish(metrics: &Metrics, directory_id: &str, taken: &Taken) {
    let summary = summarize(taken.users.values());
    metrics.set_compliance(
        directory_id,
        DirectoryCompliance {
            users: summary.total,
            mfa_disabled: summary.mfa_disabled,
            mfa_enabled_without_device: summary.mfa_enabled_without_device,
        },
    );
}

/// Takes one directory's census and records it (the background half of `Census::refresh`).
async fn take(
    client: CloudSsoClient,
    directories: Arc<Mutex<HashMap<DirectoryKey, Directory>>>,
    metrics: Arc<Metrics>,
    key: DirectoryKey,
) {
    let result = client.list_users_with_mfa(&key.1).await;
    let mut directories = directories.lock().unwrap_or_else(|p| p.into_inner());
    // Nobody counts the directory any more: its gauges are gone and stay gone.
    let Some(directory) = directories.get_mut(&key) else {
        return;
    };
    directory.in_flight = false;
    let users = match result {
        Ok(users) => users,
        Err(error) => {
            tracing::warn!(directory = %key.1, %error, "census of the directory's users failed; the compliance gauges keep their last values and it is retried at the next reconcile");
            return;
        }
    };
    let mut users: HashMap<String, UserState> = users
        .iter()
        .map(|read| (read.user.user_id.clone(), state_of(read)))
        .collect();
    for (user_id, state) in directory.observed_meanwhile.drain() {
        if let Some(known) = users.get_mut(&user_id) {
            *known = state;
        }
    }
    let taken = Taken {
        at: Instant::now(),
        users,
    };
    let changed = directory
        .taken
        .as_ref()
        .map(|t| summarize(t.users.values()))
        != Some(summarize(taken.users.values()));
    publish(&metrics, &key.1, &taken);
    directory.taken = Some(taken);
    let on_change = directory.on_change.clone().filter(|_| changed);
    drop(directories);
    if let Some(on_change) = on_change {
        on_change();
    }
}

impl Census {
    pub fn new(metrics: Arc<Metrics>, resync_interval: Duration) -> Self {
        Self {
            directories: Arc::default(),
            metrics,
            fresh_for: resync_interval.mul_f64(0.9),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DirectoryKey, Directory>> {
        self.directories.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes `resource` from the directories it counted; a directory nobody counts goes.
    fn uncount(
        &self,
        directories: &mut HashMap<DirectoryKey, Directory>,
        resource: &str,
        keep: Option<&DirectoryKey>,
    ) {
        let emptied: Vec<DirectoryKey> = directories
            .iter_mut()
            .filter(|(key, _)| Some(*key) != keep)
            .filter_map(|(key, directory)| {
                (directory.counted_by.remove(resource) && directory.counted_by.is_empty())
                    .then(|| key.clone())
            })
            .collect();
        for key in emptied {
            directories.remove(&key);
            self.metrics.forget_directory(&key.1);
        }
    }

    /// The directory's last summary (None before the first census completes). Starts a census
    /// in the background when one is due. `on_change`, when given, is kept and called whenever
    /// the summary changes (a census completed, or a user was observed to have changed).
    pub fn refresh(
        &self,
        client: &CloudSsoClient,
        endpoint: &Endpoint,
        directory_id: &str,
        resource: &str,
        on_change: Option<OnChange>,
    ) -> Option<DirectoryUserSummary> {
        let key = key(endpoint, directory_id);
        let mut directories = self.lock();
        // An endpoint that changed moves the resource to the new directory key.
        self.uncount(&mut directories, resource, Some(&key));
        let directory = directories.entry(key.clone()).or_default();
        directory.counted_by.insert(resource.to_string());
        if on_change.is_some() {
            directory.on_change = on_change;
        }
        let summary = directory
            .taken
            .as_ref()
            .map(|taken| summarize(taken.users.values()));
        let due = directory
            .taken
            .as_ref()
            .is_none_or(|taken| taken.at.elapsed() >= self.fresh_for);
        if due && !directory.in_flight {
            directory.in_flight = true;
            let (client, directories, metrics) = (
                client.clone(),
                self.directories.clone(),
                self.metrics.clone(),
            );
            tokio::spawn(take(client, directories, metrics, key));
        }
        summary
    }

    /// A fresher observation of one user (its UserMfaSetting just read it) replaces what the
    /// census has, and the gauges follow at once.
    pub fn observe_user(
        &self,
        endpoint: &Endpoint,
        directory_id: &str,
        user_id: &str,
        state: UserState,
    ) {
        let mut directories = self.lock();
        let Some(directory) = directories.get_mut(&key(endpoint, directory_id)) else {
            return;
        };
        if directory.in_flight || directory.taken.is_none() {
            directory
                .observed_meanwhile
                .insert(user_id.to_string(), state.clone());
        }
        let Some(taken) = directory.taken.as_mut() else {
            return;
        };
        if taken.users.get(user_id) == Some(&state) {
            return;
        }
        taken.users.insert(user_id.to_string(), state);
        publish(&self.metrics, directory_id, taken);
        let on_change = directory.on_change.clone();
        drop(directories);
        if let Some(on_change) = on_change {
            on_change();
        }
    }

    /// `resource` was deleted: it no longer counts its directory.
    pub fn release(&self, resource: &str) {
        let mut directories = self.lock();
        self.uncount(&mut directories, resource, None);
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
