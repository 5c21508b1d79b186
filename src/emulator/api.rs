//! The emulated actions: CloudSSO 2021-05-15 and IMS 2019-08-15 (STS AssumeRoleWithOIDC and
//! GetCallerIdentity are in `server`, as they need more than the seed), with the
//! real APIs' field names, error codes and HTTP statuses. Pure functions over the state, the same
//! whichever signature (ACS3 or RPC) the call came with.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::seed::{Seed, SeedDirectory, SeedUser};

pub const CLOUDSSO_VERSION: &str = "2021-05-15";
pub const IMS_VERSION: &str = "2019-08-15";
pub const STS_VERSION: &str = "2015-04-01";

/// An error answer: HTTP status, code and message, as the real gateway sends them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFault {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// Sent as `x-acs-retry-after` (milliseconds) with throttling answers.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiFault {
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retrying_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub(super) fn missing(name: &str) -> Self {
        Self::new(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    pub(super) fn invalid(name: &str, detail: &str) -> Self {
        Self::new(
            400,
            format!("InvalidParameter.{name}"),
            format!("The specified parameter \"{name}\" is not valid. {detail}"),
        )
    }

    pub(super) fn directory_not_found() -> Self {
        Self::new(
            404,
            "EntityNotExists.Directory",
            "The specified directory does not exist.",
        )
    }

    pub(super) fn user_not_found() -> Self {
        Self::new(
            404,
            "EntityNotExists.User",
            "The specified user does not exist.",
        )
    }
}

pub type Params = BTreeMap<String, String>;

pub(super) fn required<'a>(params: &'a Params, name: &str) -> Result<&'a str, ApiFault> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ApiFault::missing(name))
}

pub(super) fn directory_mut<'a>(
    seed: &'a mut Seed,
    params: &Params,
) -> Result<&'a mut SeedDirectory, ApiFault> {
    let directory_id = required(params, "DirectoryId")?;
    seed.directories
        .iter_mut()
        .find(|directory| directory.directory_id == directory_id)
        .ok_or_else(ApiFault::directory_not_found)
}

pub(super) fn user_mut<'a>(
    directory: &'a mut SeedDirectory,
    params: &Params,
) -> Result<&'a mut SeedUser, ApiFault> {
    let user_id = required(params, "UserId")?;
    directory
        .users
        .iter_mut()
        .find(|user| user.user_id == user_id)
        .ok_or_else(ApiFault::user_not_found)
}

/// A fixed creation time keeps answers stable across runs.
pub(super) const USER_CREATE_TIME: &str = "2021-10-26T03:13:43Z";
/// The region the emulator poses as (the operator's default region).
const REGION: &str = "cn-shanghai";
/// Where CloudSSO's SAML service provider lives for a directory in that region.
const SIGNIN_HOST: &str = "https://signin-cn-shanghai.alibabacloudsso.com";

pub(super) fn provision_type(user: &SeedUser) -> &'static str {
    // Users with an external identity came through SCIM; the rest were made by hand.
    if user.external_id.is_some() {
        "Synchronized"
    } else {
        "Manual"
    }
}

pub(super) fn user_json(user: &SeedUser) -> Value {
    json!({
        "UserId": user.user_id,
        "UserName": user.user_name,
        "DisplayName": user.display_name.clone().unwrap_or_else(|| user.user_name.clone()),
        "Status": "Enabled",
        "ProvisionType": provision_type(user),
        "CreateTime": USER_CREATE_TIME,
        "UpdateTime": USER_CREATE_TIME,
    })
}

/// GetUser's fuller shape: the documented fields, empty where the seed has nothing.
pub(super) fn user_detail_json(user: &SeedUser) -> Value {
    let mut detail = user_json(user);
    for (field, value) in [
        ("Email", &user.email),
        ("Description", &user.description),
        ("FirstName", &user.first_name),
        ("LastName", &user.last_name),
    ] {
        detail[field] = json!(value.clone().unwrap_or_default());
    }
    detail["Tags"] = json!([]);
    if let Some(external) = &user.external_id {
        detail["ExternalId"] = json!({ "Id": external.id, "Issuer": external.issuer });
    }
    detail
}

