//! CloudSSO (2021-05-15) administration calls the operator does not make but the alicloud
//! Terraform provider (v1.286) does on the same directories and users: SetMFAAuthenticationStatus
//! (the older directory-wide on/off MFA switch), UpdateUser (display name, email, names,
//! description) and GetDirectoryGlobalAccessStatus.

use serde_json::{Value, json};

use super::api::{
    ApiFault, CLOUDSSO_VERSION, Params, directory_mut, required, user_detail_json, user_mut,
};
use super::seed::Seed;

/// Answers the calls of this file; None for any other.
pub fn dispatch(
    seed: &mut Seed,
    version: &str,
    action: &str,
    params: &Params,
) -> Option<Result<Value, ApiFault>> {
    if version != CLOUDSSO_VERSION {
        return None;
    }
    Some(match action {
        "SetMFAAuthenticationStatus" => set_mfa_status(seed, params),
        "UpdateUser" => update_user(seed, params),
        "GetDirectoryGlobalAccessStatus" => {
            directory_mut(seed, params).map(|_| {
                // The seed holds no global-access switch: off, as for a directory never changed.
                // The field is `status`, lower case, as the provider reads it
                // (`$.GlobalAccessStatus.status`).
                json!({ "GlobalAccessStatus": { "status": "Disabled" } })
            })
        }
        _ => return None,
    })
}

/// The on/off switch as a view of the setting that replaced it (GetMFAAuthenticationStatus is
/// on in every form but Disabled): `Disabled` sets Disabled; `Enabled` turns a Disabled
/// directory to Enabled (MFA for every user) and leaves a setting that is already on as it is,
/// so that writing back the status one read changes nothing.
fn set_mfa_status(seed: &mut Seed, params: &Params) -> Result<Value, ApiFault> {
    let status = required(params, "MFAAuthenticationStatus")?;
    if !["Enabled", "Disabled"].contains(&status) {
        return Err(ApiFault::invalid(
            "MFAAuthenticationStatus",
            "Valid values: Enabled, Disabled.",
        ));
    }
    let enable = status == "Enabled";
    let directory = directory_mut(seed, params)?;
    if !enable {
        directory.mfa_authentication_settings = "Disabled".into();
    } else if directory.mfa_authentication_settings == "Disabled" {
        directory.mfa_authentication_settings = "Enabled".into();
    }
    Ok(json!({}))
}

/// The longest display name, description and names CloudSSO takes (its console's limits).
const MAX_DISPLAY_NAME: usize = 256;
const MAX_DESCRIPTION: usize = 1024;
const MAX_NAME: usize = 64;

