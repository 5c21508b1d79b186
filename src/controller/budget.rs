//! The cloud-call budget: from the users the operator manages, the censuses asked for and
//! `--cloud-qps`, the calls one resync needs, and the resync interval that fits them. When the
//! interval asked for cannot be met, the effective interval is stretched (and said once: a log
//! line, the `effective_resync_seconds` gauge and each policy's `status.resync`). Each resource
//! is read again a little under one interval after its last pass began, so reads keep the
//! spread they were first made with. The arithmetic is pure (`plan`) and unit-tested; `Budget`
//! keeps the demand as the watches see resources come and go.

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use super::keys::fingerprint;
use crate::api::ResyncBudget;
use crate::telemetry::Metrics;

/// The share of `--cloud-qps` that resyncs may plan for: the rest is headroom for writes (which
/// go first), retries and first reads of new resources.
pub const UTILIZATION: f64 = 0.8;

/// ListUsers' page size (the census pages at its largest).
const PAGE: u64 = 100;

/// What one resource reads each resync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Calls {
    /// A UserMfaSetting: its user (setting, devices), and its directory's setting once per
    /// directory, whoever asks.
    User { directory_id: String },
    /// One read (a policy's directory, a RAM user's report, a RAM account's preference); a
    /// policy's census is counted by its pass.
    Single,
    /// A RamUserMfaSetting: its login profile and its device each resync, and its account's
    /// preference once per `account` (the credentials it names), whoever asks.
    RamUser { account: String },
}

/// One directory's census as the budget sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CensusDemand {
    /// Users in the directory (from the last census; 0 before the first).
    pub users: u64,
    /// Of those, users that UserMfaSettings already read.
    pub managed: u64,
    /// The census interval asked for (never shorter than the resync interval).
    pub interval: Option<Duration>,
}

/// Everything a resync reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    /// Users managed by UserMfaSettings: a setting read each resync, devices as often as
    /// `device_interval` allows.
    pub managed_users: u64,
    /// Single reads per resync: one per DirectoryMfaPolicy and one per directory whose users are
    /// managed (its setting, for the Effective condition).
    pub singles: u64,
    pub censuses: Vec<CensusDemand>,
    /// RAM users managed by RamUserMfaSettings: a login profile and a device read each resync.
    pub ram_users: u64,
}

/// The knobs: the interval asked for, how often devices are read, the client-side rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub resync: Duration,
    /// `--device-resync-interval` (never shorter than `resync`).
    pub device_interval: Duration,
    pub qps: f64,
}

/// What the budget decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Calls one resync (of the effective interval) needs.
    pub calls_per_resync: f64,
    pub effective: Duration,
}

impl Limits {
    /// Device reads per user per resync: 1 when devices follow the resync, less when they are
    /// read less often.
    fn device_share(&self) -> f64 {
        (self.resync.as_secs_f64() / self.device_interval.as_secs_f64().max(f64::EPSILON)).min(1.0)
    }
}

/// Calls one census takes: ListUsers pages, then a setting and a device read per user that no
/// UserMfaSetting reads anyway (and the devices of those that do, when they are read less often).
fn census_calls(census: &CensusDemand, device_share: f64) -> f64 {
    let unmanaged = census.users.saturating_sub(census.managed) as f64;
    census.users.div_ceil(PAGE) as f64
        + 2.0 * unmanaged
        + census.managed.min(census.users) as f64 * (1.0 - device_share)
}

/// Calls per second `demand` needs at effective interval `interval`.
fn rate_at(demand: &Demand, limits: &Limits, interval: Duration) -> (f64, f64) {
    let device_share = limits.device_share();
    let mut per_resync = demand.managed_users as f64 * (1.0 + device_share)
        + demand.singles as f64
        + 2.0 * demand.ram_users as f64;
    for census in &demand.censuses {
        let calls = census_calls(census, device_share);
        // A census asked for less often than the resync costs its share of each resync.
        let every = census.interval.unwrap_or(interval).max(interval);
        per_resync += calls * interval.as_secs_f64() / every.as_secs_f64();
    }
    (per_resync, per_resync / interval.as_secs_f64())
}

