//! Two DirectoryMfaPolicies naming one directory: the older owns it (then namespace/name decide),
//! the younger is not applied and shows `Conflict`; the owner lists the others as contenders.

use kube::{Resource, ResourceExt};

use super::conditions::{self, READY};
use super::error::ReconcileError;
use super::keys::key_of;
use super::wake::Waker;
use crate::api::{DirectoryMfaPolicy, DirectoryMfaPolicyStatus, Reason};

/// The live resources naming a directory, owner first: the oldest, then by namespace/name.
pub fn claim_owner<'a>(
    claims: impl IntoIterator<Item = &'a DirectoryMfaPolicy>,
    directory_id: &str,
) -> Vec<&'a DirectoryMfaPolicy> {
    let mut claimants: Vec<&DirectoryMfaPolicy> = claims
        .into_iter()
        .filter(|p| p.spec.directory_id == directory_id && p.meta().deletion_timestamp.is_none())
        .collect();
    claimants.sort_by(|a, b| {
        let age = |p: &DirectoryMfaPolicy| p.meta().creation_timestamp.as_ref().map(|t| t.0);
        age(a)
            .cmp(&age(b))
            .then_with(|| a.namespace().cmp(&b.namespace()))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    claimants
}

/// The contenders (namespace/name) when `policy` owns its directory; `Conflict` naming the owner
/// when another does.
pub fn check(
    policy: &DirectoryMfaPolicy,
    policies: &Waker<DirectoryMfaPolicy>,
) -> Result<Vec<String>, ReconcileError> {
    let directory_id = policy.spec.directory_id.as_str();
    let key = key_of(policy);
    let known = policies.known();
    let claimants = claim_owner(known.iter().filter_map(|g| g.0.as_ref().ok()), directory_id);
    let contenders: Vec<String> = match claimants.first().map(|p| key_of(*p)) {
        Some(owner) if owner != key => {
            return Err(ReconcileError::Conflict {
                directory_id: directory_id.into(),
                owner,
            });
        }
        _ => claimants.iter().skip(1).map(|p| key_of(*p)).collect(),
    };
    if !contenders.is_empty() {
        // Losers learn of the owner at once, not at their next resync.
        wake_others(policies, policy);
    }
    Ok(contenders)
}

/// Queues the other policies naming `policy`'s directory (ownership may move to one of them).
pub fn wake_others(policies: &Waker<DirectoryMfaPolicy>, policy: &DirectoryMfaPolicy) {
    let except = key_of(policy);
    policies.wake_where(|other| {
        other.spec.directory_id == policy.spec.directory_id && key_of(other) != except
    });
}

/// Whether the status shows its policy owning the directory (a loser's Ready says `Conflict`).
pub fn owned(status: &DirectoryMfaPolicyStatus) -> bool {
    conditions::find(&status.common.conditions, READY)
        .is_none_or(|c| c.reason != Reason::Conflict.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        DeletionPolicy, DirectoryMfaPolicySpec, ManagementPolicy, MfaAuthenticationSettings,
    };

    #[test]
    fn the_oldest_claimant_owns_the_directory() {
        let make = |name: &str, created: &str| {
            let mut policy = DirectoryMfaPolicy::new(
                name,
                DirectoryMfaPolicySpec {
                    directory_id: "d-1".into(),
                    mfa_authentication_settings: MfaAuthenticationSettings::Enabled,
                    operation_for_risk_login: None,
                    allowed_verification_types: None,
                    region: "cn-shanghai".into(),
                    endpoint: None,
                    credentials_secret_ref: None,
                    management_policy: ManagementPolicy::Enforce,
                    deletion_policy: DeletionPolicy::Orphan,
                    census: None,
                },
            );
            policy.metadata.namespace = Some("ns".into());
            policy.metadata.creation_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created.parse().unwrap()),
            );
            policy
        };
        let young = make("a-young", "2026-01-02T00:00:00Z");
        let old = make("z-old", "2026-01-01T00:00:00Z");
        let twin = make("b-twin", "2026-01-01T00:00:00Z");
        let order: Vec<String> = claim_owner([&young, &old, &twin], "d-1")
            .iter()
            .map(|p| p.name_any())
            .collect();
        assert_eq!(order, ["b-twin", "z-old", "a-young"]);
    }
}