fn update_user(seed: &mut Seed, params: &Params) -> Result<Value, ApiFault> {
    let given = |name: &str, limit: usize| -> Result<Option<String>, ApiFault> {
        match params.get(name) {
            None => Ok(None),
            Some(value) if value.chars().count() > limit => Err(ApiFault::invalid(
                name,
                &format!("It must be at most {limit} characters."),
            )),
            Some(value) => Ok(Some(value.clone())),
        }
    };
    let display_name = given("NewDisplayName", MAX_DISPLAY_NAME)?;
    let email = given("NewEmail", MAX_DISPLAY_NAME)?;
    if let Some(email) = email.as_deref().filter(|e| !e.is_empty())
        && !email.contains('@')
    {
        return Err(ApiFault::invalid(
            "NewEmail",
            "It must be an email address.",
        ));
    }
    let description = given("NewDescription", MAX_DESCRIPTION)?;
    let first_name = given("NewFirstName", MAX_NAME)?;
    let last_name = given("NewLastName", MAX_NAME)?;
    let directory = directory_mut(seed, params)?;
    let user = user_mut(directory, params)?;
    for (value, field) in [
        (display_name, &mut user.display_name),
        (email, &mut user.email),
        (description, &mut user.description),
        (first_name, &mut user.first_name),
        (last_name, &mut user.last_name),
    ] {
        if value.is_some() {
            *field = value;
        }
    }
    Ok(json!({ "User": user_detail_json(user) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::api::dispatch as api_dispatch;

    fn seed(setting: &str) -> Seed {
        Seed::parse(
            &format!(
                r#"{{"directories": [{{"directoryId": "d-1", "mfaAuthenticationSettings": "{setting}",
                    "users": [{{"userId": "u-1", "userName": "alice",
                                "userMfaAuthenticationSettings": "Enabled"}}]}}]}}"#
            ),
            "test",
        )
        .unwrap()
    }

    fn call(seed: &mut Seed, action: &str, pairs: &[(&str, &str)]) -> Result<Value, ApiFault> {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        api_dispatch(seed, CLOUDSSO_VERSION, action, &params)
    }

    fn setting(seed: &mut Seed) -> String {
        call(
            seed,
            "GetMFAAuthenticationSettingInfo",
            &[("DirectoryId", "d-1")],
        )
        .unwrap()["MFAAuthenticationSettingInfo"]["MfaAuthenticationAdvanceSettings"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn the_old_switch_moves_the_setting_only_across_on_and_off() {
        let mut seed = seed("Byuser");
        let set = |seed: &mut Seed, status: &str| {
            call(
                seed,
                "SetMFAAuthenticationStatus",
                &[("DirectoryId", "d-1"), ("MFAAuthenticationStatus", status)],
            )
        };
        set(&mut seed, "Enabled").unwrap();
        assert_eq!(setting(&mut seed), "Byuser", "already on: unchanged");
        set(&mut seed, "Disabled").unwrap();
        assert_eq!(setting(&mut seed), "Disabled");
        let status = call(
            &mut seed,
            "GetMFAAuthenticationStatus",
            &[("DirectoryId", "d-1")],
        )
        .unwrap();
        assert_eq!(status["MFAAuthenticationStatus"], "Disabled");
        set(&mut seed, "Enabled").unwrap();
        assert_eq!(setting(&mut seed), "Enabled");
        let fault = set(&mut seed, "On").unwrap_err();
        assert_eq!(fault.code, "InvalidParameter.MFAAuthenticationStatus");
        let fault = call(
            &mut seed,
            "SetMFAAuthenticationStatus",
            &[
                ("DirectoryId", "d-9"),
                ("MFAAuthenticationStatus", "Enabled"),
            ],
        )
        .unwrap_err();
        assert_eq!(
            (fault.status, fault.code.as_str()),
            (404, "EntityNotExists.Directory")
        );
    }

    #[test]
    fn update_user_writes_the_fields_given_and_get_user_shows_them() {
        let mut seed = seed("Byuser");
        let answer = call(
            &mut seed,
            "UpdateUser",
            &[
                ("DirectoryId", "d-1"),
                ("UserId", "u-1"),
                ("NewDisplayName", "Alice Liddell"),
                ("NewEmail", "alice@example.com"),
            ],
        )
        .unwrap();
        assert_eq!(answer["User"]["DisplayName"], "Alice Liddell");
        let user = call(
            &mut seed,
            "GetUser",
            &[("DirectoryId", "d-1"), ("UserId", "u-1")],
        )
        .unwrap();
        assert_eq!(user["User"]["Email"], "alice@example.com");
        assert_eq!(user["User"]["FirstName"], "");
        for (pairs, code) in [
            (vec![("UserId", "u-9")], "EntityNotExists.User"),
            (
                vec![("UserId", "u-1"), ("NewEmail", "not-an-address")],
                "InvalidParameter.NewEmail",
            ),
        ] {
            let mut all = vec![("DirectoryId", "d-1")];
            all.extend(pairs);
            assert_eq!(call(&mut seed, "UpdateUser", &all).unwrap_err().code, code);
        }
        let access = call(
            &mut seed,
            "GetDirectoryGlobalAccessStatus",
            &[("DirectoryId", "d-1")],
        )
        .unwrap();
        assert_eq!(access["GlobalAccessStatus"]["status"], "Disabled");
    }
}
