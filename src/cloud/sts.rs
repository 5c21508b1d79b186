//! STS (2015-04-01) GetCallerIdentity: the Alibaba Cloud account a credential belongs to, which
//! keys the operator's claims on directories and users (two credentials of one account reach the
//! same cloud objects; two accounts never do).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::client::ApiClient;
use super::error::CloudError;

pub const VERSION: &str = "2015-04-01";

const ACTION: &str = "GetCallerIdentity";

/// Who a credential is, as GetCallerIdentity tells.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallerIdentity {
    /// The account id (digits), the same for every RAM user and role session of the account.
    pub account_id: String,
    /// e.g. `acs:ram::<account>:user/<name>`, `acs:ram::<account>:assumed-role/<role>/<session>`
    /// or `acs:ram::<account>:root`.
    #[serde(default)]
    pub arn: String,
    /// `Account`, `RAMUser` or `AssumedRoleUser`.
    #[serde(default)]
    pub identity_type: String,
    #[serde(default)]
    pub user_id: String,
}

/// Asks STS who `client`'s credential is. `client` must be built for `VERSION` at an STS endpoint
/// (`Endpoint::sts`, or an override such as the emulator's).
pub async fn get_caller_identity(client: &ApiClient) -> Result<CallerIdentity, CloudError> {
    let identity: CallerIdentity = client.read(ACTION, BTreeMap::new()).await?;
    // The account id keys ownership: an answer without a plausible one must not become a key.
    let plausible = !identity.account_id.is_empty()
        && identity.account_id.len() <= 64
        && identity.account_id.bytes().all(|b| b.is_ascii_digit());
    if !plausible {
        return Err(CloudError::Decode {
            action: ACTION.into(),
            http_status: 200,
            detail: "the answer has no AccountId of digits".into(),
        });
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_documented_fields_and_ignores_the_rest() {
        let identity: CallerIdentity = serde_json::from_value(serde_json::json!({
            "IdentityType": "AssumedRoleUser",
            "AccountId": "5012345678901234",
            "Arn": "acs:ram::5012345678901234:assumed-role/op/s",
            "UserId": "300000000000000001:s",
            "PrincipalId": "300000000000000001:s",
            "RoleId": "300000000000000001",
            "RequestId": "R",
        }))
        .unwrap();
        assert_eq!(identity.account_id, "5012345678901234");
        assert_eq!(identity.identity_type, "AssumedRoleUser");
        assert_eq!(identity.user_id, "300000000000000001:s");
        assert!(serde_json::from_value::<CallerIdentity>(serde_json::json!({"Arn": "x"})).is_err());
    }
}
