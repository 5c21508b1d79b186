//! RAM (IMS 2019-08-15) console logon: the account's security preference
//! (Get/SetSecurityPreference), each RAM user's login profile (Get/UpdateLoginProfile), the user
//! list (ListUsers, Marker paging) and the root account's MFA (GetAccountMFAInfo), with the
//! official SDK's field names (alibabacloud_ims20190815 models) and RAM's documented error codes.

use serde_json::{Value, json};

use super::api::{ApiFault, IMS_VERSION, Params, USER_CREATE_TIME, required};
use super::seed::{
    DEFAULT_ACCOUNT_ID, LOGIN_PROFILE_STATUSES, LOGIN_SESSION_HOURS, MAX_IDLE_DAYS,
    MFA_OPERATIONS_FOR_LOGIN, RAM_RISK_LOGIN_OPERATIONS, Seed, SeedRamSecurityPreference,
    SeedRamUser,
};
use super::server::ram_user_id;

/// IMS ListUsers' largest (and default) page.
const MAX_ITEMS: usize = 1000;

/// Answers the IMS actions this file serves; None for any other.
pub fn dispatch(
    seed: &mut Seed,
    version: &str,
    action: &str,
    params: &Params,
) -> Option<Result<Value, ApiFault>> {
    if version != IMS_VERSION {
        return None;
    }
    Some(match action {
        "GetSecurityPreference" => Ok(preference_answer(&seed.security_preference())),
        "SetSecurityPreference" => set_security_preference(seed, params),
        "GetLoginProfile" => login_profile_of(seed, params).map(|user| login_profile_answer(user)),
        "UpdateLoginProfile" => update_login_profile(seed, params),
        "ListUsers" => list_users(seed, params),
        "GetAccountMFAInfo" => Ok(json!({ "IsMFAEnable": seed.account_mfa_enabled })),
        _ => return None,
    })
}

/// `true`/`false` (any case) as the SDKs send a boolean; None when the parameter is absent.
fn bool_param(params: &Params, name: &str) -> Result<Option<bool>, ApiFault> {
    match params.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(raw) if raw.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(raw) if raw.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ApiFault::invalid(name, "Valid values: true, false.")),
    }
}

fn one_of_param(params: &Params, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiFault> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) if allowed.contains(&value.as_str()) => Ok(Some(value.clone())),
        Some(_) => Err(ApiFault::invalid(
            name,
            &format!("Valid values: {}.", allowed.join(", ")),
        )),
    }
}

fn number_param(
    params: &Params,
    name: &str,
    valid: impl Fn(u32) -> bool,
    detail: &str,
) -> Result<Option<u32>, ApiFault> {
    match params.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| valid(*n))
            .map(Some)
            .ok_or_else(|| ApiFault::invalid(name, detail)),
    }
}

/// The SecurityPreference object of Get/SetSecurityPreference, the unset fields at their
/// documented defaults.
fn preference_answer(preference: &SeedRamSecurityPreference) -> Value {
    json!({ "SecurityPreference": {
        "LoginProfilePreference": {
            "AllowUserToChangePassword": preference.allow_user_to_change_password.unwrap_or(true),
            "AllowUserToLoginWithPasskey":
                preference.allow_user_to_login_with_passkey.unwrap_or(true),
            "EnableSaveMFATicket": preference.enable_save_mfa_ticket,
            "LoginNetworkMasks": preference.login_network_masks.clone().unwrap_or_default(),
            "LoginSessionDuration": preference.login_session_duration.unwrap_or(6),
            "MFAOperationForLogin": preference.mfa_operation_for_login,
            "OperationForRiskLogin": preference.operation_for_risk_login,
            // The older boolean that MFAOperationForLogin replaced; still answered.
            "EnforceMFAForLogin": preference.mfa_operation_for_login == "mandatory",
        },
        "MFAPreference": {
            "AllowUserToManageMFADevices": preference.allow_user_to_manage_mfa_devices,
        },
        "AccessKeyPreference": {
            "AllowUserToManageAccessKeys":
                preference.allow_user_to_manage_access_keys.unwrap_or(false),
            "AllowUserToManageServiceCredentials":
                preference.allow_user_to_manage_service_credentials.unwrap_or(false),
        },
        "MaxIdleDays": {
            "MaxIdleDaysForAccessKeys": preference.max_idle_days_for_access_keys.unwrap_or(730),
            "MaxIdleDaysForUsers": preference.max_idle_days_for_users.unwrap_or(730),
        },
        "PersonalInfoPreference": {
            "AllowUserToManagePersonalDingTalk":
                preference.allow_user_to_manage_personal_ding_talk.unwrap_or(true),
        },
        "VerificationPreference": {
            "VerificationTypes": preference.verification_types.clone().unwrap_or_default(),
        },
    }})
}

