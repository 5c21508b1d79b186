//! The one view of each directory's users that the UserMfaSetting reconciles and the census share:
//! a user's setting and devices are read from the cloud at most once per freshness window,
//! whoever asks first (a reconcile that finds a fresh enough entry uses it; a write, or a spec
//! change, asks for a fresh read). And the resolution of user names: one ListUsers call per name
//! while few are pending, the directory's listing (100 users a page) when many are, and never a
//! call for a name already resolved.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, oneshot};

use crate::cloud::cloudsso::{MAX_PAGE_SIZE, MfaDevice, User};
use crate::cloud::{CloudError, CloudSsoClient, Endpoint};

/// (endpoint URL, directory id, user id)
type UserKey = (String, String, String);
/// (endpoint URL, directory id)
type DirectoryKey = (String, String);

/// A value and when the cloud said it.
#[derive(Debug, Clone)]
struct Read<T> {
    value: T,
    at: Instant,
}

impl<T: Clone> Read<T> {
    fn fresh(&self, max_age: Option<Duration>) -> Option<T> {
        max_age
            .filter(|max_age| self.at.elapsed() < *max_age)
            .map(|_| self.value.clone())
    }
}

#[derive(Debug, Default)]
struct Entry {
    setting: Option<Read<Option<String>>>,
    devices: Option<Read<Vec<MfaDevice>>>,
}

fn user_key(endpoint: &Endpoint, directory_id: &str, user_id: &str) -> UserKey {
    (endpoint.url(), directory_id.into(), user_id.into())
}

/// Every user the operator has read, with when.
#[derive(Default)]
pub struct UserView {
    entries: Mutex<HashMap<UserKey, Entry>>,
}

impl UserView {
    fn with<R>(&self, key: &UserKey, use_entry: impl FnOnce(&mut Entry) -> R) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        use_entry(entries.entry(key.clone()).or_default())
    }

    /// One field of a user's entry: kept when younger than `max_age` (None: always read), else
    /// read with `read` and kept.
    async fn read_through<T: Clone>(
        &self,
        key: UserKey,
        field: fn(&mut Entry) -> &mut Option<Read<T>>,
        max_age: Option<Duration>,
        read: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        if let Some(known) = self.with(&key, |entry| field(entry).as_ref()?.fresh(max_age)) {
            return Ok(known);
        }
        let value = read.await?;
        self.with(&key, |entry| {
            *field(entry) = Some(Read {
                value: value.clone(),
                at: Instant::now(),
            })
        });
        Ok(value)
    }

    /// The user's own MFA setting, read from the cloud unless the view has one younger than
    /// `max_age` (None: always read).
    pub async fn setting(
        &self,
        client: &CloudSsoClient,
        endpoint: &Endpoint,
        directory_id: &str,
        user_id: &str,
        max_age: Option<Duration>,
    ) -> Result<Option<String>, CloudError> {
        let key = user_key(endpoint, directory_id, user_id);
        let read = client.get_user_mfa_setting(directory_id, user_id);
        self.read_through(key, |entry| &mut entry.setting, max_age, read)
            .await
    }

    /// The user's devices, read unless the view has a list younger than `max_age`.
    pub async fn devices(
        &self,
        client: &CloudSsoClient,
        endpoint: &Endpoint,
        directory_id: &str,
        user_id: &str,
        max_age: Option<Duration>,
    ) -> Result<Vec<MfaDevice>, CloudError> {
        let key = user_key(endpoint, directory_id, user_id);
        let read = client.list_mfa_devices(directory_id, user_id);
        self.read_through(key, |entry| &mut entry.devices, max_age, read)
            .await
    }

    /// What the cloud has now (just written and acknowledged).
    pub fn record_setting(
        &self,
        endpoint: &Endpoint,
        directory_id: &str,
        user_id: &str,
        setting: Option<String>,
    ) {
        let key = user_key(endpoint, directory_id, user_id);
        self.with(&key, |entry| {
            entry.setting = Some(Read {
                value: setting,
                at: Instant::now(),
            })
        });
    }

    /// The user is gone from the cloud: nothing about it is fresh any more.
    pub fn forget(&self, endpoint: &Endpoint, directory_id: &str, user_id: &str) {
        let key = user_key(endpoint, directory_id, user_id);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
}

/// A user found by name: exact first, else the only case-insensitive match (the API's filter is
/// case-insensitive; names are unique).
fn pick<'a>(users: impl IntoIterator<Item = &'a User>, name: &str) -> Option<&'a User> {
    let mut folded = None;
    for user in users {
        if user.user_name == name {
            return Some(user);
        }
        if folded.is_none() && user.user_name.eq_ignore_ascii_case(name) {
            folded = Some(user);
        }
    }
    folded
}

/// How a batch of names is best resolved: one filtered call per name, or the listing.
pub fn by_listing(pending_names: usize, pages_left: u64) -> bool {
    pending_names as u64 > pages_left
}

