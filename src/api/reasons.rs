//! Every reason the operator puts on a condition or an Event, as one typed list. Users match on
//! these names (`kubectl wait`, alerts), so they are part of the API; the README's table of
//! reasons is checked against this list by a test.

/// Declares `Reason` once: the variants, `ALL` in the same order, and each one's name.
macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// A condition or Event reason.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $name,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$name,)*];

            /// The name written to the API (the variant's own name).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    /// The cloud has the declared setting (managementPolicy Enforce).
    Enforced,
    /// Read from the cloud without writing: it matches the spec (Observe), or observe-only kinds.
    Observed,
    /// Synced: the cloud matches the spec.
    InSync,
    /// The operator wrote the declared setting (the spec was new or changed).
    Updated,
    /// The cloud was changed outside Kubernetes and the operator set it back.
    DriftRepaired,
    /// The cloud differs from the spec and Observe forbids writing.
    Drifted,
    /// Effective: the directory is `Byuser`, so the user's own setting applies.
    DirectoryByUser,
    /// Effective=False: the directory's setting overrides per-user settings.
    DirectorySettingOverrides,
    /// Effective=False: the directory's setting could not be read.
    DirectorySettingUnknown,
    /// Effective: the RAM account's mfaOperationForLogin is `independent`, so the user's login profile decides.
    RamPreferenceIndependent,
    /// Effective=False: the RAM account's mfaOperationForLogin (`mandatory` or `adaptive`) overrides the user's login profile.
    RamPreferenceOverrides,
    /// Effective=False: the RAM account's security preference could not be read.
    RamPreferenceUnknown,
    /// Neither a credentialsSecretRef that resolves nor the operator's own credentials.
    CredentialsMissing,
    /// The cloud rejected the credentials, or the Secret holds unusable keys.
    CredentialsInvalid,
    /// The directory does not exist at the endpoint.
    DirectoryNotFound,
    /// The user does not exist in the directory (or in RAM).
    UserNotFound,
    /// The RAM user has no login profile (no console logon): nothing to require MFA at; nothing is written.
    NoLoginProfile,
    /// The cloud rejected a value of the spec, or the endpoint is not a URL.
    InvalidSpec,
    /// The credentials lack the permission for a call.
    Forbidden,
    /// The cloud throttled the calls; retried with backoff.
    Throttled,
    /// The cloud did not answer or answered 5xx; retried with backoff.
    CloudUnavailable,
    /// Any other cloud failure, e.g. a write the cloud did not keep.
    CloudError,
    /// Another, older resource owns the directory (or the user) in the same cloud account and endpoint.
    Conflict,
    /// UserMfaPolicy Ready=False: some counted users do not have the setting (or, with requireBoundDevice, a bound device); the PolicyReport names them.
    UsersNonCompliant,
    /// A group a UserMfaPolicy selects does not exist in the directory; the users of the other groups are still enforced.
    GroupNotFound,
    /// UserMfaPolicy: status.restoreTo holds as many users as one policy keeps; no further user is written.
    RestoreLedgerFull,
    /// UserMfaPolicy: an older Enforce policy over the same directory has not listed its users since the operator started; retried shortly.
    WaitingForOlderPolicy,
    /// No CloudAccount admits the resource: the account named (or `default`) is missing, does not admit the namespace, or does not list the directory. No cloud call is made.
    AccountNotAllowed,
    /// The Kubernetes API failed a read or a status write.
    KubernetesError,
    /// Adding or removing the finalizer failed.
    FinalizerError,
    /// Event on delete: `status.restoreTo` was written back (deletionPolicy Restore).
    Restored,
    /// Event: the object does not deserialize; it waits for a fix.
    InvalidObject,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reasons in the README's table: the first cell of each row below the heading line.
    fn documented(readme: &str) -> Vec<String> {
        readme
            .lines()
            .skip_while(|line| !line.starts_with("| reason |"))
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .filter_map(|row| row.split('|').nth(1))
            .map(|cell| cell.trim().trim_matches('`').to_string())
            .collect()
    }

    #[test]
    fn the_readme_lists_every_reason_and_no_other() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let listed = documented(readme);
        let known: Vec<String> = Reason::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(listed, known, "README.md's table of reasons, in this order");
    }
}
