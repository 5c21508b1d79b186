//! Who owns a cloud object: two resources that name the same directory (or the same user of a
//! directory) in the same cloud account at the same endpoint, in any namespaces and whatever
//! credentials they reach it with. The older owns it (then namespace/name decide); the younger is
//! never applied and shows `Conflict` naming the owner. A resource at another endpoint or account
//! claims nothing from it, so a squatter's older resource at its own endpoint blocks nobody.
//!
//! A claim is known from the pass that made it (this process), else from the status the owner
//! last wrote (`accountId`, `endpoint`, and the resolved `userId`), so a restart keeps the owner.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use kube::{Resource, ResourceExt};

use crate::api::{CommonStatus, Reason};
use crate::controller::conditions::{self, READY};
use crate::controller::error::ReconcileError;
use crate::controller::keys::{fingerprint, key_of};
use crate::controller::wake::Waker;

/// What a resource claims in the cloud.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The account the credentials belong to (STS GetCallerIdentity).
    pub account_id: String,
    /// The endpoint URL the calls go to.
    pub endpoint: String,
    pub directory_id: String,
    /// The user, for kinds that manage one user.
    pub user_id: Option<String>,
}

impl Claim {
    /// How messages name the claimed object.
    pub fn subject(&self) -> String {
        match &self.user_id {
            Some(user_id) => format!(
                "user {user_id} of directory {} (account {} at {})",
                self.directory_id, self.account_id, self.endpoint
            ),
            None => format!(
                "directory {} (account {} at {})",
                self.directory_id, self.account_id, self.endpoint
            ),
        }
    }

    /// The claim a status records, if it records one (written by an earlier pass).
    pub fn from_status(
        common: &CommonStatus,
        directory_id: &str,
        user_id: Option<String>,
    ) -> Option<Self> {
        Some(Self {
            account_id: common.account_id.clone()?,
            endpoint: common.endpoint.clone()?,
            directory_id: directory_id.to_string(),
            user_id,
        })
    }
}

/// A kind whose resources claim cloud objects.
pub trait Claimant: Resource<DynamicType = ()> {
    /// The directory the resource names (every claim has one).
    fn directory_id(&self) -> &str;
    /// The claim its status records.
    fn recorded_claim(&self) -> Option<Claim>;
    /// A cheap first test (no allocation): false when the resource surely does not claim
    /// `claim`; every pass compares itself with every resource of its directory.
    fn may_claim(&self, _claim: &Claim) -> bool {
        true
    }
}

/// Where a claim is: what every user of a directory reached the same way shares.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Route {
    account_id: String,
    endpoint: String,
    directory_id: String,
}

/// What the registry keeps of one resource's claim: its uid (a hash: a re-created object is
/// another claimant), the route (shared), the user.
struct Kept {
    uid: u64,
    route: Arc<Route>,
    user_id: Option<Box<str>>,
}

impl Kept {
    /// Whether this is `claim` (with no copy made).
    fn is(&self, claim: &Claim) -> bool {
        self.user_id.as_deref() == claim.user_id.as_deref()
            && self.route.directory_id == claim.directory_id
            && self.route.account_id == claim.account_id
            && self.route.endpoint == claim.endpoint
    }

    fn claim(&self) -> Claim {
        Claim {
            account_id: self.route.account_id.clone(),
            endpoint: self.route.endpoint.clone(),
            directory_id: self.route.directory_id.clone(),
            user_id: self.user_id.as_deref().map(str::to_string),
        }
    }
}

#[derive(Default)]
struct Claims {
    /// By a hash of `namespace/name` (`object_hash`): every pass looks up every resource of its
    /// directory that may share its claim, and formatting each one's key cost a fifth of the
    /// operator's CPU during a bulk of 4,000.
    by_key: HashMap<u64, Kept>,
    /// Each route once, however many users claim through it (10,000 users of a directory kept
    /// 30 bytes each instead of three strings each).
    routes: HashSet<Arc<Route>>,
}

impl Claims {
    fn route(&mut self, claim: &Claim) -> Arc<Route> {
        let route = Route {
            account_id: claim.account_id.clone(),
            endpoint: claim.endpoint.clone(),
            directory_id: claim.directory_id.clone(),
        };
        if let Some(kept) = self.routes.get(&route) {
            return kept.clone();
        }
        let route = Arc::new(route);
        self.routes.insert(route.clone());
        route
    }

