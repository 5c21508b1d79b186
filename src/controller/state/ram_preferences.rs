//! RAM accounts' security preferences, shared by every RamUserMfaSetting of an account (their
//! `Effective` condition follows `mfaOperationForLogin`): one GetSecurityPreference per resync
//! per account and endpoint, whoever asks, through the shared read-through cache.

use std::time::Duration;

use super::read_through::ReadThrough;
use crate::cloud::ims::SecurityPreference;
use crate::cloud::{CloudError, ImsClient};
use crate::controller::tenancy::Identity;

/// One RAM account at one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RamAccountKey {
    pub endpoint: String,
    pub account_id: String,
}

impl RamAccountKey {
    pub fn of(identity: &Identity) -> Self {
        Self {
            endpoint: identity.endpoint.clone(),
            account_id: identity.account_id.clone(),
        }
    }
}

#[derive(Default)]
pub struct RamPreferenceCache(ReadThrough<RamAccountKey, SecurityPreference>);

impl RamPreferenceCache {
    /// The account's preference, read unless one younger than `max_age` is kept.
    pub async fn preference(
        &self,
        client: &ImsClient,
        account: &RamAccountKey,
        max_age: Duration,
    ) -> Result<SecurityPreference, CloudError> {
        self.0
            .get_or_read(account, max_age, || client.get_security_preference())
            .await
    }

    /// A fresh observation (the account's RamSecurityPreference just read or wrote it).
    pub fn record(&self, account: &RamAccountKey, preference: SecurityPreference) {
        self.0.record(account, preference);
    }
}
