//! A UserMfaPolicy's verdict on each user it selects, pure: who counts the user (this policy, an
//! exemption, a UserMfaSetting, an older policy), whether it must be written, how it stands
//! after the pass, and the counts the status and the gauges show.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use jiff::Timestamp;

use crate::api::{Exemption, ManagementPolicy, UserMfaPolicySpec};
use crate::controller::state::policy_selections::Owners;
use crate::controller::state::user_view::DeviceSummary;

/// A device unused this long gets a `warn` result.
pub const STALE_DEVICE: Duration = Duration::from_secs(90 * 24 * 3600);

/// A user the selector found. Boxed strings (16 bytes each, no spare capacity): a policy over
/// a whole directory holds one per user while it lists, and keeps one per judged user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Member {
    pub user_id: Box<str>,
    pub user_name: Box<str>,
}

/// Who counts a selected user.
#[derive(Clone, Debug, PartialEq)]
pub enum Place<'a> {
    /// This policy: read, written under Enforce, counted.
    Counted,
    /// An exemption in force: neither read nor written nor failing.
    Exempt(&'a Exemption),
    /// A UserMfaSetting manages the user (it wins over every policy).
    OwnSetting,
    /// An older Enforce policy (namespace/name) owns the user.
    Owner(String),
}

/// The exemption of `member` in force at `now`, by id or by name (names compare without case,
/// as CloudSSO's do).
pub fn exemption<'a>(
    spec: &'a UserMfaPolicySpec,
    member: &Member,
    now: Timestamp,
) -> Option<&'a Exemption> {
    spec.exemptions.iter().find(|exemption| {
        let names_it = match (&exemption.user_id, &exemption.user_name) {
            (Some(id), _) => **id == *member.user_id,
            (None, Some(name)) => name.eq_ignore_ascii_case(&member.user_name),
            (None, None) => false,
        };
        names_it && exemption.live_at(now)
    })
}

/// The earliest moment an exemption of the spec that is in force at `now` lapses.
pub fn next_expiry(spec: &UserMfaPolicySpec, now: Timestamp) -> Option<Timestamp> {
    spec.exemptions
        .iter()
        .filter_map(Exemption::expires_at)
        .filter(|at| *at > now)
        .min()
}

/// Who counts `member`. An Observe policy owns nothing and reports on every user it selects,
/// those of UserMfaSettings and of other policies included; an exemption applies either way.
pub fn place<'a>(
    spec: &'a UserMfaPolicySpec,
    member: &Member,
    now: Timestamp,
    own_settings: &HashSet<String>,
    owners: &Owners,
) -> Place<'a> {
    if let Some(exemption) = exemption(spec, member, now) {
        return Place::Exempt(exemption);
    }
    if spec.management_policy == ManagementPolicy::Observe {
        return Place::Counted;
    }
    if own_settings.contains(&*member.user_id) {
        return Place::OwnSetting;
    }
    match owners.owner_of(&member.user_id) {
        Some(owner) => Place::Owner(owner.to_string()),
        None => Place::Counted,
    }
}

/// What a pass read of a counted user (after its write, if it made one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub setting: Option<String>,
    pub devices: DeviceSummary,
}

/// Whether the user's setting differs from the spec's (the only thing the operator can write).
pub fn needs_write(spec: &UserMfaPolicySpec, facts: &Facts) -> bool {
    facts.setting.as_deref() != Some(spec.user_mfa_authentication_settings.as_str())
}

/// Why a counted user fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Its setting is not the spec's (what the cloud has; None: it reports none).
    Setting(Option<Box<str>>),
    /// Enabled, but no MFA device bound (requireBoundDevice): only the user can fix that.
    NoDevice,
}

/// How a selected user stands after the pass: one is kept per user that is not simply
/// compliant (half of a large directory may have a stale device), so every variant is at most
/// a boxed string; the few exempt users carry their exemption boxed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It complies; `stale`: a bound device unused for 90 days (its name), a warning.
    Compliant {
        stale: Option<Box<str>>,
    },
    NonCompliant(Failure),
    /// Its exemption (why, and until when).
    Exempt(Box<Exemption>),
    /// It could not be read or written (the message), or a named user the directory lacks.
    Error(Box<str>),
}