/// Writes only the parameters the call carries; every one is checked before any is written.
fn set_security_preference(seed: &mut Seed, params: &Params) -> Result<Value, ApiFault> {
    let mut operation = one_of_param(params, "MFAOperationForLogin", &MFA_OPERATIONS_FOR_LOGIN)?;
    // EnforceMFAForLogin is the boolean MFAOperationForLogin replaced: true is mandatory.
    if operation.is_none()
        && let Some(enforce) = bool_param(params, "EnforceMFAForLogin")?
    {
        operation = Some(if enforce { "mandatory" } else { "independent" }.to_string());
    }
    let risk = one_of_param(params, "OperationForRiskLogin", &RAM_RISK_LOGIN_OPERATIONS)?;
    let flag = |name: &str| bool_param(params, name);
    let save_ticket = flag("EnableSaveMFATicket")?;
    let manage_devices = flag("AllowUserToManageMFADevices")?;
    let change_password = flag("AllowUserToChangePassword")?;
    let passkey = flag("AllowUserToLoginWithPasskey")?;
    let manage_keys = flag("AllowUserToManageAccessKeys")?;
    let ding_talk = flag("AllowUserToManagePersonalDingTalk")?;
    let service_credentials = flag("AllowUserToManageServiceCredentials")?;
    let session = number_param(
        params,
        "LoginSessionDuration",
        |hours| LOGIN_SESSION_HOURS.contains(&hours),
        "Valid values: 1 to 24 (hours).",
    )?;
    let idle = |name: &str| {
        number_param(
            params,
            name,
            |days| MAX_IDLE_DAYS.contains(&days),
            "Valid values: 90, 180, 365, 730.",
        )
    };
    let idle_keys = idle("MaxIdleDaysForAccessKeys")?;
    let idle_users = idle("MaxIdleDaysForUsers")?;
    let masks = params.get("LoginNetworkMasks").cloned();
    let verification = match params.get("VerificationTypes").filter(|v| !v.is_empty()) {
        Some(raw) => Some(serde_json::from_str::<Vec<String>>(raw).map_err(|_| {
            ApiFault::invalid(
                "VerificationTypes",
                "It must be a JSON array of strings, e.g. [\"sms\",\"email\"].",
            )
        })?),
        None => None,
    };

    let preference = seed
        .ram_security_preference
        .get_or_insert_with(Default::default);
    if let Some(operation) = operation {
        preference.mfa_operation_for_login = operation;
    }
    if let Some(risk) = risk {
        preference.operation_for_risk_login = risk;
    }
    if let Some(save_ticket) = save_ticket {
        preference.enable_save_mfa_ticket = save_ticket;
    }
    if let Some(manage_devices) = manage_devices {
        preference.allow_user_to_manage_mfa_devices = manage_devices;
    }
    for (value, field) in [
        (
            change_password,
            &mut preference.allow_user_to_change_password,
        ),
        (passkey, &mut preference.allow_user_to_login_with_passkey),
        (
            manage_keys,
            &mut preference.allow_user_to_manage_access_keys,
        ),
        (
            ding_talk,
            &mut preference.allow_user_to_manage_personal_ding_talk,
        ),
        (
            service_credentials,
            &mut preference.allow_user_to_manage_service_credentials,
        ),
    ] {
        if value.is_some() {
            *field = value;
        }
    }
    for (value, field) in [
        (session, &mut preference.login_session_duration),
        (idle_keys, &mut preference.max_idle_days_for_access_keys),
        (idle_users, &mut preference.max_idle_days_for_users),
    ] {
        if value.is_some() {
            *field = value;
        }
    }
    if masks.is_some() {
        preference.login_network_masks = masks;
    }
    if verification.is_some() {
        preference.verification_types = verification;
    }
    Ok(preference_answer(preference))
}

fn no_such_user(principal: &str) -> ApiFault {
    ApiFault::new(
        404,
        "EntityNotExist.User",
        format!("The user does not exist: {principal}"),
    )
}

/// The RAM user the call names and its login profile; RAM's two 404s when either is missing.
fn login_profile_of<'a>(
    seed: &'a mut Seed,
    params: &Params,
) -> Result<&'a mut SeedRamUser, ApiFault> {
    let principal = required(params, "UserPrincipalName")?;
    let user = seed
        .ram_users
        .iter_mut()
        .find(|user| user.user_principal_name.eq_ignore_ascii_case(principal))
        .ok_or_else(|| no_such_user(principal))?;
    if user.login_profile.is_none() {
        return Err(ApiFault::new(
            404,
            "EntityNotExist.User.LoginProfile",
            "The user login profile does not exist.",
        ));
    }
    Ok(user)
}