    /// Drops `route` from the set when only the set still holds it.
    fn release(&mut self, route: Arc<Route>) {
        if Arc::strong_count(&route) == 2 {
            self.routes.remove(&route);
        }
    }
}

fn uid_of<K: Resource>(object: &K) -> u64 {
    fingerprint(&object.meta().uid)
}

/// A hash of `object`'s namespace and name, with no string built.
fn object_hash<K: Resource>(object: &K) -> u64 {
    fingerprint(&(
        object.meta().namespace.as_deref(),
        object.meta().name.as_deref(),
    ))
}

/// Whether `a` and `b` are the same object (by namespace and name, with no string built).
fn same_object<K: Resource>(a: &K, b: &K) -> bool {
    a.meta().name == b.meta().name && a.meta().namespace == b.meta().namespace
}

/// The claims the passes of this process made, by `namespace/name` (with the uid: a re-created
/// object is another claimant). An entry goes with its object (`forget`).
#[derive(Default)]
pub struct Registry(Mutex<Claims>);

impl Registry {
    /// Records `object`'s claim; returns the one recorded before (None when it is new).
    pub fn record<K: Resource>(&self, object: &K, claim: &Claim) -> Option<Claim> {
        let mut claims = self.0.lock();
        let kept = Kept {
            uid: uid_of(object),
            route: claims.route(claim),
            user_id: claim.user_id.as_deref().map(Box::from),
        };
        let before = claims.by_key.insert(object_hash(object), kept)?;
        let claim = (before.uid == uid_of(object)).then(|| before.claim());
        claims.release(before.route);
        claim
    }

    pub fn forget<K: Resource>(&self, object: &K) {
        let mut claims = self.0.lock();
        if let Some(kept) = claims.by_key.remove(&object_hash(object)) {
            claims.release(kept.route);
        }
    }

    /// Whether `object` claims `claim` (as `claim_of` says, with no copy of this process's record).
    pub fn claims<K: Claimant>(&self, object: &K, claim: &Claim) -> bool {
        let claims = self.0.lock();
        match claims.by_key.get(&object_hash(object)) {
            Some(kept) if kept.uid == uid_of(object) => kept.is(claim),
            _ => object.recorded_claim().as_ref() == Some(claim),
        }
    }

    /// The claim of `object`: this process's record of it, else its status.
    pub fn claim_of<K: Claimant>(&self, object: &K) -> Option<Claim> {
        let claims = self.0.lock();
        match claims.by_key.get(&object_hash(object)) {
            Some(kept) if kept.uid == uid_of(object) => Some(kept.claim()),
            _ => object.recorded_claim(),
        }
    }
}

/// Owner first: the oldest, then by namespace/name.
fn by_age<K: Resource>(a: &&K, b: &&K) -> std::cmp::Ordering {
    let age = |p: &K| p.meta().creation_timestamp.as_ref().map(|t| t.0);
    age(a)
        .cmp(&age(b))
        .then_with(|| a.namespace().cmp(&b.namespace()))
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

/// The live resources (not being deleted) claiming `claim`, owner first; `me` counts with the
/// claim this pass found, whatever its status says.
pub fn claimants<'a, K: Claimant>(
    me: &'a K,
    claim: &Claim,
    known: impl IntoIterator<Item = &'a K>,
    registry: &Registry,
) -> Vec<&'a K> {
    let mut claimants: Vec<&K> = known
        .into_iter()
        .filter(|other| other.directory_id() == claim.directory_id && other.may_claim(claim))
        .filter(|other| other.meta().deletion_timestamp.is_none() && !same_object(*other, me))
        .filter(|other| registry.claims(*other, claim))
        .collect();
    claimants.push(me);
    claimants.sort_by(by_age);
    claimants
}

/// The contenders (namespace/name) when `me` owns `claim`; `Conflict` naming the owner when an
/// older resource does.
pub fn check<'a, K: Claimant>(
    me: &'a K,
    claim: &Claim,
    known: impl IntoIterator<Item = &'a K>,
    registry: &Registry,
) -> Result<Vec<String>, ReconcileError> {
    verdict(me, claim, &claimants(me, claim, known, registry))
}