/// The name of the bound device used longest ago, when that (or, never used, its binding) was
/// before `now - STALE_DEVICE`.
fn stale_device(devices: &DeviceSummary, now: Timestamp) -> Option<Box<str>> {
    let cutoff = now
        .checked_sub(jiff::SignedDuration::try_from(STALE_DEVICE).ok()?)
        .ok()?;
    let (used, name) = devices.oldest()?;
    (used < cutoff).then(|| name.into())
}

/// How a counted user stands, from what the pass read (and wrote).
pub fn judge(spec: &UserMfaPolicySpec, facts: &Facts, now: Timestamp) -> Standing {
    if needs_write(spec, facts) {
        return Standing::NonCompliant(Failure::Setting(facts.setting.as_deref().map(Into::into)));
    }
    if spec.requires_device() && facts.devices.count == 0 {
        return Standing::NonCompliant(Failure::NoDevice);
    }
    Standing::Compliant {
        stale: stale_device(&facts.devices, now),
    }
}

/// A user with how it stands, for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judged {
    pub member: Member,
    pub standing: Standing,
}

/// The counts of one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub matched: u64,
    pub compliant: u64,
    /// Of the compliant, those with a stale device (`warn`).
    pub warned: u64,
    pub non_compliant: u64,
    pub exempt: u64,
    pub conflicts: u64,
    pub own_setting: u64,
    pub errors: u64,
    /// The older policies that own the users counted in `conflicts`.
    pub owners: BTreeSet<String>,
}

impl Tally {
    /// Counts one selected user that is not counted by this policy.
    pub fn count_place(&mut self, place: &Place) {
        match place {
            Place::Counted => {}
            Place::Exempt(_) => self.exempt += 1,
            Place::OwnSetting => self.own_setting += 1,
            Place::Owner(owner) => {
                self.conflicts += 1;
                self.owners.insert(owner.clone());
            }
        }
    }

    /// Counts how a counted user stands.
    pub fn count_standing(&mut self, standing: &Standing) {
        match standing {
            Standing::Compliant { stale } => {
                self.compliant += 1;
                self.warned += u64::from(stale.is_some());
            }
            Standing::NonCompliant(_) => self.non_compliant += 1,
            Standing::Exempt(_) => {}
            Standing::Error(_) => self.errors += 1,
        }
    }
}

impl From<&Tally> for crate::telemetry::PolicyUsers {
    fn from(tally: &Tally) -> Self {
        Self {
            matched: tally.matched,
            compliant: tally.compliant,
            non_compliant: tally.non_compliant,
            exempt: tally.exempt,
            conflict: tally.conflicts,
        }
    }
}