/// How long a name the directory did not have is taken as still missing.
const MISSING_FOR: Duration = Duration::from_secs(30);

/// The id found (or None: no such user); Err when the resolution failed (each waiter then asks
/// on its own, so its error is its own).
type Answer = Result<Option<String>, ()>;

#[derive(Default)]
struct Pending {
    waiters: HashMap<String, Vec<oneshot::Sender<Answer>>>,
}

/// Resolves user names to ids, one directory at a time.
#[derive(Default)]
pub struct NameResolver {
    /// (endpoint, directory, name) -> id, for every name resolved (and only those asked for).
    resolved: Mutex<HashMap<(String, String, String), String>>,
    /// Names the directory did not have, and when that was found: not asked again (nor listed
    /// for) within `MISSING_FOR`, so a few misspelt names cannot make every reconcile page the
    /// whole directory.
    missing: Mutex<HashMap<(String, String, String), Instant>>,
    pending: Mutex<HashMap<DirectoryKey, Pending>>,
    /// One resolution at a time per directory; the others wait and then find their answers.
    running: Mutex<HashMap<DirectoryKey, Arc<AsyncMutex<()>>>>,
}

impl NameResolver {
    fn resolved_key(
        endpoint: &Endpoint,
        directory_id: &str,
        name: &str,
    ) -> (String, String, String) {
        (endpoint.url(), directory_id.into(), name.into())
    }

