//! The resolution of user names to ids, one directory at a time: one ListUsers call per name
//! while few are pending, the directory's listing (100 users a page) when many are, and never a
//! call for a name already resolved. Concurrent askers of one directory share one batch; a name
//! asked while a batch runs waits for the next batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Mutex as AsyncMutex, oneshot};

use crate::cloud::cloudsso::{MAX_PAGE_SIZE, User, pick_by_name};
use crate::cloud::{CloudError, CloudSsoClient};
use crate::controller::keys::DirectoryKey;

/// A name of one directory.
type NameKey = (DirectoryKey, String);

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
    /// (directory, name) -> id, for every name resolved (and only those asked for).
    resolved: Mutex<HashMap<NameKey, String>>,
    /// Names the directory did not have, and when that was found: not asked again (nor listed
    /// for) within `MISSING_FOR`, so a few misspelt names cannot make every reconcile page the
    /// whole directory.
    missing: Mutex<HashMap<NameKey, Instant>>,
    pending: Mutex<HashMap<DirectoryKey, Pending>>,
    /// One resolution at a time per directory; the others wait and then find their answers.
    running: Mutex<HashMap<DirectoryKey, Arc<AsyncMutex<()>>>>,
}

fn name_key(directory: &DirectoryKey, name: &str) -> NameKey {
    (directory.clone(), name.to_string())
}

impl NameResolver {
    /// A name already resolved (no call).
    pub fn known(&self, directory: &DirectoryKey, name: &str) -> Option<String> {
        self.resolved
            .lock()
            .get(&name_key(directory, name))
            .cloned()
    }

    /// Remembers a resolution found elsewhere (a status written by an earlier process).
    pub fn remember(&self, directory: &DirectoryKey, name: &str, user_id: &str) {
        self.resolved
            .lock()
            .insert(name_key(directory, name), user_id.into());
    }

    /// Whether the directory was found without `name` a moment ago.
    fn missing(&self, directory: &DirectoryKey, name: &str) -> bool {
        self.missing
            .lock()
            .get(&name_key(directory, name))
            .is_some_and(|at| at.elapsed() < MISSING_FOR)
    }

    /// Whether `name` has an answer already: resolved, or missing a moment ago.
    fn answered(&self, directory: &DirectoryKey, name: &str) -> bool {
        self.known(directory, name).is_some() || self.missing(directory, name)
    }

    /// Drops a resolution (the id no longer exists); whether there was one.
    pub fn forget(&self, directory: &DirectoryKey, name: &str) -> bool {
        self.resolved
            .lock()
            .remove(&name_key(directory, name))
            .is_some()
    }

    /// The id of `name`, or None when the directory has no such user. `wanted` lists every name
    /// of the directory that resources ask for and that is not resolved yet: when there are more
    /// of them than pages left in the listing, the listing resolves them all at once.
    pub async fn resolve(
        &self,
        client: &CloudSsoClient,
        directory: &DirectoryKey,
        name: &str,
        wanted: impl Fn() -> HashSet<String>,
    ) -> Result<Option<String>, CloudError> {
        if let Some(id) = self.known(directory, name) {
            return Ok(Some(id));
        }
        if self.missing(directory, name) {
            return Ok(None);
        }
        let receiver = self.wait_for_answer(directory, name);
        self.run_batches(client, directory, name, wanted).await?;
        match receiver.await {
            Ok(Ok(answer)) => Ok(answer),
            // The batch failed: this name is asked on its own, so its error is its own.
            _ => {
                let found = client
                    .find_user_by_name(&directory.directory_id, name)
                    .await?;
                if let Some(user) = &found {
                    self.remember(directory, name, &user.user_id);
                }
                Ok(found.map(|user| user.user_id))
            }
        }
    }

    /// Registers a waiter for `name`'s answer.
    fn wait_for_answer(&self, directory: &DirectoryKey, name: &str) -> oneshot::Receiver<Answer> {
        let (sender, receiver) = oneshot::channel();
        self.pending
            .lock()
            .entry(directory.clone())
            .or_default()
            .waiters
            .entry(name.to_string())
            .or_default()
            .push(sender);
        receiver
    }