fn directory_json(directory: &SeedDirectory) -> Value {
    json!({
        "DirectoryId": directory.directory_id,
        "DirectoryName": directory.directory_name.clone().unwrap_or_default(),
        "Region": REGION,
        "CreateTime": USER_CREATE_TIME,
        "UpdateTime": USER_CREATE_TIME,
    })
}

/// The directory as a SAML service provider; its metadata document is the XML an IdP imports.
fn saml_service_provider_json(directory: &SeedDirectory) -> Value {
    let directory_id = &directory.directory_id;
    let entity_id = format!("{SIGNIN_HOST}/saml/sp/{directory_id}");
    let acs_url = format!("{SIGNIN_HOST}/saml/acs/{directory_id}");
    // Seed validation keeps directory ids to [a-z0-9-], so nothing here needs XML escaping.
    let metadata = format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="{entity}">"#,
            r#"<md:SPSSODescriptor AuthnRequestsSigned="false" WantAssertionsSigned="true" "#,
            r#"protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            r#"<md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>"#,
            r#"<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" "#,
            r#"Location="{acs}" index="0"/>"#,
            r#"</md:SPSSODescriptor></md:EntityDescriptor>"#
        ),
        entity = entity_id,
        acs = acs_url,
    );
    json!({
        "DirectoryId": directory_id,
        "EntityId": entity_id,
        "AcsUrl": acs_url,
        "EncodedMetadataDocument": BASE64.encode(metadata),
        "AuthnSignAlgo": "rsa-sha256",
        "CertificateType": "self-signed",
        "SupportEncryptedAssertion": false,
    })
}

/// GetUserId's ExternalId: the JSON object the current SDKs send (`{"Id":..,"Issuer":..}`), or the
/// flattened `ExternalId.Id` / `ExternalId.Issuer` of the RPC style.
fn external_id_param(params: &Params) -> Result<(String, String), ApiFault> {
    if let Some(raw) = params.get("ExternalId").filter(|v| !v.is_empty()) {
        let parsed: serde_json::Map<String, Value> = serde_json::from_str(raw).map_err(|_| {
            ApiFault::invalid(
                "ExternalId",
                "It must be a JSON object such as {\"Id\": \"...\", \"Issuer\": \"...\"}.",
            )
        })?;
        let field = |name: &str| {
            parsed
                .get(name)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| ApiFault::missing(&format!("ExternalId.{name}")))
        };
        return Ok((field("Id")?, field("Issuer")?));
    }
    let id = required(params, "ExternalId.Id")?.to_string();
    let issuer = required(params, "ExternalId.Issuer")?.to_string();
    Ok((id, issuer))
}

