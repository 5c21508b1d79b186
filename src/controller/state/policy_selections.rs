//! Which users each UserMfaPolicy selected at its last pass in this process, so that policies
//! over the same directory (same account and endpoint) agree who owns a user: the oldest Enforce
//! policy that selects it (then namespace/name decide, as for every other claim). Users are kept
//! as 64-bit hashes of their ids: 100,000 users cost 1.6 MB, not the 5 MB their ids would, and a
//! collision only makes one policy yield one user it could have owned.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use super::claims::Claim;
use crate::controller::keys::fingerprint;

/// One policy's last selection.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The object's uid: a re-created policy is another owner.
    pub uid: Option<String>,
    /// The directory it reached (account, endpoint, directory; no user).
    pub claim: Claim,
    /// Ordering among owners: creation time, then namespace/name (`key`).
    pub created: Option<jiff::Timestamp>,
    /// Whether it owns what it selects (Enforce); an Observe policy owns nothing.
    pub enforces: bool,
    /// The users it selected, by `user_hash`.
    pub users: Arc<HashSet<u64>>,
}

/// How a selection keeps a user id.
pub fn user_hash(user_id: &str) -> u64 {
    fingerprint(user_id)
}

/// Every policy's last selection, by `namespace/name`.
#[derive(Default)]
pub struct PolicySelections(Mutex<HashMap<String, Selection>>);

/// The policies older than `me` that own users of `claim`, oldest first.
pub struct Owners(Vec<(String, Selection)>);

impl Owners {
    /// The older Enforce policy that owns `user_id`, if one selects it.
    pub fn owner_of(&self, user_id: &str) -> Option<&str> {
        let hash = user_hash(user_id);
        self.0
            .iter()
            .find(|(_, selection)| selection.users.contains(&hash))
            .map(|(key, _)| key.as_str())
    }
}

/// `a` is older than `b` (owners first): creation time, then `namespace/name`.
pub fn older(a: (Option<jiff::Timestamp>, &str), b: (Option<jiff::Timestamp>, &str)) -> bool {
    a < b
}

impl PolicySelections {
    /// Records `key`'s selection; true when the users it selects changed (younger policies of
    /// the directory then re-evaluate what they own).
    pub fn publish(&self, key: &str, selection: Selection) -> bool {
        let mut selections = self.0.lock();
        let changed = selections.get(key).is_none_or(|before| {
            before.uid != selection.uid
                || before.claim != selection.claim
                || before.enforces != selection.enforces
                || before.users != selection.users
        });
        selections.insert(key.to_string(), selection);
        changed
    }

    /// Whether `key` (with this uid) published a selection in this process.
    pub fn published(&self, key: &str, uid: Option<&str>) -> bool {
        self.0
            .lock()
            .get(key)
            .is_some_and(|selection| selection.uid.as_deref() == uid)
    }

    /// The policy is gone: it owns nothing any more.
    pub fn forget(&self, key: &str) {
        self.0.lock().remove(key);
    }

    /// The Enforce policies older than `me` (`key`, created at `created`) whose selections reach
    /// the same directory of the same account and endpoint.
    pub fn older_owners(
        &self,
        key: &str,
        created: Option<jiff::Timestamp>,
        claim: &Claim,
    ) -> Owners {
        let selections = self.0.lock();
        let mut owners: Vec<(String, Selection)> = selections
            .iter()
            .filter(|(other, selection)| {
                other.as_str() != key
                    && selection.enforces
                    && selection.claim == *claim
                    && older((selection.created, other), (created, key))
            })
            .map(|(other, selection)| (other.clone(), selection.clone()))
            .collect();
        owners.sort_by(|a, b| (a.1.created, &a.0).cmp(&(b.1.created, &b.0)));
        Owners(owners)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(endpoint: &str) -> Claim {
        Claim {
            account_id: "1".into(),
            endpoint: endpoint.into(),
            directory_id: "d-1".into(),
            user_id: None,
        }
    }

    fn selection(created: &str, enforces: bool, users: &[&str], endpoint: &str) -> Selection {
        Selection {
            uid: Some(created.into()),
            claim: claim(endpoint),
            created: Some(created.parse().unwrap()),
            enforces,
            users: Arc::new(users.iter().map(|u| user_hash(u)).collect()),
        }
    }

    #[test]
    fn the_oldest_enforce_policy_at_the_same_endpoint_owns_a_user() {
        let selections = PolicySelections::default();
        let real = "https://cloudsso/";
        let t = |s: &str| Some(s.parse::<jiff::Timestamp>().unwrap());
        assert!(selections.publish(
            "a/old",
            selection("2026-01-01T00:00:00Z", true, &["u-1", "u-2"], real)
        ));
        assert!(!selections.publish(
            "a/old",
            selection("2026-01-01T00:00:00Z", true, &["u-2", "u-1"], real)
        ));
        selections.publish(
            "b/observer",
            selection("2025-01-01T00:00:00Z", false, &["u-3"], real),
        );
        selections.publish(
            "c/elsewhere",
            selection(
                "2025-01-01T00:00:00Z",
                true,
                &["u-4"],
                "http://127.0.0.1:9/",
            ),
        );
        let owners = selections.older_owners("d/young", t("2026-02-01T00:00:00Z"), &claim(real));
        assert_eq!(owners.owner_of("u-1"), Some("a/old"));
        assert_eq!(
            owners.owner_of("u-3"),
            None,
            "an Observe policy owns nothing"
        );
        assert_eq!(
            owners.owner_of("u-4"),
            None,
            "another endpoint claims nothing"
        );
        let owners = selections.older_owners("a/old", t("2026-01-01T00:00:00Z"), &claim(real));
        assert_eq!(
            owners.owner_of("u-1"),
            None,
            "a policy never yields to itself"
        );
        selections.forget("a/old");
        assert!(!selections.published("a/old", Some("2026-01-01T00:00:00Z")));
    }
}