    /// Runs batches, one at a time per directory, until `name` is answered: a batch that began
    /// before it asked does not look for it, so the next holder of the gate runs another.
    async fn run_batches(
        &self,
        client: &CloudSsoClient,
        directory: &DirectoryKey,
        name: &str,
        wanted: impl Fn() -> HashSet<String>,
    ) -> Result<(), CloudError> {
        let gate = self
            .running
            .lock()
            .entry(directory.clone())
            .or_default()
            .clone();
        loop {
            let _one_at_a_time = gate.lock().await;
            // A batch that ran while this one waited may have answered it already.
            let waiting: Vec<String> = self
                .pending
                .lock()
                .get(directory)
                .map(|pending| pending.waiters.keys().cloned().collect())
                .unwrap_or_default();
            if !waiting.is_empty() {
                let mut names: HashSet<String> = wanted();
                names.extend(waiting);
                names.retain(|name| !self.answered(directory, name));
                let outcome = self.run(client, directory, &names).await;
                if outcome.is_ok() {
                    self.note_missing(directory, &names);
                }
                self.answer(directory, &names, outcome.is_ok());
                outcome?;
            }
            if !self.waiting_for(directory, name) {
                return Ok(());
            }
        }
    }

    /// After a batch that succeeded: the names it did not find are missing for a while.
    fn note_missing(&self, directory: &DirectoryKey, names: &HashSet<String>) {
        let now = Instant::now();
        let mut missing = self.missing.lock();
        missing.retain(|_, at| at.elapsed() < MISSING_FOR);
        for name in names {
            if self.known(directory, name).is_none() {
                missing.insert(name_key(directory, name), now);
            }
        }
    }

    /// Whether `name` still waits for an answer in `directory`.
    fn waiting_for(&self, directory: &DirectoryKey, name: &str) -> bool {
        self.pending
            .lock()
            .get(directory)
            .is_some_and(|pending| pending.waiters.contains_key(name))
    }

    /// Sends the waiters of `directory` whose names this batch (`names`) looked for their answer
    /// (resolved ids are in `resolved` by now); a name asked for meanwhile waits for the next
    /// batch, whoever runs it.
    fn answer(&self, directory: &DirectoryKey, names: &HashSet<String>, succeeded: bool) {
        let waiters: Vec<(String, Vec<oneshot::Sender<Answer>>)> = {
            let mut pending = self.pending.lock();
            let Some(directory_pending) = pending.get_mut(directory) else {
                return;
            };
            let answered: Vec<String> = directory_pending
                .waiters
                .keys()
                .filter(|name| names.contains(*name) || self.answered(directory, name))
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
                Ok(self.known(directory, &name))
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
        directory: &DirectoryKey,
        names: &HashSet<String>,
    ) -> Result<(), CloudError> {
        let mut left: HashSet<String> = names.clone();
        let listed = self.list_for(client, directory, &mut left).await?;
        if listed {
            return Ok(());
        }
        for name in left {
            if let Some(user) = client
                .find_user_by_name(&directory.directory_id, &name)
                .await?
            {
                self.remember(directory, &name, &user.user_id);
            }
        }
        Ok(())
    }

    /// Pages through the listing while that is cheaper than a call per name in `left`,
    /// resolving what it finds; true when it listed the whole directory (`left` is then
    /// settled: missing, or found by case alone).
    async fn list_for(
        &self,
        client: &CloudSsoClient,
        directory: &DirectoryKey,
        left: &mut HashSet<String>,
    ) -> Result<bool, CloudError> {
        let mut next_token: Option<String> = None;
        // Unknown until the first page says TotalCounts: one page is the cheapest first guess.
        let (mut pages_left, mut seen) = (1u64, 0u64);
        let mut folded: Vec<User> = Vec::new();
        let mut pages = crate::cloud::cloudsso::Pages::new("ListUsers");
        while !left.is_empty()
            && by_listing(left.len(), pages_left)
            && pages.more(next_token.as_deref())?
        {
            let page = client
                .list_users_page(
                    &directory.directory_id,
                    None,
                    MAX_PAGE_SIZE,
                    next_token.as_deref(),
                )
                .await?;
            seen += page.users.len() as u64;
            next_token = page
                .next_token
                .filter(|t| page.is_truncated && !t.is_empty());
            for user in page.users {
                if left.remove(&user.user_name) {
                    self.remember(directory, &user.user_name, &user.user_id);
                } else if left
                    .iter()
                    .any(|name| name.eq_ignore_ascii_case(&user.user_name))
                {
                    // Stands for a name only if no page has it exactly.
                    folded.push(user);
                }
            }
            if next_token.is_none() {
                for name in left.drain() {
                    if let Some(user) = pick_by_name(&folded, &name) {
                        self.remember(directory, &name, &user.user_id);
                    }
                }
                return Ok(true);
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
        Ok(false)
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
        let pick = |name| pick_by_name(&users, name).map(|u| u.user_id.as_str());
        assert_eq!(pick("alice"), Some("u-2"));
        assert_eq!(pick("bob"), Some("u-3"));
        assert_eq!(pick("carol"), None);
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