/// Runs one CloudSSO or IMS action against the state. The caller adds RequestId.
pub fn dispatch(
    seed: &mut Seed,
    version: &str,
    action: &str,
    params: &Params,
) -> Result<Value, ApiFault> {
    // The actions kept in files of their own answer first; None: not one of theirs.
    let answered = super::ram_login::dispatch(seed, version, action, params)
        .or_else(|| super::groups::dispatch(seed, version, action, params))
        .or_else(|| super::directory_admin::dispatch(seed, version, action, params));
    if let Some(answer) = answered {
        return answer;
    }
    match (version, action) {
        (CLOUDSSO_VERSION, "GetMFAAuthenticationSettingInfo") => {
            let directory = directory_mut(seed, params)?;
            let mut info = serde_json::Map::new();
            info.insert(
                "MfaAuthenticationAdvanceSettings".into(),
                json!(directory.mfa_authentication_settings),
            );
            // Documented: only shown under Byuser or OnlyRiskyLogin.
            if matches!(
                directory.mfa_authentication_settings.as_str(),
                "Byuser" | "OnlyRiskyLogin"
            ) && let Some(operation) = &directory.operation_for_risk_login
            {
                info.insert("OperationForRiskLogin".into(), json!(operation));
            }
            if let Some(types) = &directory.allowed_verification_types {
                info.insert("AllowedVerificationTypes".into(), json!(types));
            }
            Ok(json!({ "MFAAuthenticationSettingInfo": info }))
        }
        (CLOUDSSO_VERSION, "UpdateMFAAuthenticationSettings") => {
            let setting = required(params, "MFAAuthenticationSettings")?.to_string();
            if !["Enabled", "Byuser", "Disabled", "OnlyRiskyLogin"].contains(&setting.as_str()) {
                return Err(ApiFault::invalid(
                    "MFAAuthenticationSettings",
                    "Valid values: Enabled, Byuser, Disabled, OnlyRiskyLogin.",
                ));
            }
            let operation = params
                .get("OperationForRiskLogin")
                .filter(|v| !v.is_empty())
                .cloned();
            if let Some(operation) = &operation
                && !["Autonomous", "EnforceVerify"].contains(&operation.as_str())
            {
                return Err(ApiFault::invalid(
                    "OperationForRiskLogin",
                    "Valid values: Autonomous, EnforceVerify.",
                ));
            }
            let allowed = match params
                .get("AllowedVerificationTypes")
                .filter(|v| !v.is_empty())
            {
                Some(raw) => Some(parse_verification_types(raw)?),
                None => None,
            };
            let directory = directory_mut(seed, params)?;
            directory.mfa_authentication_settings = setting;
            if operation.is_some() {
                directory.operation_for_risk_login = operation;
            } else if directory.operation_for_risk_login.is_none()
                && matches!(
                    directory.mfa_authentication_settings.as_str(),
                    "Byuser" | "OnlyRiskyLogin"
                )
            {
                directory.operation_for_risk_login = Some("Autonomous".into());
            }
            if allowed.is_some() {
                directory.allowed_verification_types = allowed;
            }
            Ok(json!({}))
        }
        (CLOUDSSO_VERSION, "GetUserMFAAuthenticationSettings") => {
            let directory = directory_mut(seed, params)?;
            let user = user_mut(directory, params)?;
            Ok(json!({ "UserMFAAuthenticationSettings": user.user_mfa_authentication_settings }))
        }
        (CLOUDSSO_VERSION, "UpdateUserMFAAuthenticationSettings") => {
            let setting = required(params, "UserMFAAuthenticationSettings")?.to_string();
            if !["Enabled", "Disabled"].contains(&setting.as_str()) {
                return Err(ApiFault::invalid(
                    "UserMFAAuthenticationSettings",
                    "Valid values: Enabled, Disabled.",
                ));
            }
            let directory = directory_mut(seed, params)?;
            let user = user_mut(directory, params)?;
            user.user_mfa_authentication_settings = setting;
            Ok(json!({}))
        }
        (CLOUDSSO_VERSION, "ListMFADevicesForUser") => {
            let directory = directory_mut(seed, params)?;
            let user = user_mut(directory, params)?;
            let devices: Vec<Value> = user
                .mfa_devices
                .iter()
                .map(|device| {
                    let mut entry = json!({
                        "DeviceId": device.device_id,
                        "DeviceName": device.device_name,
                        "DeviceType": device.device_type,
                        "EffectiveTime": device.effective_time,
                        "UserId": user.user_id,
                    });
                    if let Some(last_use) = &device.last_use_time {
                        entry["LastUseTime"] = json!(last_use);
                    }
                    entry
                })
                .collect();
            Ok(json!({ "TotalCounts": devices.len(), "MFADevices": devices }))
        }
        (CLOUDSSO_VERSION, "ListUsers") => list_users(seed, params),
        (CLOUDSSO_VERSION, "GetUser") => {
            let directory = directory_mut(seed, params)?;
            let user = user_mut(directory, params)?;
            Ok(json!({ "User": user_detail_json(user) }))
        }
        (CLOUDSSO_VERSION, "GetUserId") => {
            let (id, issuer) = external_id_param(params)?;
            let directory = directory_mut(seed, params)?;
            let user = directory
                .users
                .iter()
                .find(|user| {
                    user.external_id
                        .as_ref()
                        .is_some_and(|external| external.id == id && external.issuer == issuer)
                })
                .ok_or_else(ApiFault::user_not_found)?;
            Ok(json!({ "UserId": user.user_id }))
        }
        (CLOUDSSO_VERSION, "GetDirectory") => {
            let directory = directory_mut(seed, params)?;
            Ok(json!({ "Directory": directory_json(directory) }))
        }
        (CLOUDSSO_VERSION, "GetDirectorySAMLServiceProviderInfo") => {
            let directory = directory_mut(seed, params)?;
            Ok(json!({ "SAMLServiceProvider": saml_service_provider_json(directory) }))
        }
        (CLOUDSSO_VERSION, "GetExternalSAMLIdentityProvider") => {
            // The seed configures no external IdP: SSO through SAML is off, its fields empty.
            let directory = directory_mut(seed, params)?;
            Ok(json!({ "SAMLIdentityProviderConfiguration": {
                "DirectoryId": directory.directory_id,
                "SSOStatus": "Disabled",
                "EntityId": "",
                "LoginUrl": "",
                "EncodedMetadataDocument": "",
                "CertificateIds": [],
                "BindingType": "",
                "WantRequestSigned": false,
                "CreateTime": "",
                "UpdateTime": "",
            }}))
        }
        (CLOUDSSO_VERSION, "GetPasswordPolicy") => {
            // The seed holds no password policy: a fixed one, with the documented example's values.
            directory_mut(seed, params)?;
            Ok(json!({ "PasswordPolicy": {
                "MinPasswordLength": 8,
                "MaxPasswordLength": 32,
                "MinPasswordDifferentChars": 0,
                "PasswordNotContainUsername": true,
                "MaxPasswordAge": 90,
                "PasswordReusePrevention": 1,
                "MaxLoginAttempts": 5,
                "HardExpire": false,
                "RequireNumbers": true,
                "RequireLowerCaseChars": true,
                "RequireUpperCaseChars": true,
                "RequireSymbols": true,
            }}))
        }
        (CLOUDSSO_VERSION, "GetLoginPreference") => {
            directory_mut(seed, params)?;
            Ok(json!({ "LoginPreference": {
                "AllowUserToGetCredentials": false,
                "LoginNetworkMasks": "",
            }}))
        }
        (CLOUDSSO_VERSION, "GetUserProvisioningConfiguration") => {
            let directory = directory_mut(seed, params)?;
            Ok(json!({ "UserProvisioningConfiguration": {
                "DirectoryId": directory.directory_id,
                "DefaultLandingPage": "",
                // Hours; CloudSSO's default.
                "SessionDuration": 6,
                "CreateTime": USER_CREATE_TIME,
                "UpdateTime": USER_CREATE_TIME,
            }}))
        }
        (CLOUDSSO_VERSION, "GetSCIMSynchronizationStatus") => {
            let directory = directory_mut(seed, params)?;
            // Only SCIM makes users with an external identity, so their presence means it is on.
            let status = if directory
                .users
                .iter()
                .any(|user| user.external_id.is_some())
            {
                "Enabled"
            } else {
                "Disabled"
            };
            Ok(json!({ "SCIMSynchronizationStatus": status }))
        }
        (CLOUDSSO_VERSION, "GetMFAAuthenticationStatus") => {
            // The older on/off view of the directory setting: on in every form but Disabled.
            let directory = directory_mut(seed, params)?;
            let status = if directory.mfa_authentication_settings == "Disabled" {
                "Disabled"
            } else {
                "Enabled"
            };
            Ok(json!({ "MFAAuthenticationStatus": status }))
        }
        (IMS_VERSION, "GetUserMFAInfo") => {
            let principal = required(params, "UserPrincipalName")?;
            let ram_user = seed
                .ram_users
                .iter()
                .find(|user| user.user_principal_name.eq_ignore_ascii_case(principal))
                .ok_or_else(|| {
                    ApiFault::new(
                        404,
                        "EntityNotExist.User",
                        format!("The user does not exist: {principal}"),
                    )
                })?;
            let mut answer = json!({ "IsMFAEnable": ram_user.mfa_device.is_some() });
            if let Some(device) = &ram_user.mfa_device {
                answer["MFADevice"] =
                    json!({ "SerialNumber": device.serial_number, "Type": device.device_type });
            }
            Ok(answer)
        }
        (CLOUDSSO_VERSION | IMS_VERSION | STS_VERSION, _) => Err(ApiFault::new(
            404,
            "InvalidAction.NotFound",
            format!(
                "Specified api is not found, please check your url and method. Action {action} of version {version}"
            ),
        )),
        _ => Err(ApiFault::new(
            400,
            "InvalidVersion",
            format!("Specified parameter Version is not valid: '{version}'."),
        )),
    }
}