/// What `claimants` (owner first) mean for `me`: its contenders when it owns, else `Conflict`.
fn verdict<K: Resource>(
    me: &K,
    claim: &Claim,
    claimants: &[&K],
) -> Result<Vec<String>, ReconcileError> {
    match claimants.first().map(|owner| key_of(*owner)) {
        Some(owner) if owner != key_of(me) => Err(ReconcileError::Conflict {
            subject: claim.subject(),
            owner,
        }),
        _ => Ok(claimants.iter().skip(1).map(|p| key_of(*p)).collect()),
    }
}

/// Checks `me`'s claim against the live store of its kind and records it. Wakes only who the
/// claim can concern: when it is new or moved, the others that claim the same object (ownership
/// may move to or from `me`) and those of the object it left; and an owner's contenders, so a
/// younger one learns of its owner at once. Never every resource of a directory: at 10,000 users
/// that would be 10,000 wakes per pass.
pub fn settle<K: Claimant + Clone>(
    me: &K,
    claim: &Claim,
    waker: &Waker<K>,
    registry: &Registry,
) -> Result<Vec<String>, ReconcileError> {
    let before = registry.record(me, claim);
    let known = waker.known();
    let objects = || known.iter().filter_map(|g| g.0.as_ref().ok());
    let sharing = claimants(me, claim, objects(), registry);
    let moved = before.as_ref() != Some(claim);
    let owns = sharing.first().is_some_and(|owner| same_object(*owner, me));
    // A loser whose claim did not move wakes nobody, so owner and losers never wake each other
    // in a loop.
    if moved || (owns && sharing.len() > 1) {
        wake_all_but(waker, me, &sharing);
    }
    if let Some(left) = before.filter(|before| before != claim) {
        wake_all_but(waker, me, &claimants(me, &left, objects(), registry));
    }
    verdict(me, claim, &sharing)
}

/// Queues the others that share `me`'s claim (it is going: ownership may move to one of them);
/// only they, not every resource of the directory.
pub fn wake_sharing<K: Claimant + Clone>(waker: &Waker<K>, me: &K, registry: &Registry) {
    let Some(claim) = registry.claim_of(me) else {
        return;
    };
    let known = waker.known();
    let objects = known.iter().filter_map(|g| g.0.as_ref().ok());
    wake_all_but(waker, me, &claimants(me, &claim, objects, registry));
}

/// Queues every one of `claimants` but `me`.
fn wake_all_but<K: Claimant + Clone>(waker: &Waker<K>, me: &K, claimants: &[&K]) {
    for other in claimants.iter().filter(|other| !same_object(**other, me)) {
        waker.wake(other);
    }
}

/// Before a delete writes back `restoreTo`: `me` may write only if it still owns its claim among
/// the live resources (an older one that now claims the same object owns it) and the route it
/// would write through is the one it claimed with. Returns why not, when not.
pub fn may_restore<K: Claimant + Clone>(
    me: &K,
    now: &Claim,
    waker: &Waker<K>,
    registry: &Registry,
) -> Result<(), String> {
    if let Some(claimed) = registry.claim_of(me)
        && claimed != *now
    {
        return Err(format!(
            "the credentials now reach {}, not {} which this resource changed",
            now.subject(),
            claimed.subject()
        ));
    }
    let known = waker.known();
    check(
        me,
        now,
        known.iter().filter_map(|g| g.0.as_ref().ok()),
        registry,
    )
    .map(|_| ())
    .map_err(|error| error.to_string())
}

/// An owner's Ready message, naming the younger resources that claim the same object.
pub fn with_contenders(mut message: String, contenders: &[String]) -> String {
    if !contenders.is_empty() {
        message.push_str(&format!(
            "; also claimed by {} (not applied)",
            contenders.join(", ")
        ));
    }
    message
}