fn login_profile_answer(user: &SeedRamUser) -> Value {
    let profile = user.login_profile.clone().unwrap_or_default();
    json!({ "LoginProfile": {
        "UserPrincipalName": user.user_principal_name,
        "MFABindRequired": profile.mfa_bind_required,
        "PasswordResetRequired": profile.password_reset_required,
        "Status": profile.status.unwrap_or_else(|| "Active".into()),
        "PasswordStatus": "NotInitial",
        "AutoDisableLoginStatus": "Enabled",
        "LastLoginTime": "",
        "UpdateDate": USER_CREATE_TIME,
    }})
}

fn update_login_profile(seed: &mut Seed, params: &Params) -> Result<Value, ApiFault> {
    let mfa_bind_required = bool_param(params, "MFABindRequired")?;
    let password_reset_required = bool_param(params, "PasswordResetRequired")?;
    let status = one_of_param(params, "Status", &LOGIN_PROFILE_STATUSES)?;
    // A new Password is accepted and not kept: the emulator signs no one in.
    let user = login_profile_of(seed, params)?;
    if let Some(profile) = user.login_profile.as_mut() {
        if let Some(required) = mfa_bind_required {
            profile.mfa_bind_required = required;
        }
        if let Some(required) = password_reset_required {
            profile.password_reset_required = required;
        }
        if status.is_some() {
            profile.status = status;
        }
    }
    Ok(login_profile_answer(user))
}

/// IMS ListUsers: `Users.User[]`, MaxItems (1 to 1000, default 1000) and Marker paging.
fn list_users(seed: &Seed, params: &Params) -> Result<Value, ApiFault> {
    let max_items = match params.get("MaxItems").filter(|v| !v.is_empty()) {
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_ITEMS).contains(n))
            .ok_or_else(|| ApiFault::invalid("MaxItems", "Valid values: 1 to 1000."))?,
        None => MAX_ITEMS,
    };
    let offset = match params.get("Marker").filter(|v| !v.is_empty()) {
        Some(marker) => marker
            .strip_prefix("mk-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiFault::invalid("Marker", "The marker is not one this API returned.")
            })?,
        None => 0,
    };
    let users: Vec<Value> = seed
        .ram_users
        .iter()
        .skip(offset)
        .take(max_items)
        .map(ram_user_json)
        .collect();
    let truncated = offset + users.len() < seed.ram_users.len();
    let mut answer = json!({ "Users": { "User": users }, "IsTruncated": truncated });
    if truncated {
        answer["Marker"] = json!(format!("mk-{}", offset + max_items));
    }
    Ok(answer)
}

