//! Directory settings shared by every user of a directory (their `Effective` condition): one
//! read per resync, whoever asks, through the shared read-through cache.

use std::time::Duration;

use super::read_through::ReadThrough;
use crate::cloud::cloudsso::MfaSettingInfo;
use crate::cloud::{CloudError, CloudSsoClient};
use crate::controller::keys::DirectoryKey;

#[derive(Default)]
pub struct DirectoryCache(ReadThrough<DirectoryKey, MfaSettingInfo>);

impl DirectoryCache {
    /// The directory's setting, read unless one younger than `max_age` is kept.
    pub async fn setting(
        &self,
        client: &CloudSsoClient,
        directory: &DirectoryKey,
        max_age: Duration,
    ) -> Result<MfaSettingInfo, CloudError> {
        self.0
            .get_or_read(directory, max_age, || {
                client.get_mfa_setting_info(&directory.directory_id)
            })
            .await
    }

    /// A fresh observation (the directory's policy just read or wrote it).
    pub fn record(&self, directory: &DirectoryKey, info: MfaSettingInfo) {
        self.0.record(directory, info);
    }
}
