//! The one view of each directory's users that the UserMfaSetting reconciles and the census
//! share: a user's setting and devices are read from the cloud at most once per freshness
//! window, whoever asks first (a pass that finds a fresh enough entry uses it; a write, or a
//! spec change, asks for a fresh read).

use std::sync::Arc;
use std::time::Duration;

use super::read_through::{Field, ReadThrough};
use crate::cloud::cloudsso::{MfaDevice, UserMfaSettings};
use crate::cloud::{CloudError, CloudSsoClient};
use crate::controller::keys::{DirectoryKey, UserKey};

/// A user's own setting as kept: one byte for the two values the API documents (a listing of
/// 100,000 users keeps 100,000 of them).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Setting {
    Enabled,
    Disabled,
    Unset,
    Other(Box<str>),
}

impl From<UserMfaSettings> for Setting {
    fn from(settings: UserMfaSettings) -> Self {
        match settings.user_mfa_authentication_settings.as_deref() {
            Some("Enabled") => Self::Enabled,
            Some("Disabled") => Self::Disabled,
            None => Self::Unset,
            Some(other) => Self::Other(other.into()),
        }
    }
}

impl From<Setting> for UserMfaSettings {
    fn from(setting: Setting) -> Self {
        let value = match setting {
            Setting::Enabled => Some("Enabled".to_string()),
            Setting::Disabled => Some("Disabled".to_string()),
            Setting::Unset => None,
            Setting::Other(other) => Some(other.into()),
        };
        Self {
            user_mfa_authentication_settings: value,
        }
    }
}

/// What is kept of one user.
#[derive(Default)]
pub struct UserReads {
    settings: Field<Setting>,
    devices: Field<Vec<MfaDevice>>,
}

/// The users of one directory, by id (the directory is the outer key: a user costs its id, not
/// a copy of its endpoint and directory too).
type DirectoryUsers = ReadThrough<Box<str>, UserReads>;

/// Every user the operator has read, with when.
#[derive(Default)]
pub struct UserView(ReadThrough<DirectoryKey, DirectoryUsers>);

impl UserView {
    fn slot(&self, user: &UserKey) -> Arc<UserReads> {
        let directory = self.0.slot(&user.directory);
        directory.slot_of(user.user_id.as_str(), || user.user_id.as_str().into())
    }

    /// The user's own MFA setting, read unless the view has one younger than `max_age` (None:
    /// always read).
    pub async fn settings(
        &self,
        client: &CloudSsoClient,
        user: &UserKey,
        max_age: Option<Duration>,
    ) -> Result<UserMfaSettings, CloudError> {
        let read = || async {
            client
                .get_user_mfa_setting(&user.directory.directory_id, &user.user_id)
                .await
                .map(Setting::from)
        };
        let slot = self.slot(user);
        slot.settings
            .get_or_read(max_age, read)
            .await
            .map(Into::into)
    }

    /// The user's devices, read unless the view has a list younger than `max_age`.
    pub async fn devices(
        &self,
        client: &CloudSsoClient,
        user: &UserKey,
        max_age: Option<Duration>,
    ) -> Result<Vec<MfaDevice>, CloudError> {
        let read = || async {
            let mut devices = client
                .list_mfa_devices(&user.directory.directory_id, &user.user_id)
                .await?;
            // The user's id is the key already; a device list of one is kept at its size.
            for device in &mut devices {
                device.user_id = None;
            }
            devices.shrink_to_fit();
            Ok(devices)
        };
        self.slot(user).devices.get_or_read(max_age, read).await
    }

    /// What the cloud has now (just written and acknowledged).
    pub async fn record_settings(&self, user: &UserKey, settings: UserMfaSettings) {
        self.slot(user).settings.record(settings.into()).await;
    }

    /// The user is gone from the cloud.
    pub fn forget(&self, user: &UserKey) {
        self.0
            .slot(&user.directory)
            .forget_of(user.user_id.as_str());
    }
}
