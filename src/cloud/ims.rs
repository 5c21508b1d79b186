//! RAM's identity API (IMS, 2019-08-15): the MFA device of a RAM user.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::client::ApiClient;
use super::error::CloudError;
use super::text;

pub const VERSION: &str = "2019-08-15";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RamMfaDevice {
    #[serde(deserialize_with = "text::de::string")]
    pub serial_number: String,
    #[serde(rename = "Type", default, deserialize_with = "text::de::string")]
    pub device_type: String,
}

/// GetUserMFAInfo's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserMfaInfo {
    #[serde(rename = "IsMFAEnable", default)]
    pub is_mfa_enable: bool,
    #[serde(rename = "MFADevice", default)]
    pub mfa_device: Option<RamMfaDevice>,
}

#[derive(Debug, Clone)]
pub struct ImsClient {
    api: ApiClient,
}

impl ImsClient {
    pub fn new(api: ApiClient) -> Self {
        Self { api }
    }

    pub async fn get_user_mfa_info(
        &self,
        user_principal_name: &str,
    ) -> Result<UserMfaInfo, CloudError> {
        let params = BTreeMap::from([(
            "UserPrincipalName".to_string(),
            user_principal_name.to_string(),
        )]);
        let mut info: UserMfaInfo = self.api.read("GetUserMFAInfo", params).await?;
        // An empty device object means none is bound.
        if info
            .mfa_device
            .as_ref()
            .is_some_and(|device| device.serial_number.is_empty())
        {
            info.mfa_device = None;
        }
        Ok(info)
    }
}