/// How a person reads a failure.
pub fn failure_text(failure: &Failure, spec: &UserMfaPolicySpec) -> String {
    match failure {
        Failure::Setting(observed) => format!(
            "userMfaAuthenticationSettings is {}, the policy requires {}",
            observed.as_deref().unwrap_or("unknown"),
            spec.user_mfa_authentication_settings.as_str()
        ),
        Failure::NoDevice => {
            "MFA is Enabled but no MFA device is bound (requireBoundDevice)".to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::state::Claim;
    use crate::controller::state::policy_selections::{PolicySelections, Selection, user_hash};
    use std::sync::Arc;

    fn spec(json: serde_json::Value) -> UserMfaPolicySpec {
        let mut base = serde_json::json!({
            "directoryId": "d-1", "users": {"all": true}, "userMfaAuthenticationSettings": "Enabled",
        });
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn member(id: &str, name: &str) -> Member {
        Member {
            user_id: id.into(),
            user_name: name.into(),
        }
    }

    fn device(name: &str, used: &str) -> crate::cloud::cloudsso::MfaDevice {
        serde_json::from_value(serde_json::json!({
            "DeviceId": format!("mfa-{name}"), "DeviceName": name, "DeviceType": "TOTP",
            "LastUseTime": used,
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    fn no_owners() -> Owners {
        PolicySelections::default().older_owners("a/me", None, &claim())
    }

    fn claim() -> Claim {
        Claim {
            account_id: "1".into(),
            endpoint: "e".into(),
            directory_id: "d-1".into(),
            user_id: None,
        }
    }

    #[test]
    fn an_exemption_applies_until_it_lapses() {
        let spec = spec(serde_json::json!({"exemptions": [
            {"userName": "Break-Glass", "reason": "emergency", "expires": "2026-12-31T00:00:00Z"},
            {"userId": "u-old", "reason": "left", "expires": "2026-11-01T00:00:00Z"},
        ]}));
        let own = HashSet::new();
        let glass = member("u-bg", "break-glass");
        assert!(matches!(
            place(&spec, &glass, now(), &own, &no_owners()),
            Place::Exempt(e) if e.reason == "emergency"
        ));
        let lapsed = member("u-old", "old");
        assert_eq!(
            place(&spec, &lapsed, now(), &own, &no_owners()),
            Place::Counted
        );
        let later: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            place(&spec, &glass, later, &own, &no_owners()),
            Place::Counted
        );
        assert_eq!(
            next_expiry(&spec, now()),
            Some("2026-12-31T00:00:00Z".parse().unwrap())
        );
        assert_eq!(next_expiry(&spec, later), None);
    }

    #[test]
    fn a_user_setting_and_an_older_policy_win_but_not_over_an_observer() {
        let selections = PolicySelections::default();
        selections.publish(
            "a/old",
            Selection {
                uid: None,
                claim: claim(),
                created: Some("2026-01-01T00:00:00Z".parse().unwrap()),
                enforces: true,
                users: Arc::new([user_hash("u-2")].into()),
            },
        );
        let owners = selections.older_owners(
            "b/young",
            Some("2026-02-01T00:00:00Z".parse().unwrap()),
            &claim(),
        );
        let own: HashSet<String> = ["u-1".to_string()].into();
        let enforce = spec(serde_json::json!({}));
        assert_eq!(
            place(&enforce, &member("u-1", "a"), now(), &own, &owners),
            Place::OwnSetting
        );
        assert_eq!(
            place(&enforce, &member("u-2", "b"), now(), &own, &owners),
            Place::Owner("a/old".into())
        );
        let observe = spec(serde_json::json!({"managementPolicy": "Observe"}));
        for user in [member("u-1", "a"), member("u-2", "b")] {
            assert_eq!(place(&observe, &user, now(), &own, &owners), Place::Counted);
        }
    }

    #[test]
    fn enabled_without_a_device_fails_unless_not_required() {
        let facts = Facts {
            setting: Some("Enabled".into()),
            devices: DeviceSummary::default(),
        };
        assert_eq!(
            judge(&spec(serde_json::json!({})), &facts, now()),
            Standing::NonCompliant(Failure::NoDevice)
        );
        let relaxed = spec(serde_json::json!({"requireBoundDevice": false}));
        assert_eq!(
            judge(&relaxed, &facts, now()),
            Standing::Compliant { stale: None }
        );
        let disabled = Facts {
            setting: Some("Disabled".into()),
            devices: DeviceSummary::default(),
        };
        assert_eq!(
            judge(&relaxed, &disabled, now()),
            Standing::NonCompliant(Failure::Setting(Some("Disabled".into())))
        );
        assert!(needs_write(&relaxed, &disabled));
    }

    #[test]
    fn a_device_unused_for_ninety_days_warns() {
        let spec = spec(serde_json::json!({}));
        let facts = Facts {
            setting: Some("Enabled".into()),
            devices: DeviceSummary::of(&[
                device("fresh", "2026-11-20T00:00:00Z"),
                device("old", "2026-08-01T00:00:00Z"),
            ]),
        };
        assert_eq!(
            judge(&spec, &facts, now()),
            Standing::Compliant {
                stale: Some("old".into())
            }
        );
        let mut tally = Tally::default();
        tally.count_standing(&judge(&spec, &facts, now()));
        assert_eq!((tally.compliant, tally.warned), (1, 1));
    }

    #[test]
    fn a_judged_user_is_small() {
        // Half of a 100,000-user directory may be kept for the report (stale devices): 104
        // bytes each before the strings were boxed and the exemption moved behind a pointer.
        assert!(
            std::mem::size_of::<Judged>() <= 64,
            "{}",
            std::mem::size_of::<Judged>()
        );
    }
}