fn ram_user_json(user: &SeedRamUser) -> Value {
    let principal = &user.user_principal_name;
    let name = principal.split('@').next().unwrap_or(principal);
    json!({
        "UserPrincipalName": principal,
        "UserId": ram_user_id(DEFAULT_ACCOUNT_ID, name),
        "DisplayName": name,
        "Email": "",
        "MobilePhone": "",
        "Comments": "",
        "ProvisionType": "Manual",
        "Status": "active",
        "CreateDate": USER_CREATE_TIME,
        "UpdateDate": USER_CREATE_TIME,
        "LastLoginDate": "",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        Seed::parse(
            r#"{"ramUsers": [
                {"userPrincipalName": "bob@x.onaliyun.com", "loginProfile": {}},
                {"userPrincipalName": "carol@x.onaliyun.com"},
                {"userPrincipalName": "dave@x.onaliyun.com", "loginProfile": {"mfaBindRequired": true}}]}"#,
            "test",
        )
        .unwrap()
    }

    fn call(seed: &mut Seed, action: &str, pairs: &[(&str, &str)]) -> Result<Value, ApiFault> {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        dispatch(seed, IMS_VERSION, action, &params).expect("an action of this file")
    }

    #[test]
    fn set_writes_only_what_it_is_given() {
        let mut seed = seed();
        let before = call(&mut seed, "GetSecurityPreference", &[]).unwrap();
        let login = &before["SecurityPreference"]["LoginProfilePreference"];
        assert_eq!(login["MFAOperationForLogin"], "independent");
        assert_eq!(login["OperationForRiskLogin"], "autonomous");
        assert_eq!(login["EnableSaveMFATicket"], false);
        assert_eq!(
            before["SecurityPreference"]["MFAPreference"]["AllowUserToManageMFADevices"],
            true
        );
        let after = call(
            &mut seed,
            "SetSecurityPreference",
            &[
                ("MFAOperationForLogin", "mandatory"),
                ("LoginSessionDuration", "12"),
            ],
        )
        .unwrap();
        let login = &after["SecurityPreference"]["LoginProfilePreference"];
        assert_eq!(login["MFAOperationForLogin"], "mandatory");
        assert_eq!(login["EnforceMFAForLogin"], true);
        assert_eq!(login["LoginSessionDuration"], 12);
        assert_eq!(login["OperationForRiskLogin"], "autonomous");
        assert_eq!(
            call(&mut seed, "GetSecurityPreference", &[]).unwrap(),
            after
        );
        // The older boolean still works, and a bad value writes nothing.
        call(
            &mut seed,
            "SetSecurityPreference",
            &[("EnforceMFAForLogin", "false")],
        )
        .unwrap();
        let fault = call(
            &mut seed,
            "SetSecurityPreference",
            &[
                ("EnableSaveMFATicket", "true"),
                ("MFAOperationForLogin", "always"),
            ],
        )
        .unwrap_err();
        assert_eq!(
            (fault.status, fault.code.as_str()),
            (400, "InvalidParameter.MFAOperationForLogin")
        );
        let preference = seed.security_preference();
        assert_eq!(preference.mfa_operation_for_login, "independent");
        assert!(!preference.enable_save_mfa_ticket);
    }

    #[test]
    fn login_profiles_and_their_two_404s() {
        let mut seed = seed();
        let dave = call(
            &mut seed,
            "GetLoginProfile",
            &[("UserPrincipalName", "DAVE@x.onaliyun.com")],
        )
        .unwrap();
        assert_eq!(dave["LoginProfile"]["MFABindRequired"], true);
        assert_eq!(
            dave["LoginProfile"]["UserPrincipalName"],
            "dave@x.onaliyun.com"
        );
        let updated = call(
            &mut seed,
            "UpdateLoginProfile",
            &[
                ("UserPrincipalName", "bob@x.onaliyun.com"),
                ("MFABindRequired", "true"),
            ],
        )
        .unwrap();
        assert_eq!(updated["LoginProfile"]["MFABindRequired"], true);
        assert_eq!(updated["LoginProfile"]["PasswordResetRequired"], false);
        for (action, principal, code) in [
            (
                "GetLoginProfile",
                "carol@x.onaliyun.com",
                "EntityNotExist.User.LoginProfile",
            ),
            (
                "UpdateLoginProfile",
                "carol@x.onaliyun.com",
                "EntityNotExist.User.LoginProfile",
            ),
            (
                "GetLoginProfile",
                "nobody@x.onaliyun.com",
                "EntityNotExist.User",
            ),
            (
                "UpdateLoginProfile",
                "nobody@x.onaliyun.com",
                "EntityNotExist.User",
            ),
        ] {
            let fault = call(&mut seed, action, &[("UserPrincipalName", principal)]).unwrap_err();
            assert_eq!(
                (fault.status, fault.code.as_str()),
                (404, code),
                "{action} {principal}"
            );
        }
        let fault = call(
            &mut seed,
            "UpdateLoginProfile",
            &[
                ("UserPrincipalName", "bob@x.onaliyun.com"),
                ("MFABindRequired", "maybe"),
            ],
        )
        .unwrap_err();
        assert_eq!(fault.code, "InvalidParameter.MFABindRequired");
        assert_eq!(
            call(&mut seed, "GetLoginProfile", &[]).unwrap_err().code,
            "MissingParameter"
        );
    }

    #[test]
    fn list_users_pages_with_a_marker() {
        let mut seed = seed();
        let first = call(&mut seed, "ListUsers", &[("MaxItems", "2")]).unwrap();
        assert_eq!(first["IsTruncated"], true);
        assert_eq!(
            first["Users"]["User"][1]["UserPrincipalName"],
            "carol@x.onaliyun.com"
        );
        let marker = first["Marker"].as_str().unwrap().to_string();
        let rest = call(&mut seed, "ListUsers", &[("Marker", &marker)]).unwrap();
        assert_eq!(rest["IsTruncated"], false);
        assert!(rest.get("Marker").is_none());
        assert_eq!(rest["Users"]["User"][0]["DisplayName"], "dave");
        let id = rest["Users"]["User"][0]["UserId"].as_str().unwrap();
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit()),
            "{id}"
        );
        for (name, value) in [("MaxItems", "1001"), ("Marker", "elsewhere")] {
            let fault = call(&mut seed, "ListUsers", &[(name, value)]).unwrap_err();
            assert_eq!(fault.code, format!("InvalidParameter.{name}"));
        }
        assert_eq!(
            call(&mut seed, "GetAccountMFAInfo", &[]).unwrap()["IsMFAEnable"],
            false
        );
    }
}
