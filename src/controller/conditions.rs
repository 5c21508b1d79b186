//! Building and merging `metav1.Condition`s: one place that keeps `lastTransitionTime` unless the
//! status flips and stamps `observedGeneration`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::Reason;

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
pub const EFFECTIVE: &str = "Effective";

/// A condition to set, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl DesiredCondition {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Merges `desired` into `existing`: the transition time moves only when the status changes;
/// conditions not named in `desired` are kept as they were.
pub fn merge(
    existing: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = existing.to_vec();
    for want in desired {
        let status = if want.status { "True" } else { "False" }.to_string();
        let transition = existing
            .iter()
            .find(|c| c.type_ == want.type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        let condition = Condition {
            type_: want.type_.to_string(),
            status,
            reason: want.reason.to_string(),
            message: want.message.clone(),
            last_transition_time: transition,
            observed_generation: generation,
        };
        match merged.iter_mut().find(|c| c.type_ == want.type_) {
            Some(slot) => *slot = condition,
            None => merged.push(condition),
        }
    }
    merged
}

/// Ready and Synced, both False for the reason `error` gives.
pub fn failed(error: &super::error::ReconcileError) -> [DesiredCondition; 2] {
    let message = error.to_string();
    [
        DesiredCondition::new(READY, false, error.reason(), message.clone()),
        DesiredCondition::new(SYNCED, false, error.reason(), message),
    ]
}

/// Whether Ready already says exactly this (so an Event about it would repeat itself).
pub fn ready_says(conditions: &[Condition], reason: Reason, message: &str) -> bool {
    says(conditions, READY, reason, message)
}

/// Whether condition `type_` already gives exactly this reason and message.
pub fn says(conditions: &[Condition], type_: &str, reason: Reason, message: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.reason == reason.as_str() && c.message == message)
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t0 = time("2026-01-01T00:00:00Z");
        let t1 = time("2026-01-01T01:00:00Z");
        let first = merge(
            &[],
            &[DesiredCondition::new(READY, true, Reason::InSync, "ok")],
            Some(1),
            &t0,
        );
        let same = merge(
            &first,
            &[DesiredCondition::new(
                READY,
                true,
                Reason::InSync,
                "still ok",
            )],
            Some(2),
            &t1,
        );
        assert_eq!(same[0].last_transition_time, t0);
        assert_eq!(same[0].observed_generation, Some(2));
        assert_eq!(same[0].message, "still ok");
        let flipped = merge(
            &same,
            &[DesiredCondition::new(
                READY,
                false,
                Reason::UserNotFound,
                "gone",
            )],
            Some(2),
            &t1,
        );
        assert_eq!(flipped[0].last_transition_time, t1);
        assert_eq!(flipped[0].status, "False");
        let with_other = merge(
            &flipped,
            &[DesiredCondition::new(
                SYNCED,
                false,
                Reason::UserNotFound,
                "gone",
            )],
            Some(2),
            &t1,
        );
        assert_eq!(with_other.len(), 2);
    }
}
