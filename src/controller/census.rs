//! The census of a directory's users that feeds the compliance gauges and
//! `DirectoryMfaPolicy.status.users`. Only a DirectoryMfaPolicy with `spec.census.enabled` asks
//! for it; it is taken at most once per census interval per directory (it costs ListUsers pages
//! plus up to 2 × users calls, minutes for a large directory under the rate limit), in the
//! background, so no reconcile waits for it. It reads users through the shared `UserView`, so a
//! user that a UserMfaSetting read within the interval costs nothing more, and after the first
//! census its reads are spread evenly over the interval instead of arriving in one burst. In
//! between, each UserMfaSetting's own observation of its user updates the census at no cost, so a
//! change the operator makes shows at once. A directory's gauges go with its last census owner.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use super::keys::DirectoryKey;
use super::state::UserView;
use crate::api::DirectoryUserSummary;
use crate::cloud::cloudsso::User;
use crate::cloud::{CloudError, CloudSsoClient};
use crate::telemetry::{DirectoryCompliance, Metrics};

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
    /// How many users the last listing found: known long before a large census completes, so
    /// the budget can count the census from its first minute.
    listed: Option<u64>,
}

pub struct Census {
    directories: Arc<Mutex<HashMap<DirectoryKey, Directory>>>,
    metrics: Arc<Metrics>,
    view: Arc<UserView>,
}

/// Users read at once by a census; the client's rate limit still applies.
const CONCURRENT_USERS: usize = 8;