fn parse_verification_types(raw: &str) -> Result<Vec<String>, ApiFault> {
    let types: Vec<String> = serde_json::from_str(raw).map_err(|_| {
        ApiFault::invalid(
            "AllowedVerificationTypes",
            "It must be a JSON array of strings, e.g. [\"TOTP\"].",
        )
    })?;
    if types
        .iter()
        .any(|kind| kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Err(ApiFault::invalid(
            "AllowedVerificationTypes",
            "Each type must be a non-empty word such as TOTP.",
        ));
    }
    Ok(types)
}

/// `UserName eq alice` / `UserName sw al` (attribute and operator case-insensitive), with
/// `attribute` the one name the action filters on; `(true, prefix)` for `sw`.
pub(super) fn parse_filter(raw: &str, attribute: &str) -> Result<(bool, String), ApiFault> {
    let bad = || {
        ApiFault::invalid(
            "Filter",
            &format!(
                "Format: <Attribute> <Operator> <Value>; Attribute {attribute}, Operator eq or sw."
            ),
        )
    };
    let mut parts = raw.trim().splitn(3, ' ');
    let (named, operator, value) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    if !named.eq_ignore_ascii_case(attribute) {
        return Err(bad());
    }
    let prefix = match operator.to_ascii_lowercase().as_str() {
        "eq" => false,
        "sw" => true,
        _ => return Err(bad()),
    };
    Ok((prefix, value.trim().trim_matches('"').to_string()))
}