/// The effective interval: the one asked for when its calls fit in `UTILIZATION` of the rate,
/// else the shortest that fits.
pub fn plan(demand: &Demand, limits: &Limits) -> Plan {
    let capacity = limits.qps * UTILIZATION;
    let mut interval = limits.resync;
    // A census with its own interval scales with the effective one only while it is shorter, so
    // the fixed point is found in a few steps; each step only lengthens the interval.
    for _ in 0..16 {
        let (per_resync, rate) = rate_at(demand, limits, interval);
        if rate <= capacity * 1.0001 {
            return Plan {
                calls_per_resync: per_resync,
                effective: interval,
            };
        }
        interval = Duration::from_secs_f64(per_resync / capacity).max(interval);
    }
    let (per_resync, _) = rate_at(demand, limits, interval);
    Plan {
        calls_per_resync: per_resync,
        effective: interval,
    }
}

fn shown(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds / 3600, seconds % 3600 / 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[derive(Default)]
struct Registry {
    /// By a hash of the resource's name: the names of 10,000 users would cost a megabyte, and a
    /// collision only miscounts one user.
    users: HashSet<u64>,
    ram_users: HashSet<u64>,
    singles: HashSet<String>,
    censuses: HashMap<String, CensusDemand>,
    plan: Option<Plan>,
}

impl Registry {
    fn demand(&self) -> Demand {
        Demand {
            managed_users: self.users.len() as u64,
            singles: self.singles.len() as u64,
            censuses: self.censuses.values().copied().collect(),
            ram_users: self.ram_users.len() as u64,
        }
    }
}

/// The demand of every resource, and the plan that follows from it.
pub struct Budget {
    limits: Limits,
    registry: Mutex<Registry>,
    metrics: Arc<Metrics>,
}

impl Budget {
    pub fn new(limits: Limits, metrics: Arc<Metrics>) -> Self {
        metrics.set_effective_resync(limits.resync);
        Self {
            limits: Limits {
                device_interval: limits.device_interval.max(limits.resync),
                ..limits
            },
            registry: Mutex::default(),
            metrics,
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Registry> {
        self.registry.lock()
    }

    /// Re-plans after a change of demand; a new effective interval is said once.
    fn replan(&self, registry: &mut Registry) {
        let planned = plan(&registry.demand(), &self.limits);
        let before = registry.plan.map(|p| p.effective);
        registry.plan = Some(planned);
        if before == Some(planned.effective) {
            return;
        }
        self.metrics.set_effective_resync(planned.effective);
        let stretched = planned.effective > self.limits.resync;
        // Said when the stretch begins, ends, or moves by more than a tenth: not for every user.
        let moved = before.is_none_or(|before| {
            let ratio = planned.effective.as_secs_f64() / before.as_secs_f64().max(f64::EPSILON);
            (before > self.limits.resync) != stretched || !(0.9..=1.1).contains(&ratio)
        });
        if moved && stretched {
            tracing::warn!(
                requested = %shown(self.limits.resync),
                effective = %shown(planned.effective),
                calls_per_resync = planned.calls_per_resync.round() as u64,
                cloud_qps = self.limits.qps,
                "{}",
                self.message(&planned).unwrap_or_default()
            );
        } else if moved && before.is_some() {
            tracing::info!(resync = %shown(planned.effective), "the resync interval asked for fits the cloud-call budget again");
        }
    }

    fn message(&self, planned: &Plan) -> Option<String> {
        (planned.effective > self.limits.resync).then(|| {
            format!(
                "a resync needs {} cloud calls, more than {:.0}% of --cloud-qps {} allows in {}; resources are read every {} instead",
                planned.calls_per_resync.round() as u64,
                UTILIZATION * 100.0,
                self.limits.qps,
                shown(self.limits.resync),
                shown(planned.effective)
            )
        })
    }

    fn update(&self, change: impl FnOnce(&mut Registry) -> bool) {
        let mut registry = self.lock();
        if change(&mut registry) || registry.plan.is_none() {
            self.replan(&mut registry);
        }
    }

    /// Resource `key` reads `calls` each resync (counted again: no change).
    pub fn count(&self, key: &str, calls: Calls) {
        self.update(|registry| match calls {
            Calls::User { directory_id } => {
                let added = registry.users.insert(fingerprint(key));
                let directory = format!("directory {directory_id}");
                added
                    | (!registry.singles.contains(&directory) && registry.singles.insert(directory))
            }
            Calls::Single => {
                !registry.singles.contains(key) && registry.singles.insert(key.to_string())
            }
            Calls::RamUser { account } => {
                let added = registry.ram_users.insert(fingerprint(key));
                let preference = format!("ram preference {account}");
                added
                    | (!registry.singles.contains(&preference)
                        && registry.singles.insert(preference))
            }
        });
    }

    /// A DirectoryMfaPolicy (`key`) reads its census too, when asked (None: no census).
    pub fn count_census(&self, key: &str, census: Option<CensusDemand>) {
        self.update(|registry| match census {
            Some(census) => registry.censuses.insert(key.to_string(), census) != Some(census),
            None => registry.censuses.remove(key).is_some(),
        });
    }

    /// `key` was deleted: it costs nothing any more.
    pub fn release(&self, key: &str) {
        self.update(|registry| {
            registry.users.remove(&fingerprint(key))
                | registry.ram_users.remove(&fingerprint(key))
                | registry.singles.remove(key)
                | registry.censuses.remove(key).is_some()
        });
    }

    fn current(&self) -> Plan {
        let mut registry = self.lock();
        if registry.plan.is_none() {
            self.replan(&mut registry);
        }
        registry.plan.unwrap_or(Plan {
            calls_per_resync: 0.0,
            effective: self.limits.resync,
        })
    }

    /// How often resources are read back now.
    pub fn effective(&self) -> Duration {
        self.current().effective
    }

    /// How stale a user's device list may be: the device interval, stretched like the resync.
    pub fn device_interval(&self) -> Duration {
        let stretch = self.effective().as_secs_f64() / self.limits.resync.as_secs_f64();
        self.limits.device_interval.mul_f64(stretch.max(1.0))
    }

    /// When a resource whose pass began at `started` is read next: a little under one
    /// (effective) interval after that, so every read comes within an interval of the last.
    pub fn next_resync(&self, started: Instant) -> Duration {
        self.effective()
            .mul_f64(super::passes::RESYNC_SHARE)
            .saturating_sub(started.elapsed())
    }

    /// What a policy shows in `status.resync`.
    pub fn status(&self) -> ResyncBudget {
        let planned = self.current();
        ResyncBudget {
            requested_seconds: self.limits.resync.as_secs(),
            effective_seconds: planned.effective.as_secs(),
            calls_per_resync: planned.calls_per_resync.round() as u64,
            message: self.message(&planned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(resync: u64, device: u64, qps: f64) -> Limits {
        Limits {
            resync: Duration::from_secs(resync),
            device_interval: Duration::from_secs(device),
            qps,
        }
    }

    #[test]
    fn a_resync_that_fits_keeps_the_interval_asked_for() {
        // 100 users x 2 calls + 2 singles = 202 calls in 5 min at 20/s x 0.8 = 4800: fits.
        let demand = Demand {
            managed_users: 100,
            singles: 2,
            censuses: vec![],
            ram_users: 0,
        };
        let planned = plan(&demand, &limits(300, 300, 20.0));
        assert_eq!(planned.effective, Duration::from_secs(300));
        assert_eq!(planned.calls_per_resync, 202.0);
    }

    #[test]
    fn three_users_and_a_census_of_ten_thousand_stretch_the_interval() {
        // The case: 3 managed users in a directory of 10,000 with the census on:
        // 3 x 2 + 2 singles + 100 pages + 2 x 9,997 = 20,102 calls; at 20/s x 0.8 = 16/s that is
        // 1,256 s, not 300.
        let demand = Demand {
            managed_users: 3,
            singles: 2,
            censuses: vec![CensusDemand {
                users: 10_000,
                managed: 3,
                interval: None,
            }],
            ram_users: 0,
        };
        let planned = plan(&demand, &limits(300, 300, 20.0));
        assert_eq!(planned.calls_per_resync.round(), 20_102.0);
        assert_eq!(planned.effective.as_secs(), 1256);
    }

    #[test]
    fn devices_read_less_often_halve_the_calls_per_user() {
        let demand = Demand {
            managed_users: 10_000,
            singles: 0,
            censuses: vec![],
            ram_users: 0,
        };
        let every_resync = plan(&demand, &limits(300, 300, 100.0));
        assert_eq!(every_resync.calls_per_resync, 20_000.0);
        // 20,000 calls at 80/s: 250 s, fits in 300.
        assert_eq!(every_resync.effective.as_secs(), 300);
        let hourly_devices = plan(&demand, &limits(300, 3000, 100.0));
        assert_eq!(hourly_devices.calls_per_resync, 11_000.0);
        let tight = plan(&demand, &limits(60, 60, 100.0));
        assert_eq!(tight.effective.as_secs(), 250);
    }

    #[test]
    fn a_census_with_its_own_interval_costs_its_share_of_each_resync() {
        // 10,000 users read once an hour: 20,100 calls per hour, 1,675 per 5-minute resync.
        let demand = Demand {
            managed_users: 0,
            singles: 1,
            censuses: vec![CensusDemand {
                users: 10_000,
                managed: 0,
                interval: Some(Duration::from_secs(3600)),
            }],
            ram_users: 0,
        };
        let planned = plan(&demand, &limits(300, 300, 20.0));
        assert_eq!(planned.effective.as_secs(), 300);
        assert_eq!(planned.calls_per_resync.round(), 1676.0);
    }

    #[test]
    fn a_census_interval_shorter_than_the_stretch_follows_it() {
        let demand = Demand {
            managed_users: 0,
            singles: 0,
            censuses: vec![CensusDemand {
                users: 10_000,
                managed: 0,
                interval: Some(Duration::from_secs(600)),
            }],
            ram_users: 0,
        };
        // 20,100 calls at 16/s need 1,256 s, longer than the census interval asked for.
        let planned = plan(&demand, &limits(300, 300, 20.0));
        assert_eq!(planned.effective.as_secs(), 1256);
    }

    #[test]
    fn a_ram_user_costs_two_reads_and_its_account_one() {
        let budget = Budget::new(limits(60, 60, 10.0), Arc::new(Metrics::new()));
        for i in 0..3 {
            let calls = Calls::RamUser {
                account: "secret team/keys".into(),
            };
            budget.count(&format!("RamUserMfaSetting/team/u{i}"), calls);
        }
        // 3 x (login profile + device) + one preference read for the account.
        assert_eq!(budget.status().calls_per_resync, 7);
        budget.release("RamUserMfaSetting/team/u0");
        assert_eq!(budget.status().calls_per_resync, 5);
    }

    #[test]
    fn the_budget_says_why_it_stretched() {
        let budget = Budget::new(limits(60, 60, 10.0), Arc::new(Metrics::new()));
        for i in 0..1000 {
            let calls = Calls::User {
                directory_id: "d-1".into(),
            };
            budget.count(&format!("ns/u{i}"), calls);
        }
        // 1,000 x 2 + 1 directory = 2,001 calls at 8/s: 250 s.
        let status = budget.status();
        assert_eq!(status.requested_seconds, 60);
        assert_eq!(status.effective_seconds, 250);
        assert_eq!(status.calls_per_resync, 2001);
        assert!(status.message.unwrap().contains("every 4m10s"));
        for i in 0..1000 {
            budget.release(&format!("ns/u{i}"));
        }
        assert_eq!(budget.effective(), Duration::from_secs(60));
        assert_eq!(budget.status().message, None);
    }
}
