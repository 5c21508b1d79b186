//! What a PolicyReport says (wgpolicyk8s.io/v1alpha2): one result per subject, with its outcome
//! and severity, and the summary of outcomes; and their wire form, as the CRD's schema spells it
//! (`timestamp` as `{seconds, nanos}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::controller::keys::MANAGER;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Warn,
    Error,
    Skip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

/// One result (one user): serialized in the v1alpha2 `results[]` item shape, with
/// `source: cloudsso-mfa-operator` and `scored: true` always emitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireResult", try_from = "WireResult")]
pub struct PolicyResult {
    /// The policy's name.
    pub policy: String,
    /// e.g. "user-mfa-setting", "bound-device", "device-recently-used", "exemption".
    pub rule: String,
    pub result: Outcome,
    pub severity: Option<Severity>,
    pub message: String,
    /// userId, userName, ...
    pub properties: BTreeMap<String, String>,
    /// When the result was found: pass the observation's time, not the pass's, or every pass
    /// changes the report and rewrites it.
    pub timestamp: jiff::Timestamp,
}

/// A `results[]` item as the CRD spells it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct WireResult {
    policy: String,
    #[serde(default)]
    rule: String,
    result: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(default)]
    message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    properties: BTreeMap<String, String>,
    timestamp: WireTime,
    #[serde(default)]
    source: String,
    #[serde(default)]
    scored: bool,
}

/// The CRD's timestamp: a protobuf Timestamp, whose nanos are never negative.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(super) struct WireTime {
    seconds: i64,
    nanos: i32,
}

pub(super) const NANOS_PER_SECOND: i128 = 1_000_000_000;

impl From<PolicyResult> for WireResult {
    fn from(result: PolicyResult) -> Self {
        let nanoseconds = result.timestamp.as_nanosecond();
        Self {
            policy: result.policy,
            rule: result.rule,
            result: result.result,
            severity: result.severity,
            message: result.message,
            properties: result.properties,
            timestamp: WireTime {
                // jiff's range (years -9999..=9999) fits both.
                seconds: nanoseconds.div_euclid(NANOS_PER_SECOND) as i64,
                nanos: nanoseconds.rem_euclid(NANOS_PER_SECOND) as i32,
            },
            source: MANAGER.to_string(),
            scored: true,
        }
    }
}

impl TryFrom<WireResult> for PolicyResult {
    type Error = jiff::Error;

    fn try_from(wire: WireResult) -> Result<Self, Self::Error> {
        let nanoseconds = i128::from(wire.timestamp.seconds) * NANOS_PER_SECOND
            + i128::from(wire.timestamp.nanos);
        Ok(Self {
            policy: wire.policy,
            rule: wire.rule,
            result: wire.result,
            severity: wire.severity,
            message: wire.message,
            properties: wire.properties,
            timestamp: jiff::Timestamp::from_nanosecond(nanoseconds)?,
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub pass: u64,
    pub fail: u64,
    pub warn: u64,
    pub error: u64,
    pub skip: u64,
}

impl Summary {
    /// The counts of `results`.
    pub fn of(results: &[PolicyResult]) -> Self {
        Self::of_outcomes(results.iter().map(|result| result.result))
    }

    /// The counts of `outcomes`.
    pub fn of_outcomes(outcomes: impl IntoIterator<Item = Outcome>) -> Self {
        let mut summary = Self::default();
        for outcome in outcomes {
            let count = match outcome {
                Outcome::Pass => &mut summary.pass,
                Outcome::Fail => &mut summary.fail,
                Outcome::Warn => &mut summary.warn,
                Outcome::Error => &mut summary.error,
                Outcome::Skip => &mut summary.skip,
            };
            *count += 1;
        }
        summary
    }

    pub(super) fn add(self, other: Self) -> Self {
        Self {
            pass: self.pass + other.pass,
            fail: self.fail + other.fail,
            warn: self.warn + other.warn,
            error: self.error + other.error,
            skip: self.skip + other.skip,
        }
    }

    pub(super) fn saturating_sub(self, other: Self) -> Self {
        Self {
            pass: self.pass.saturating_sub(other.pass),
            fail: self.fail.saturating_sub(other.fail),
            warn: self.warn.saturating_sub(other.warn),
            error: self.error.saturating_sub(other.error),
            skip: self.skip.saturating_sub(other.skip),
        }
    }
}