/// Whether `name` passes a parsed filter (names compare without case, as the API documents).
pub(super) fn filter_matches(filter: Option<&(bool, String)>, name: &str) -> bool {
    match filter {
        None => true,
        Some((false, value)) => name.eq_ignore_ascii_case(value),
        Some((true, value)) => name
            .to_ascii_lowercase()
            .starts_with(&value.to_ascii_lowercase()),
    }
}

/// CloudSSO's paging parameters: MaxResults (1 to 100, default 10) and the offset a NextToken
/// this emulator sent stands for.
pub(super) fn paging(params: &Params) -> Result<(usize, usize), ApiFault> {
    let max_results = match params.get("MaxResults").filter(|v| !v.is_empty()) {
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiFault::invalid("MaxResults", "Valid values: 1 to 100."))?,
        None => 10,
    };
    let offset = match params.get("NextToken").filter(|v| !v.is_empty()) {
        Some(token) => token
            .strip_prefix("nt-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiFault::invalid("NextToken", "The token is not one this API returned.")
            })?,
        None => 0,
    };
    Ok((max_results, offset))
}

/// One page of `items` from `offset`, in CloudSSO's shape: `field` holds the page, with
/// IsTruncated, MaxResults, TotalCounts and, when more follow, NextToken.
pub(super) fn page_of(field: &str, items: Vec<Value>, max_results: usize, offset: usize) -> Value {
    page_with(field, &items, max_results, offset, Value::clone)
}

/// One page of `items`, only the page's items made JSON (`to_json`): a page of a directory of
/// 100,000 users costs its 100 users, not the 100,000.
pub(super) fn page_with<T>(
    field: &str,
    items: &[T],
    max_results: usize,
    offset: usize,
    to_json: impl Fn(&T) -> Value,
) -> Value {
    let total = items.len();
    let page: Vec<Value> = items
        .iter()
        .skip(offset)
        .take(max_results)
        .map(to_json)
        .collect();
    let truncated = offset + page.len() < total;
    let mut answer = json!({
        field: page,
        "IsTruncated": truncated,
        "MaxResults": max_results,
        "TotalCounts": total,
    });
    if truncated {
        answer["NextToken"] = json!(format!("nt-{}", offset + max_results));
    }
    answer
}

