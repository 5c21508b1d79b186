//! The one view of each directory's users that the UserMfaSetting reconciles and the census
//! share: a user's setting and devices are read from the cloud at most once per freshness
//! window, whoever asks first (a pass that finds a fresh enough entry uses it; a write, or a
//! spec change, asks for a fresh read).

use std::time::Duration;

use super::read_through::{Field, ReadThrough};
use crate::cloud::cloudsso::{MfaDevice, UserMfaSettings};
use crate::cloud::{CloudError, CloudSsoClient};
use crate::controller::keys::UserKey;

/// What is kept of one user.
#[derive(Default)]
pub struct UserReads {
    settings: Field<UserMfaSettings>,
    devices: Field<Vec<MfaDevice>>,
}

/// Every user the operator has read, with when.
#[derive(Default)]
pub struct UserView(ReadThrough<UserKey, UserReads>);

impl UserView {
    /// The user's own MFA setting, read unless the view has one younger than `max_age` (None:
    /// always read).
    pub async fn settings(
        &self,
        client: &CloudSsoClient,
        user: &UserKey,
        max_age: Option<Duration>,
    ) -> Result<UserMfaSettings, CloudError> {
        let read = || client.get_user_mfa_setting(&user.directory.directory_id, &user.user_id);
        self.0.slot(user).settings.get_or_read(max_age, read).await
    }

    /// The user's devices, read unless the view has a list younger than `max_age`.
    pub async fn devices(
        &self,
        client: &CloudSsoClient,
        user: &UserKey,
        max_age: Option<Duration>,
    ) -> Result<Vec<MfaDevice>, CloudError> {
        let read = || client.list_mfa_devices(&user.directory.directory_id, &user.user_id);
        self.0.slot(user).devices.get_or_read(max_age, read).await
    }

    /// What the cloud has now (just written and acknowledged).
    pub async fn record_settings(&self, user: &UserKey, settings: UserMfaSettings) {
        self.0.slot(user).settings.record(settings).await;
    }

    /// The user is gone from the cloud.
    pub fn forget(&self, user: &UserKey) {
        self.0.forget(user);
    }
}
