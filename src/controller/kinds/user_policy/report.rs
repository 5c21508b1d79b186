//! A UserMfaPolicy's PolicyReport (wgpolicyk8s.io/v1alpha2, the schema Kyverno and Policy
//! Reporter read): the summary equal to the status's counts, and one result per user that is
//! not simply compliant (`fail`, `warn`, `skip`, `error`), by name. The writing (splitting,
//! ownership, the CRD being absent) is `controller::reports`'.

use std::collections::BTreeMap;

use kube::{Resource, ResourceExt};

use super::Synced;
use super::evaluate::{Failure, Judged, Standing, failure_text};
use super::select::Missing;
use crate::api::{PolicyReportStatus, UserMfaPolicy};
use crate::controller::context::Context;
use crate::controller::keys::key_of;
use crate::controller::reports::{
    self, Outcome, Owner, PolicyResult, Published, Severity, Summary,
};

/// Writes the policy's reports; what the status says of them.
pub async fn write(ctx: &Context, policy: &UserMfaPolicy, synced: &Synced) -> PolicyReportStatus {
    let owner = Owner {
        api_version: UserMfaPolicy::api_version(&()).to_string(),
        kind: UserMfaPolicy::kind(&()).to_string(),
        name: policy.name_any(),
        namespace: policy.namespace().unwrap_or_default(),
        uid: policy.meta().uid.clone().unwrap_or_default(),
    };
    let summary = summary(synced);
    let results = Results {
        policy: policy.name_any(),
        spec: &policy.spec,
        timestamp: jiff::Timestamp::now(),
    };
    let all = || {
        let judged = synced.judged.iter().map(|judged| results.of(judged));
        judged.chain(
            synced
                .missing
                .iter()
                .map(|missing| results.missing(missing)),
        )
    };
    match reports::publish_with(&ctx.client, &owner, summary, all).await {
        Ok(Published::Written { reports }) => PolicyReportStatus {
            names: report_names(&owner.name, reports),
            message: None,
        },
        Ok(Published::CrdAbsent) => PolicyReportStatus {
            names: vec![],
            message: Some(
                "the PolicyReport CRD (policyreports.wgpolicyk8s.io, v1alpha2) is not installed: no report is written; the counts above still hold".into(),
            ),
        },
        Err(error) => {
            tracing::warn!(policy = %key_of(policy), %error, "could not write the PolicyReport");
            PolicyReportStatus {
                names: vec![],
                message: Some(format!("the PolicyReport could not be written: {error}")),
            }
        }
    }
}

/// The names `reports::publish` gives `count` reports of `owner`.
fn report_names(owner: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| reports::report_name(owner, n)).collect()
}

/// The counts, as the status has them: pass + warn = compliant.
fn summary(synced: &Synced) -> Summary {
    let tally = &synced.tally;
    Summary {
        pass: tally.compliant - tally.warned,
        fail: tally.non_compliant,
        warn: tally.warned,
        error: tally.errors + synced.missing.len() as u64,
        skip: tally.exempt,
    }
}

fn properties(judged: &Judged, directory_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("userName".to_string(), judged.member.user_name.to_string()),
        ("userId".to_string(), judged.member.user_id.to_string()),
        ("directoryId".to_string(), directory_id.to_string()),
    ])
}

/// What every result of one report shares.
struct Results<'a> {
    policy: String,
    spec: &'a crate::api::UserMfaPolicySpec,
    timestamp: jiff::Timestamp,
}

impl Results<'_> {
    fn result(
        &self,
        rule: &str,
        result: Outcome,
        severity: Severity,
        message: String,
        properties: BTreeMap<String, String>,
    ) -> PolicyResult {
        PolicyResult {
            policy: self.policy.clone(),
            rule: rule.to_string(),
            result,
            severity: Some(severity),
            message,
            properties,
            timestamp: self.timestamp,
        }
    }

    /// The result of one judged user.
    fn of(&self, judged: &Judged) -> PolicyResult {
        let mut properties = properties(judged, &self.spec.directory_id);
        let user = &judged.member.user_name;
        match &judged.standing {
            Standing::NonCompliant(failure) => {
                let rule = match failure {
                    Failure::Setting(_) => "user-mfa-setting",
                    Failure::NoDevice => "bound-device",
                };
                let message = format!("user {user}: {}", failure_text(failure, self.spec));
                self.result(rule, Outcome::Fail, Severity::High, message, properties)
            }
            Standing::Compliant { stale } => {
                let device = stale.as_deref().unwrap_or_default().to_string();
                let message = format!(
                    "user {user}: MFA device '{device}' has not been used for 90 days or more"
                );
                properties.insert("deviceName".into(), device);
                let rule = "device-recently-used";
                self.result(rule, Outcome::Warn, Severity::Low, message, properties)
            }
            Standing::Exempt(exemption) => {
                let (reason, expires) = (&exemption.reason, &exemption.expires);
                properties.insert("reason".into(), reason.clone());
                let until = expires
                    .as_ref()
                    .map_or(String::new(), |at| format!(" until {at}"));
                if let Some(expires) = expires {
                    properties.insert("expires".into(), expires.clone());
                }
                let message = format!("user {user} is exempt{until}: {reason}");
                self.result(
                    "exemption",
                    Outcome::Skip,
                    Severity::Info,
                    message,
                    properties,
                )
            }
            Standing::Error(error) => {
                let message = format!("user {user} could not be checked: {error}");
                let rule = "user-mfa-setting";
                self.result(rule, Outcome::Error, Severity::Medium, message, properties)
            }
        }
    }
}

/// One result per judged user, then one per missing group or name. Each carries the time of
/// this pass; the writer leaves a report whose results differ only in time as it is, so a
/// result's time says since when it has read so. Made on demand (`publish_with`), never all held.
impl Results<'_> {
    fn missing(&self, missing: &Missing) -> PolicyResult {
        let directory_id = self.spec.directory_id.as_str();
        let properties = BTreeMap::from([
            ("subject".to_string(), missing.subject.clone()),
            ("directoryId".to_string(), directory_id.to_string()),
        ]);
        let message = format!("directory {directory_id} has no {}", missing.subject);
        let (outcome, severity) = (Outcome::Error, Severity::Medium);
        self.result("selector", outcome, severity, message, properties)
    }
}