fn list_users(seed: &mut Seed, params: &Params) -> Result<Value, ApiFault> {
    let (max_results, offset) = paging(params)?;
    let filter = match params.get("Filter").filter(|v| !v.is_empty()) {
        Some(raw) => Some(parse_filter(raw, "UserName")?),
        None => None,
    };
    if let Some(status) = params.get("Status").filter(|v| !v.is_empty())
        && !["Enabled", "Disabled"].contains(&status.as_str())
    {
        return Err(ApiFault::invalid(
            "Status",
            "Valid values: Enabled, Disabled.",
        ));
    }
    let provision = params.get("ProvisionType").filter(|v| !v.is_empty());
    if let Some(provision) = provision
        && !["Manual", "Synchronized"].contains(&provision.as_str())
    {
        return Err(ApiFault::invalid(
            "ProvisionType",
            "Valid values: Manual, Synchronized.",
        ));
    }
    let only_disabled = params.get("Status").is_some_and(|s| s == "Disabled");
    let directory = directory_mut(seed, params)?;
    let matching: Vec<&SeedUser> = directory
        .users
        .iter()
        // Every seeded user is Enabled.
        .filter(|_| !only_disabled)
        .filter(|user| provision.is_none_or(|wanted| wanted == provision_type(user)))
        .filter(|user| filter_matches(filter.as_ref(), &user.user_name))
        .collect();
    Ok(page_with("Users", &matching, max_results, offset, |user| {
        user_json(user)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        Seed::parse(
            r#"{"directories": [{"directoryId": "d-1", "mfaAuthenticationSettings": "Enabled",
                "users": [
                  {"userId": "u-1", "userName": "alice", "userMfaAuthenticationSettings": "Enabled"},
                  {"userId": "u-2", "userName": "alan", "userMfaAuthenticationSettings": "Disabled"},
                  {"userId": "u-3", "userName": "bob", "userMfaAuthenticationSettings": "Enabled",
                   "externalId": {"id": "ext-bob", "issuer": "https://idp.example.com"}}]}],
                "ramUsers": [{"userPrincipalName": "carol@x.onaliyun.com"}]}"#,
            "test",
        )
        .unwrap()
    }

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A CloudSSO action that must succeed; its answer.
    fn cloudsso(seed: &mut Seed, action: &str, pairs: &[(&str, &str)]) -> Value {
        dispatch(seed, CLOUDSSO_VERSION, action, &p(pairs)).unwrap()
    }

    #[test]
    fn list_users_filters_and_pages() {
        let mut seed = seed();
        let page = cloudsso(
            &mut seed,
            "ListUsers",
            &[
                ("DirectoryId", "d-1"),
                ("Filter", "UserName sw al"),
                ("MaxResults", "1"),
            ],
        );
        assert_eq!(page["Users"][0]["UserName"], "alice");
        assert_eq!(page["IsTruncated"], true);
        assert_eq!(page["TotalCounts"], 2);
        let token = page["NextToken"].as_str().unwrap().to_string();
        let next = cloudsso(
            &mut seed,
            "ListUsers",
            &[
                ("DirectoryId", "d-1"),
                ("Filter", "UserName sw al"),
                ("MaxResults", "1"),
                ("NextToken", &token),
            ],
        );
        assert_eq!(next["Users"][0]["UserName"], "alan");
        assert_eq!(next["IsTruncated"], false);
        let exact = cloudsso(
            &mut seed,
            "ListUsers",
            &[("DirectoryId", "d-1"), ("Filter", "username EQ bob")],
        );
        assert_eq!(exact["Users"].as_array().unwrap().len(), 1);
        let bad = dispatch(
            &mut seed,
            CLOUDSSO_VERSION,
            "ListUsers",
            &p(&[("DirectoryId", "d-1"), ("MaxResults", "101")]),
        )
        .unwrap_err();
        assert_eq!(bad.code, "InvalidParameter.MaxResults");
    }

    #[test]
    fn risk_login_operation_is_shown_only_where_documented() {
        let mut seed = seed();
        cloudsso(
            &mut seed,
            "UpdateMFAAuthenticationSettings",
            &[
                ("DirectoryId", "d-1"),
                ("MFAAuthenticationSettings", "OnlyRiskyLogin"),
                ("OperationForRiskLogin", "EnforceVerify"),
                ("AllowedVerificationTypes", "[\"TOTP\"]"),
            ],
        );
        let info = cloudsso(
            &mut seed,
            "GetMFAAuthenticationSettingInfo",
            &[("DirectoryId", "d-1")],
        );
        assert_eq!(
            info["MFAAuthenticationSettingInfo"]["OperationForRiskLogin"],
            "EnforceVerify"
        );
        assert_eq!(
            info["MFAAuthenticationSettingInfo"]["AllowedVerificationTypes"][0],
            "TOTP"
        );
        cloudsso(
            &mut seed,
            "UpdateMFAAuthenticationSettings",
            &[
                ("DirectoryId", "d-1"),
                ("MFAAuthenticationSettings", "Enabled"),
            ],
        );
        let info = cloudsso(
            &mut seed,
            "GetMFAAuthenticationSettingInfo",
            &[("DirectoryId", "d-1")],
        );
        assert!(
            info["MFAAuthenticationSettingInfo"]
                .get("OperationForRiskLogin")
                .is_none()
        );
    }

    #[test]
    fn get_user_id_finds_the_external_identity_in_both_styles() {
        let mut seed = seed();
        for style in [
            p(&[
                ("DirectoryId", "d-1"),
                (
                    "ExternalId",
                    r#"{"Id": "ext-bob", "Issuer": "https://idp.example.com"}"#,
                ),
            ]),
            p(&[
                ("DirectoryId", "d-1"),
                ("ExternalId.Id", "ext-bob"),
                ("ExternalId.Issuer", "https://idp.example.com"),
            ]),
        ] {
            let found = dispatch(&mut seed, CLOUDSSO_VERSION, "GetUserId", &style).unwrap();
            assert_eq!(found["UserId"], "u-3");
        }
        let bob = cloudsso(
            &mut seed,
            "GetUser",
            &[("DirectoryId", "d-1"), ("UserId", "u-3")],
        );
        assert_eq!(bob["User"]["ProvisionType"], "Synchronized");
        assert_eq!(bob["User"]["ExternalId"]["Id"], "ext-bob");
        let synchronized = cloudsso(
            &mut seed,
            "ListUsers",
            &[("DirectoryId", "d-1"), ("ProvisionType", "Synchronized")],
        );
        assert_eq!(synchronized["TotalCounts"], 1);
        let status = cloudsso(
            &mut seed,
            "GetSCIMSynchronizationStatus",
            &[("DirectoryId", "d-1")],
        );
        assert_eq!(status["SCIMSynchronizationStatus"], "Enabled");
    }

    #[test]
    fn the_service_provider_metadata_names_the_directory() {
        let mut seed = seed();
        let info = cloudsso(
            &mut seed,
            "GetDirectorySAMLServiceProviderInfo",
            &[("DirectoryId", "d-1")],
        );
        let provider = &info["SAMLServiceProvider"];
        assert_eq!(
            provider["EntityId"],
            "https://signin-cn-shanghai.alibabacloudsso.com/saml/sp/d-1"
        );
        let metadata = BASE64
            .decode(provider["EncodedMetadataDocument"].as_str().unwrap())
            .unwrap();
        let metadata = String::from_utf8(metadata).unwrap();
        assert!(
            metadata.contains(
                r#"entityID="https://signin-cn-shanghai.alibabacloudsso.com/saml/sp/d-1""#
            )
        );
        assert!(metadata.contains(provider["AcsUrl"].as_str().unwrap()));
    }

    #[test]
    fn mfa_status_is_the_on_off_view_of_the_setting() {
        let mut seed = seed();
        let status = |seed: &mut Seed| {
            dispatch(
                seed,
                CLOUDSSO_VERSION,
                "GetMFAAuthenticationStatus",
                &p(&[("DirectoryId", "d-1")]),
            )
            .unwrap()["MFAAuthenticationStatus"]
                .clone()
        };
        assert_eq!(status(&mut seed), "Enabled");
        seed.directories[0].mfa_authentication_settings = "Disabled".into();
        assert_eq!(status(&mut seed), "Disabled");
        seed.directories[0].mfa_authentication_settings = "OnlyRiskyLogin".into();
        assert_eq!(status(&mut seed), "Enabled");
    }

    #[test]
    fn unknown_things_get_the_real_codes() {
        let mut seed = seed();
        let cases = [
            (
                CLOUDSSO_VERSION,
                "GetUser",
                p(&[("DirectoryId", "d-9"), ("UserId", "u-1")]),
                404,
                "EntityNotExists.Directory",
            ),
            (
                CLOUDSSO_VERSION,
                "GetUser",
                p(&[("DirectoryId", "d-1"), ("UserId", "u-9")]),
                404,
                "EntityNotExists.User",
            ),
            (
                CLOUDSSO_VERSION,
                "GetUser",
                p(&[("DirectoryId", "d-1")]),
                400,
                "MissingParameter",
            ),
            (
                CLOUDSSO_VERSION,
                "UpdateUserMFAAuthenticationSettings",
                p(&[
                    ("DirectoryId", "d-1"),
                    ("UserId", "u-1"),
                    ("UserMFAAuthenticationSettings", "On"),
                ]),
                400,
                "InvalidParameter.UserMFAAuthenticationSettings",
            ),
            (
                IMS_VERSION,
                "GetUserMFAInfo",
                p(&[("UserPrincipalName", "nobody@x")]),
                404,
                "EntityNotExist.User",
            ),
            (
                CLOUDSSO_VERSION,
                "DeleteDirectory",
                p(&[]),
                404,
                "InvalidAction.NotFound",
            ),
            (
                CLOUDSSO_VERSION,
                "GetDirectorySAMLServiceProviderInfo",
                p(&[("DirectoryId", "d-9")]),
                404,
                "EntityNotExists.Directory",
            ),
            (
                CLOUDSSO_VERSION,
                "GetUserId",
                p(&[
                    ("DirectoryId", "d-1"),
                    ("ExternalId", r#"{"Id": "x", "Issuer": "y"}"#),
                ]),
                404,
                "EntityNotExists.User",
            ),
            (
                CLOUDSSO_VERSION,
                "GetUserId",
                p(&[("DirectoryId", "d-1"), ("ExternalId", "not json")]),
                400,
                "InvalidParameter.ExternalId",
            ),
            (
                CLOUDSSO_VERSION,
                "GetUserId",
                p(&[("DirectoryId", "d-1"), ("ExternalId.Id", "x")]),
                400,
                "MissingParameter",
            ),
            (
                CLOUDSSO_VERSION,
                "ListUsers",
                p(&[("DirectoryId", "d-1"), ("ProvisionType", "Imported")]),
                400,
                "InvalidParameter.ProvisionType",
            ),
        ];
        for action in [
            "GetDirectory",
            "GetExternalSAMLIdentityProvider",
            "GetPasswordPolicy",
            "GetLoginPreference",
            "GetUserProvisioningConfiguration",
            "GetSCIMSynchronizationStatus",
            "GetMFAAuthenticationStatus",
        ] {
            let missing = dispatch(
                &mut seed,
                CLOUDSSO_VERSION,
                action,
                &p(&[("DirectoryId", "d-9")]),
            )
            .unwrap_err();
            assert_eq!(
                (missing.status, missing.code.as_str()),
                (404, "EntityNotExists.Directory"),
                "{action}"
            );
        }
        for (version, action, params, status, code) in cases {
            let fault = dispatch(&mut seed, version, action, &params).unwrap_err();
            assert_eq!(
                (fault.status, fault.code.as_str()),
                (status, code),
                "{action}"
            );
        }
        let info = dispatch(
            &mut seed,
            IMS_VERSION,
            "GetUserMFAInfo",
            &p(&[("UserPrincipalName", "carol@x.onaliyun.com")]),
        )
        .unwrap();
        assert_eq!(info["IsMFAEnable"], false);
        assert!(info.get("MFADevice").is_none());
    }
}