/// How long a census, or a user read, stays fresh: a little less than the interval, so that the
/// next interval finds it due.
pub fn fresh_for(every: Duration) -> Duration {
    every.mul_f64(0.9)
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

fn publish(metrics: &Metrics, key: &DirectoryKey, taken: &Taken) {
    let summary = summarize(taken.users.values());
    metrics.set_compliance(
        &key.endpoint,
        &key.directory_id,
        DirectoryCompliance {
            users: summary.total,
            mfa_disabled: summary.mfa_disabled,
            mfa_enabled_without_device: summary.mfa_enabled_without_device,
        },
    );
}

/// What one census run needs.
struct Run {
    client: CloudSsoClient,
    directory: DirectoryKey,
    view: Arc<UserView>,
    /// The census interval: reads younger than most of it are reused.
    every: Duration,
    /// Whether to spread the reads over the interval (every census after the first).
    paced: bool,
    /// Told the directory's size as soon as the listing is done.
    listed: Box<dyn Fn(u64) + Send + Sync>,
}

impl Run {
    /// Every user of the directory with its setting and device count, through the view.
    async fn read(&self) -> Result<HashMap<String, UserState>, CloudError> {
        use futures::{StreamExt, TryStreamExt};
        let directory_id = self.directory.directory_id.as_str();
        let users = self.client.list_all_users(directory_id, None).await?;
        (self.listed)(users.len() as u64);
        let fresh = Some(fresh_for(self.every));
        // Spread evenly over most of the interval, leaving the rest for stragglers and retries.
        let spacing = self
            .every
            .mul_f64(0.8)
            .checked_div(users.len().max(1) as u32)
            .filter(|_| self.paced)
            .unwrap_or(Duration::ZERO);
        let mut ticker = tokio::time::interval(spacing.max(Duration::from_micros(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let paced = futures::stream::unfold(
            (users.into_iter(), ticker),
            move |(mut users, mut ticker)| async move {
                let user: User = users.next()?;
                if !spacing.is_zero() {
                    ticker.tick().await;
                }
                Some((user, (users, ticker)))
            },
        );
        paced
            .map(|user| async move {
                let key = self.directory.user(&user.user_id);
                let read = tokio::try_join!(
                    self.view.settings(&self.client, &key, fresh),
                    self.view.device_summary(&self.client, &key, fresh),
                );
                let (settings, devices) = match read {
                    Ok(read) => read,
                    // Deleted since the listing: no longer a user of the directory.
                    Err(error) if error.is_entity_gone() => return Ok(None),
                    Err(error) => return Err(error),
                };
                let state = UserState {
                    setting: settings.user_mfa_authentication_settings,
                    devices: usize::from(devices.count),
                };
                Ok::<_, CloudError>(Some((user.user_id, state)))
            })
            .buffer_unordered(CONCURRENT_USERS)
            .try_filter_map(|read| futures::future::ready(Ok(read)))
            .try_collect()
            .await
    }
}

/// Takes one directory's census and records it (the background half of `Census::refresh`).
async fn take(
    run: Run,
    directories: Arc<Mutex<HashMap<DirectoryKey, Directory>>>,
    metrics: Arc<Metrics>,
    key: DirectoryKey,
) {
    // Dated from its start, so the next census is due one interval after this one began, not
    // one interval after its spread-out reads ended.
    let started = Instant::now();
    let result = run.read().await;
    let mut directories = directories.lock();
    // Nobody counts the directory any more: its gauges are gone and stay gone.
    let Some(directory) = directories.get_mut(&key) else {
        return;
    };
    directory.in_flight = false;
    let mut users = match result {
        Ok(users) => users,
        Err(error) => {
            // Kept for a later census they would be older than its reads.
            directory.observed_meanwhile.clear();
            tracing::warn!(directory = %key.directory_id, %error, "census of the directory's users failed; the compliance gauges keep their last values and it is retried at the next reconcile");
            return;
        }
    };
    for (user_id, state) in directory.observed_meanwhile.drain() {
        if let Some(known) = users.get_mut(&user_id) {
            *known = state;
        }
    }
    let taken = Taken { at: started, users };
    let changed = directory
        .taken
        .as_ref()
        .map(|t| summarize(t.users.values()))
        != Some(summarize(taken.users.values()));
    publish(&metrics, &key, &taken);
    directory.taken = Some(taken);
    let on_change = directory.on_change.clone().filter(|_| changed);
    drop(directories);
    if let Some(on_change) = on_change {
        on_change();
    }
}

impl Census {
    pub fn new(metrics: Arc<Metrics>, view: Arc<UserView>) -> Self {
        Self {
            directories: Arc::default(),
            metrics,
            view,
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<DirectoryKey, Directory>> {
        self.directories.lock()
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
            self.metrics
                .forget_directory(&key.endpoint, &key.directory_id);
        }
    }

    /// The directory's last summary (None before the first census completes). Starts a census
    /// in the background when one is due (`every`: the census interval). `on_change`, when given, is kept and called whenever
    /// the summary changes (a census completed, or a user was observed to have changed).
    pub fn refresh(
        &self,
        client: &CloudSsoClient,
        key: &DirectoryKey,
        resource: &str,
        on_change: Option<OnChange>,
        every: Duration,
    ) -> Option<DirectoryUserSummary> {
        let key = key.clone();
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
            .is_none_or(|taken| taken.at.elapsed() >= fresh_for(every));
        if due && !directory.in_flight {
            directory.in_flight = true;
            let run = Run {
                client: client.clone(),
                directory: key.clone(),
                view: self.view.clone(),
                every,
                paced: directory.taken.is_some(),
                listed: self.on_listed(key.clone()),
            };
            let (directories, metrics) = (self.directories.clone(), self.metrics.clone());
            tokio::spawn(take(run, directories, metrics, key));
        }
        summary
    }

    /// A fresher observation of one user (its UserMfaSetting just read it) replaces what the
    /// census has, and the gauges follow at once.
    pub fn observe_user(&self, key: &DirectoryKey, user_id: &str, state: UserState) {
        let mut directories = self.lock();
        let Some(directory) = directories.get_mut(key) else {
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
        publish(&self.metrics, key, taken);
        let on_change = directory.on_change.clone();
        drop(directories);
        if let Some(on_change) = on_change {
            on_change();
        }
    }

    /// Records a listing's size; the owner hears of a new one (its budget counts it).
    fn on_listed(&self, key: DirectoryKey) -> Box<dyn Fn(u64) + Send + Sync> {
        let directories = self.directories.clone();
        Box::new(move |users| {
            let mut directories = directories.lock();
            let Some(directory) = directories.get_mut(&key) else {
                return;
            };
            let known = directory.listed.replace(users);
            let on_change = directory.on_change.clone().filter(|_| known != Some(users));
            drop(directories);
            if let Some(on_change) = on_change {
                on_change();
            }
        })
    }

    /// How many users the directory has, as its last listing found.
    pub fn size(&self, key: &DirectoryKey) -> Option<u64> {
        self.lock().get(key)?.listed
    }

    /// Whether `resource` counts a directory in this process (its census runs here).
    pub fn counts(&self, resource: &str) -> bool {
        self.lock()
            .values()
            .any(|directory| directory.counted_by.contains(resource))
    }

    /// `resource` was deleted (or no longer asks for the census): it no longer counts its
    /// directory.
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