    /// A name already resolved (no call).
    pub fn known(&self, endpoint: &Endpoint, directory_id: &str, name: &str) -> Option<String> {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Self::resolved_key(endpoint, directory_id, name))
            .cloned()
    }

    /// Remembers a resolution found elsewhere (a status written by an earlier process).
    pub fn remember(&self, endpoint: &Endpoint, directory_id: &str, name: &str, user_id: &str) {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                Self::resolved_key(endpoint, directory_id, name),
                user_id.into(),
            );
    }

    /// Whether the directory was found without `name` a moment ago.
    fn missing(&self, key: &(String, String, String)) -> bool {
        self.missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .is_some_and(|at| at.elapsed() < MISSING_FOR)
    }

    /// Drops a resolution (the id no longer exists); whether there was one.
    pub fn forget(&self, endpoint: &Endpoint, directory_id: &str, name: &str) -> bool {
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Self::resolved_key(endpoint, directory_id, name))
            .is_some()
    }

    /// The id of `name`, or None when the directory has no such user. `wanted` lists every name
    /// of the directory that resources ask for and that is not resolved yet: when there are more
    /// of them than pages left in the listing, the listing resolves them all at once.
    pub async fn resolve(
        &self,
        client: &CloudSsoClient,
        endpoint: &Endpoint,
        directory_id: &str,
        name: &str,
        wanted: impl Fn() -> HashSet<String>,
    ) -> Result<Option<String>, CloudError> {
        if let Some(id) = self.known(endpoint, directory_id, name) {
            return Ok(Some(id));
        }
        if self.missing(&Self::resolved_key(endpoint, directory_id, name)) {
            return Ok(None);
        }
        let directory: DirectoryKey = (endpoint.url(), directory_id.into());
        let (sender, receiver) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(directory.clone())
            .or_default()
            .waiters
            .entry(name.to_string())
            .or_default()
            .push(sender);
        let gate = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(directory.clone())
            .or_default()
            .clone();
        let mut failed = None;
        // Until this caller's name is answered: a batch that began before it asked does not look
        // for it, so the next holder of the gate runs another.
        loop {
            let _one_at_a_time = gate.lock().await;
            // A resolution that ran while this one waited may have answered it already.
            let waiting: Vec<String> = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&directory)
                .map(|pending| pending.waiters.keys().cloned().collect())
                .unwrap_or_default();
            if !waiting.is_empty() {
                let mut names: HashSet<String> = wanted();
                names.extend(waiting);
                names.retain(|name| {
                    self.known(endpoint, directory_id, name).is_none()
                        && !self.missing(&Self::resolved_key(endpoint, directory_id, name))
                });
                let outcome = self.run(client, endpoint, directory_id, &names).await;
                if outcome.is_ok() {
                    let now = Instant::now();
                    let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
                    missing.retain(|_, at| at.elapsed() < MISSING_FOR);
                    for name in &names {
                        if self.known(endpoint, directory_id, name).is_none() {
                            missing.insert(Self::resolved_key(endpoint, directory_id, name), now);
                        }
                    }
                }
                self.answer(&directory, endpoint, directory_id, &names, outcome.is_ok());
                failed = outcome.err();
            }
            if failed.is_some() || !self.waiting_for(&directory, name) {
                break;
            }
        }
        if let Some(error) = failed {
            return Err(error);
        }
        match receiver.await {
            Ok(Ok(answer)) => Ok(answer),
            // The batch failed: this name is asked on its own, so its error is its own.
            _ => {
                let found = client.find_user_by_name(directory_id, name).await?;
                if let Some(user) = &found {
                    self.remember(endpoint, directory_id, name, &user.user_id);
                }
                Ok(found.map(|user| user.user_id))
            }
        }
    }

    /// Whether `name` still waits for an answer in `directory`.
    fn waiting_for(&self, directory: &DirectoryKey, name: &str) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(directory)
            .is_some_and(|pending| pending.waiters.contains_key(name))
    }

    /// Sends the waiters of `directory` whose names this batch (`names`) looked for their answer
    /// (resolved ids are in `resolved` by now); a name asked for meanwhile waits for the next
    /// batch, whoever runs it.
    fn answer(
        &self,
        directory: &DirectoryKey,
        endpoint: &Endpoint,
        directory_id: &str,
        names: &HashSet<String>,
        succeeded: bool,
    ) {
        let waiters: Vec<(String, Vec<oneshot::Sender<Answer>>)> = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let Some(directory_pending) = pending.get_mut(directory) else {
                return;
            };
            let answered: Vec<String> = directory_pending
                .waiters
                .keys()
                .filter(|name| {
                    names.contains(*name)
                        || self.known(endpoint, directory_id, name).is_some()
                        || self.missing(&Self::resolved_key(endpoint, directory_id, name))
                })
                .cloned()
                .collect();
            let taken = answered
                .into_iter()
                .filter_map(|name| directory_pending.waiters.remove_entry(&name))
                .collect();
            if directory_pending.waiters.is_empty() {
                pending.remove(directory);
            }
            taken
        };
        for (name, senders) in waiters {
            let answer = if succeeded {
                Ok(self.known(endpoint, directory_id, &name))
            } else {
                Err(())
            };
            for sender in senders {
                let _ = sender.send(answer.clone());
            }
        }
    }

    /// Resolves `names`: filtered calls while they are fewer than the pages of the listing left,
    /// else the listing, page by page, switching to filtered calls for the rest once cheaper.
    async fn run(
        &self,
        client: &CloudSsoClient,
        endpoint: &Endpoint,
        directory_id: &str,
        names: &HashSet<String>,
    ) -> Result<(), CloudError> {
        let mut left: HashSet<String> = names.clone();
        let mut next_token: Option<String> = None;
        // Unknown until the first page says TotalCounts: one page is the cheapest first guess.
        let mut pages_left = 1u64;
        let mut seen = 0u64;
        let mut folded: Vec<User> = Vec::new();
        let mut pages = crate::cloud::cloudsso::Pages::new("ListUsers");
        while !left.is_empty()
            && by_listing(left.len(), pages_left)
            && pages.more(next_token.as_deref())?
        {
            let page = client
                .list_users_page(directory_id, None, MAX_PAGE_SIZE, next_token.as_deref())
                .await?;
            seen += page.users.len() as u64;
            let next = page
                .next_token
                .filter(|t| page.is_truncated && !t.is_empty());
            for user in page.users {
                if left.remove(&user.user_name) {
                    self.remember(endpoint, directory_id, &user.user_name, &user.user_id);
                } else if left
                    .iter()
                    .any(|name| name.eq_ignore_ascii_case(&user.user_name))
                {
                    // Stands for a name only if no page has it exactly.
                    folded.push(user);
                }
            }
            next_token = next;
            if next_token.is_none() {
                // The whole directory was listed: what is left is missing, or differs in case.
                for name in left {
                    if let Some(user) = pick(&folded, &name) {
                        self.remember(endpoint, directory_id, &name, &user.user_id);
                    }
                }
                return Ok(());
            }
            pages_left = page
                .total_counts
                .map(|total| {
                    total
                        .saturating_sub(seen)
                        .div_ceil(u64::from(MAX_PAGE_SIZE))
                })
                .unwrap_or(u64::MAX);
        }
        for name in left {
            if let Some(user) = client.find_user_by_name(directory_id, &name).await? {
                self.remember(endpoint, directory_id, &name, &user.user_id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: &str) -> User {
        User {
            user_id: id.into(),
            user_name: name.into(),
            ..User::default()
        }
    }

    #[test]
    fn names_match_exactly_first_then_without_case() {
        let users = [
            user("u-1", "Alice"),
            user("u-2", "alice"),
            user("u-3", "BOB"),
        ];
        assert_eq!(
            pick(&users, "alice").map(|u| u.user_id.as_str()),
            Some("u-2")
        );
        assert_eq!(pick(&users, "bob").map(|u| u.user_id.as_str()), Some("u-3"));
        assert_eq!(pick(&users, "carol"), None);
    }

    #[test]
    fn the_listing_is_used_only_when_cheaper_than_one_call_per_name() {
        // 5,000 names in a directory of 20,000 users: 200 pages beat 5,000 filtered calls.
        assert!(by_listing(5000, 200));
        // 3 names in the same directory: 3 filtered calls.
        assert!(!by_listing(3, 200));
        // Before the first page the size is unknown: one name, one filtered call.
        assert!(!by_listing(1, 1));
        assert!(by_listing(2, 1));
    }
}