/// Whether the status shows its resource owning what it names (a loser's Ready says `Conflict`).
pub fn owned(common: &CommonStatus) -> bool {
    conditions::find(&common.conditions, READY)
        .is_none_or(|c| c.reason != Reason::Conflict.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{UserMfaSetting, UserMfaSettingSpec};

    fn user(namespace: &str, name: &str, created: &str) -> UserMfaSetting {
        let spec: UserMfaSettingSpec = serde_json::from_value(serde_json::json!({
            "directoryId": "d-1", "userId": "u-1", "userMfaAuthenticationSettings": "Enabled",
        }))
        .unwrap();
        let mut object = UserMfaSetting::new(name, spec);
        object.metadata.namespace = Some(namespace.into());
        object.metadata.uid = Some(format!("{namespace}-{name}"));
        object.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created.parse().unwrap()),
        );
        object
    }

    fn claim(account: &str, endpoint: &str) -> Claim {
        Claim {
            account_id: account.into(),
            endpoint: endpoint.into(),
            directory_id: "d-1".into(),
            user_id: Some("u-1".into()),
        }
    }

    #[test]
    fn the_oldest_claimant_of_the_same_account_and_endpoint_owns() {
        let registry = Registry::default();
        let old = user("a", "old", "2026-01-01T00:00:00Z");
        let young = user("b", "young", "2026-01-02T00:00:00Z");
        let real = claim("1", "https://cloudsso/");
        registry.record(&old, &real);
        let known = [old.clone(), young.clone()];
        let error = check(&young, &real, &known, &registry).unwrap_err();
        assert!(error.to_string().contains("a/old"), "{error}");
        // The younger counts as a contender once its claim is known.
        assert!(check(&old, &real, &known, &registry).unwrap().is_empty());
        registry.record(&young, &real);
        assert_eq!(check(&old, &real, &known, &registry).unwrap(), ["b/young"]);
    }

    #[test]
    fn a_squatter_at_another_endpoint_or_account_claims_nothing() {
        let registry = Registry::default();
        let squatter = user("evil", "squat", "2025-01-01T00:00:00Z");
        let owner = user("team", "real", "2026-01-01T00:00:00Z");
        registry.record(&squatter, &claim("1", "http://127.0.0.1:9/"));
        let known = [squatter.clone(), owner.clone()];
        let real = claim("1", "https://cloudsso/");
        assert!(check(&owner, &real, &known, &registry).unwrap().is_empty());
        registry.record(&squatter, &claim("2", "https://cloudsso/"));
        assert!(check(&owner, &real, &known, &registry).unwrap().is_empty());
    }

    #[test]
    fn a_claim_is_read_from_status_after_a_restart_and_deleting_objects_do_not_count() {
        let registry = Registry::default();
        let mut old = user("a", "old", "2026-01-01T00:00:00Z");
        let young = user("b", "young", "2026-01-02T00:00:00Z");
        let real = claim("1", "https://cloudsso/");
        let mut status = crate::api::UserMfaSettingStatus::default();
        status.common.account_id = Some("1".into());
        status.common.endpoint = Some("https://cloudsso/".into());
        status.user_id = Some("u-1".into());
        old.status = Some(status);
        assert!(check(&young, &real, [&old, &young], &registry).is_err());
        old.metadata.deletion_timestamp = old.metadata.creation_timestamp.clone();
        assert!(check(&young, &real, [&old, &young], &registry).is_ok());
    }

    #[test]
    fn a_route_is_kept_once_and_goes_with_its_last_claimant() {
        let registry = Registry::default();
        let (a, b) = (
            user("a", "x", "2026-01-01T00:00:00Z"),
            user("b", "y", "2026-01-01T00:00:00Z"),
        );
        let real = claim("1", "https://cloudsso/");
        assert_eq!(registry.record(&a, &real), None);
        registry.record(&b, &real);
        assert_eq!(registry.0.lock().routes.len(), 1);
        assert_eq!(registry.claim_of(&a), Some(real.clone()));
        // A moved claim is returned as it was, and the route left behind goes once unused.
        assert_eq!(
            registry.record(&a, &claim("2", "https://cloudsso/")),
            Some(real.clone())
        );
        assert_eq!(registry.0.lock().routes.len(), 2);
        registry.forget(&b);
        assert_eq!(registry.0.lock().routes.len(), 1);
        registry.forget(&a);
        assert!(registry.0.lock().routes.is_empty());
        // A re-created object (another uid) is another claimant.
        registry.record(&a, &real);
        let mut again = a.clone();
        again.metadata.uid = Some("other".into());
        assert_eq!(registry.record(&again, &real), None);
    }
}
