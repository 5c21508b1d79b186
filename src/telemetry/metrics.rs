//! The operator's Prometheus metrics: reconciles, cloud API calls, the client-side rate limiter,
//! leadership, and the MFA compliance of each directory.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::cloud::CallObserver;
use crate::cloud::client::action_label;
use crate::cloud::error::outcome_label;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileErrorLabels {
    pub kind: String,
    /// The condition reason the failure reports (CredentialsInvalid, Throttled, ...).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UrgencyLabels {
    /// `interactive` (a spec change or deletion), `initial` (a new resource), `resync`.
    pub urgency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudCallLabels {
    /// `cloudsso` or `ims`.
    pub api: String,
    pub action: String,
    /// `ok`, or the API's error code when known, or a transport failure (`timeout`,
    /// `connection`, ...), else `other`: a fixed set, whatever an endpoint answers.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloudActionLabels {
    pub api: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectoryLabels {
    pub directory: String,
    /// The endpoint the census read: a policy at another endpoint (a tenant's own, perhaps
    /// hostile) owns its own series and never overwrites the real directory's.
    pub endpoint: String,
}

/// One UserMfaPolicy's users in one state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// The policy's namespace (kept over the target's by the ServiceMonitor's honorLabels).
    pub namespace: String,
    pub policy: String,
    pub directory: String,
    /// matched, compliant, non_compliant, exempt or conflict.
    pub state: String,
}

/// A UserMfaPolicy's counts, as its status shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyUsers {
    pub matched: u64,
    pub compliant: u64,
    pub non_compliant: u64,
    pub exempt: u64,
    pub conflict: u64,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn reconcile_buckets() -> Histogram {
    // 5 ms .. ~41 s
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn call_buckets() -> Histogram {
    // 1 ms .. ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// How many users of a directory are in each MFA state, from one census of the directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectoryCompliance {
    pub users: u64,
    pub mfa_disabled: u64,
    pub mfa_enabled_without_device: u64,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    reconcile_duration: HistogramFamily<KindLabels>,
    cloud_calls: Family<CloudCallLabels, Counter>,
    cloud_call_duration: HistogramFamily<CloudActionLabels>,
    cloud_throttled: Family<CloudActionLabels, Counter>,
    rate_limiter_wait: Histogram,
    passes_waiting: Family<UrgencyLabels, Gauge>,
    leader: Gauge,
    effective_resync: Gauge<f64, AtomicU64>,
    cloud_rate: Gauge<f64, AtomicU64>,
    directory_users: Family<DirectoryLabels, Gauge>,
    users_mfa_disabled: Family<DirectoryLabels, Gauge>,
    users_without_device: Family<DirectoryLabels, Gauge>,
    policy_users: Family<PolicyLabels, Gauge>,
    /// The label sets each policy (namespace, name) has, to drop them with it.
    policy_series: parking_lot::Mutex<std::collections::HashMap<(String, String), String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cloudsso_mfa_operator");
        let metrics = Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(reconcile_buckets),
            cloud_calls: Family::default(),
            cloud_call_duration: Family::new_with_constructor(call_buckets),
            cloud_throttled: Family::default(),
            rate_limiter_wait: Histogram::new(exponential_buckets(0.001, 4.0, 9)),
            passes_waiting: Family::default(),
            leader: Gauge::default(),
            effective_resync: Gauge::default(),
            cloud_rate: Gauge::default(),
            directory_users: Family::default(),
            users_mfa_disabled: Family::default(),
            users_without_device: Family::default(),
            policy_users: Family::default(),
            policy_series: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles run, by kind (also those that return at once: a current status, or waiting for a slot)",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind and the reason their Ready condition reports",
            metrics.reconcile_errors.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Time one reconcile took, by kind",
            Unit::Seconds,
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "cloud_api_calls",
            "Cloud API requests (each attempt), by API, action and outcome (ok or the error code)",
            metrics.cloud_calls.clone(),
        );
        registry.register_with_unit(
            "cloud_api_call_duration",
            "Time one cloud API request took, by API and action",
            Unit::Seconds,
            metrics.cloud_call_duration.clone(),
        );
        registry.register(
            "cloud_api_throttled",
            "Cloud API requests the cloud answered with a throttling error, by API and action",
            metrics.cloud_throttled.clone(),
        );
        registry.register_with_unit(
            "rate_limiter_wait",
            "Time a cloud API request waited for the client-side rate limiter (the sum is the total wait)",
            Unit::Seconds,
            metrics.rate_limiter_wait.clone(),
        );
        registry.register(
            "passes_waiting",
            "Resources whose pass waits for a slot, by urgency (the slots are per urgency: --max-concurrent-reconciles, or --cloud-qps)",
            metrics.passes_waiting.clone(),
        );
        registry.register(
            "leader",
            "1 while this process holds the leader Lease (or runs without leader election), else 0",
            metrics.leader.clone(),
        );
        registry.register_with_unit(
            "effective_resync",
            "How often resources are read back from the cloud: --resync-interval, or longer when a resync needs more calls than --cloud-qps allows in it",
            Unit::Seconds,
            metrics.effective_resync.clone(),
        );
        registry.register(
            "cloud_rate_limit_qps",
            "Calls per second the client-side limiter allows now: --cloud-qps, lowered while the cloud answers with throttling errors",
            metrics.cloud_rate.clone(),
        );
        registry.register(
            "directory_users",
            "Users in a CloudSSO directory, at its last census",
            metrics.directory_users.clone(),
        );
        registry.register(
            "directory_users_mfa_disabled",
            "Users of a CloudSSO directory whose own MFA setting is Disabled",
            metrics.users_mfa_disabled.clone(),
        );
        registry.register(
            "directory_users_mfa_enabled_without_device",
            "Users of a CloudSSO directory with MFA Enabled but no MFA device bound",
            metrics.users_without_device.clone(),
        );
        registry.register(
            "policy_users",
            "Users a UserMfaPolicy selects (matched) and how they stand: compliant, non_compliant, exempt, conflict (an older policy owns them); the PolicyReport names them",
            metrics.policy_users.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// The exposition in the OpenMetrics text format (which Prometheus scrapes natively).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    pub fn reconcile_finished(&self, kind: &str, elapsed: Duration, error_reason: Option<&str>) {
        let labels = KindLabels { kind: kind.into() };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(reason) = error_reason {
            self.reconcile_errors
                .get_or_create(&ReconcileErrorLabels {
                    kind: kind.into(),
                    reason: reason.into(),
                })
                .inc();
        }
    }

    pub fn set_cloud_rate(&self, qps: f64) {
        self.cloud_rate.set(qps);
    }

    pub fn set_effective_resync(&self, interval: Duration) {
        self.effective_resync.set(interval.as_secs_f64());
    }

    /// How many passes wait for a slot, per urgency.
    pub fn set_passes_waiting(&self, urgency: &str, waiting: usize) {
        let labels = UrgencyLabels {
            urgency: urgency.to_string(),
        };
        self.passes_waiting
            .get_or_create(&labels)
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn set_compliance(&self, endpoint: &str, directory: &str, compliance: DirectoryCompliance) {
        let labels = DirectoryLabels {
            directory: directory.into(),
            endpoint: endpoint.into(),
        };
        let as_gauge = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
        self.directory_users
            .get_or_create(&labels)
            .set(as_gauge(compliance.users));
        self.users_mfa_disabled
            .get_or_create(&labels)
            .set(as_gauge(compliance.mfa_disabled));
        self.users_without_device
            .get_or_create(&labels)
            .set(as_gauge(compliance.mfa_enabled_without_device));
    }

    /// Sets a UserMfaPolicy's gauges (the directory it reads: one series set per policy).
    pub fn set_policy_users(
        &self,
        namespace: &str,
        policy: &str,
        directory: &str,
        users: PolicyUsers,
    ) {
        let key = (namespace.to_string(), policy.to_string());
        let before = self.policy_series.lock().insert(key, directory.to_string());
        if let Some(before) = before.filter(|before| before != directory) {
            self.drop_policy_series(namespace, policy, &before);
        }
        let states = [
            ("matched", users.matched),
            ("compliant", users.compliant),
            ("non_compliant", users.non_compliant),
            ("exempt", users.exempt),
            ("conflict", users.conflict),
        ];
        for (state, count) in states {
            let labels = policy_labels(namespace, policy, directory, state);
            self.policy_users
                .get_or_create(&labels)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Drops a deleted policy's gauges.
    pub fn forget_policy(&self, namespace: &str, policy: &str) {
        let key = (namespace.to_string(), policy.to_string());
        if let Some(directory) = self.policy_series.lock().remove(&key) {
            self.drop_policy_series(namespace, policy, &directory);
        }
    }

    fn drop_policy_series(&self, namespace: &str, policy: &str, directory: &str) {
        for state in [
            "matched",
            "compliant",
            "non_compliant",
            "exempt",
            "conflict",
        ] {
            self.policy_users
                .remove(&policy_labels(namespace, policy, directory, state));
        }
    }

    /// Drops a directory's gauges (its policy was deleted), so no stale series stays behind.
    pub fn forget_directory(&self, endpoint: &str, directory: &str) {
        let labels = DirectoryLabels {
            directory: directory.into(),
            endpoint: endpoint.into(),
        };
        self.directory_users.remove(&labels);
        self.users_mfa_disabled.remove(&labels);
        self.users_without_device.remove(&labels);
    }

    /// A [`CallObserver`] for one API's client.
    pub fn cloud_observer(self: &Arc<Self>, api: &'static str) -> Arc<dyn CallObserver> {
        Arc::new(CloudCallRecorder {
            api,
            metrics: self.clone(),
        })
    }
}

struct CloudCallRecorder {
    api: &'static str,
    metrics: Arc<Metrics>,
}

impl CallObserver for CloudCallRecorder {
    fn call_finished(&self, action: &str, outcome: &str, throttled: bool, elapsed: Duration) {
        // Bounded here too, where the series are made: no caller can add one per string.
        let (action, outcome) = (action_label(action), outcome_label(outcome));
        let action_labels = CloudActionLabels {
            api: self.api.into(),
            action: action.into(),
        };
        self.metrics
            .cloud_calls
            .get_or_create(&CloudCallLabels {
                api: self.api.into(),
                action: action.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.metrics
            .cloud_call_duration
            .get_or_create(&action_labels)
            .observe(elapsed.as_secs_f64());
        if throttled {
            self.metrics
                .cloud_throttled
                .get_or_create(&action_labels)
                .inc();
        }
    }

    fn rate_changed(&self, qps: f64) {
        self.metrics.set_cloud_rate(qps);
    }

    fn rate_limit_waited(&self, waited: Duration) {
        self.metrics.rate_limiter_wait.observe(waited.as_secs_f64());
    }
}

fn policy_labels(namespace: &str, policy: &str, directory: &str, state: &str) -> PolicyLabels {
    PolicyLabels {
        namespace: namespace.into(),
        policy: policy.into(),
        directory: directory.into(),
        state: state.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn reconciles_errors_and_calls_are_counted_by_their_labels() {
        let metrics = Arc::new(Metrics::new());
        metrics.reconcile_finished("UserMfaSetting", Duration::from_millis(20), None);
        metrics.reconcile_finished(
            "UserMfaSetting",
            Duration::from_millis(20),
            Some("Throttled"),
        );
        let observer = metrics.cloud_observer("cloudsso");
        observer.call_finished("ListUsers", "ok", false, Duration::from_millis(3));
        observer.call_finished(
            "ListUsers",
            "Throttling.User",
            true,
            Duration::from_millis(3),
        );
        observer.rate_limit_waited(Duration::from_millis(250));
        let text = metrics.encode().unwrap();
        assert_eq!(
            sample(
                &text,
                "cloudsso_mfa_operator_reconciles_total{kind=\"UserMfaSetting\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "cloudsso_mfa_operator_reconcile_errors_total{kind=\"UserMfaSetting\",reason=\"Throttled\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "cloudsso_mfa_operator_cloud_api_calls_total{api=\"cloudsso\",action=\"ListUsers\",outcome=\"Throttling.User\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "cloudsso_mfa_operator_cloud_api_throttled_total{api=\"cloudsso\",action=\"ListUsers\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "cloudsso_mfa_operator_rate_limiter_wait_seconds_sum "
            ),
            Some(0.25)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn unknown_actions_and_codes_share_one_series() {
        let metrics = Arc::new(Metrics::new());
        let observer = metrics.cloud_observer("cloudsso");
        for i in 0..50 {
            observer.call_finished(
                &format!("Made{i}"),
                &format!("Evil.Code{i}\u{1b}"),
                false,
                Duration::from_millis(1),
            );
        }
        let text = metrics.encode().unwrap();
        assert!(!text.contains("Evil") && !text.contains("Made"), "{text}");
        assert_eq!(
            sample(
                &text,
                "cloudsso_mfa_operator_cloud_api_calls_total{api=\"cloudsso\",action=\"other\",outcome=\"other\"}"
            ),
            Some(50.0)
        );
    }

    #[test]
    fn compliance_gauges_are_set_and_forgotten_per_directory() {
        let metrics = Metrics::new();
        metrics.set_compliance(
            "https://cloudsso/",
            "d-1",
            DirectoryCompliance {
                users: 3,
                mfa_disabled: 1,
                mfa_enabled_without_device: 2,
            },
        );
        let text = metrics.encode().unwrap();
        assert_eq!(
            sample(
                &text,
                "cloudsso_mfa_operator_directory_users_mfa_enabled_without_device{directory=\"d-1\",endpoint=\"https://cloudsso/\"}"
            ),
            Some(2.0)
        );
        metrics.forget_directory("https://cloudsso/", "d-1");
        assert!(!metrics.encode().unwrap().contains("d-1"));
    }
}
