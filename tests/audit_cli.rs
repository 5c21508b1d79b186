//! `cloudsso-mfa-operator audit` against the emulator: every seeded user with the right settings
//! and device counts; a wrong key fails with the API's error code in one clear line; names users
//! chose print no terminal control byte.

mod common;

use std::process::Output;

use common::*;

async fn audit(url: &str, key_id: &str, secret: &str, extra: &[&str]) -> Output {
    audit_directory(DIRECTORY, url, key_id, secret, extra).await
}

async fn audit_directory(
    directory: &str,
    url: &str,
    key_id: &str,
    secret: &str,
    extra: &[&str],
) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsso-mfa-operator"));
    command
        .args(["audit", "--directory-id", directory, "--endpoint", url])
        .args(extra)
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", key_id)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret);
    command.output().await.expect("audit runs")
}

#[tokio::test]
async fn table_shows_every_user_with_settings_and_devices() {
    let (url, _state) = start_emulator().await;
    let output = audit(&url, ACCESS_KEY_ID, ACCESS_KEY_SECRET, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(&format!(
            "Directory {DIRECTORY}: MFA Byuser, risky logons: Autonomous"
        )),
        "{stdout}"
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|line| !line.starts_with("USER"))
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec![
                "alice",
                "u-00q8wbq42wiltcrk0001",
                "Enabled",
                "2",
                "Alice-MFA1,Alice-Passkey"
            ],
            vec!["bob", "u-00q8wbq42wiltcrk0002", "Disabled", "0", "-"],
            vec![
                "carol",
                "u-00q8wbq42wiltcrk0003",
                "Enabled",
                "1",
                "Carol-Key"
            ],
        ]
    );
}

#[tokio::test]
async fn the_table_prints_no_terminal_control_byte_from_a_device_name() {
    let (url, _state) = start_emulator().await;
    change_state(&url, |s| {
        s["directories"][0]["users"][0]["mfaDevices"][0]["deviceName"] =
            serde_json::json!("Evil\u{1b}[31mRed\u{7}\r");
        s["directories"][0]["users"][2]["userName"] = serde_json::json!("carol\u{1b}]0;title\u{7}");
    })
    .await;
    let output = audit(&url, ACCESS_KEY_ID, ACCESS_KEY_SECRET, &[]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.stdout.contains(&0x1b), "an ESC byte was printed");
    assert!(
        !output.stdout.iter().any(|b| *b < 0x20 && *b != b'\n'),
        "a control byte was printed"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("Evil\\u{1b}[31mRed\\u{7}\\u{d}"),
        "{stdout}"
    );
    assert!(stdout.contains("carol\\u{1b}]0;title\\u{7}"), "{stdout}");
    // JSON keeps the name as it is, escaped by JSON itself.
    let json = audit(&url, ACCESS_KEY_ID, ACCESS_KEY_SECRET, &["-o", "json"]).await;
    assert!(!json.stdout.contains(&0x1b));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        report["users"][0]["devices"][0]["deviceName"],
        "Evil\u{1b}[31mRed\u{7}\r"
    );
}

#[tokio::test]
async fn json_output_is_machine_readable() {
    let (url, _state) = start_emulator().await;
    let output = audit(&url, ACCESS_KEY_ID, ACCESS_KEY_SECRET, &["-o", "json"]).await;
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["mfaAuthenticationSettings"], "Byuser");
    let users = report["users"].as_array().unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users[0]["boundDeviceCount"], 2);
    assert_eq!(users[0]["devices"][1]["deviceType"], "PlatformPasskey");
    assert_eq!(users[1]["userMfaAuthenticationSettings"], "Disabled");
}

fn one_error_line(output: &Output) -> String {
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test]
async fn wrong_keys_fail_with_the_api_error_code() {
    let (url, _state) = start_emulator().await;
    let stderr = one_error_line(&audit(&url, ACCESS_KEY_ID, "wrong-secret", &[]).await);
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
    let stderr = one_error_line(&audit(&url, "LTAI5tUnknown", "x", &[]).await);
    assert!(stderr.contains("InvalidAccessKeyId.NotFound"), "{stderr}");
}

#[tokio::test]
async fn bad_input_gives_one_clear_line() {
    let (url, _state) = start_emulator().await;
    let stderr = one_error_line(
        &audit_directory("d-nothere", &url, ACCESS_KEY_ID, ACCESS_KEY_SECRET, &[]).await,
    );
    assert!(stderr.contains("EntityNotExists.Directory"), "{stderr}");
    let stderr = one_error_line(&audit("ftp://x", ACCESS_KEY_ID, ACCESS_KEY_SECRET, &[]).await);
    assert!(stderr.contains("--endpoint"), "{stderr}");
    let stderr =
        one_error_line(&audit("http://127.0.0.1:1", ACCESS_KEY_ID, ACCESS_KEY_SECRET, &[]).await);
    assert!(stderr.contains("could not reach"), "{stderr}");

    let no_credentials = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsso-mfa-operator"))
        .args(["audit", "--directory-id", DIRECTORY, "--endpoint", &url])
        .env_clear()
        .output()
        .await
        .unwrap();
    let stderr = one_error_line(&no_credentials);
    assert!(stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_ID"), "{stderr}");

    let half = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsso-mfa-operator"))
        .args(["audit", "--directory-id", DIRECTORY, "--endpoint", &url])
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "AK")
        .output()
        .await
        .unwrap();
    let stderr = one_error_line(&half);
    assert!(
        stderr.contains(
            "ALIBABA_CLOUD_ACCESS_KEY_ID is set but ALIBABA_CLOUD_ACCESS_KEY_SECRET is not"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_flags_are_rejected_by_the_parser() {
    for args in [
        vec!["audit"],
        vec!["audit", "--directory-id", DIRECTORY, "-o", "yaml"],
        vec!["run", "--resync-interval", "soon"],
        vec!["run", "--cloud-qps", "0"],
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsso-mfa-operator"))
            .args(&args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

async fn audit_ram(url: &str, extra: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsso-mfa-operator"));
    command
        .args(["audit", "--ram", "--endpoint", url])
        .args(extra)
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET);
    command.output().await.expect("audit runs")
}

/// Three RAM users: bob must bind MFA (and has a device), carol has no console logon, dave has
/// a console logon that does not ask for MFA.
async fn start_ram_emulator() -> String {
    let (url, _state) = start_emulator().await;
    change_state(&url, |s| {
        s["ramUsers"][0]["loginProfile"] = serde_json::json!({"mfaBindRequired": true});
        s["ramUsers"].as_array_mut().unwrap().extend([
            serde_json::json!({"userPrincipalName": "carol@example.onaliyun.com"}),
            serde_json::json!({"userPrincipalName": "dave@example.onaliyun.com",
                                   "loginProfile": {}}),
        ]);
    })
    .await;
    url
}

#[tokio::test]
async fn ram_table_shows_every_ram_user_and_the_account_preference() {
    let url = start_ram_emulator().await;
    let output = audit_ram(&url, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(
            "RAM account: MFA at logon independent, risky logons: autonomous, MFA remembered 7 days: no, users manage MFA devices: yes\n3 RAM users\n"
        ),
        "{stdout}"
    );
    let rows: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.starts_with("USER"))
        .skip(1)
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(rows[0].starts_with("bob@example.onaliyun.com"), "{stdout}");
    assert!(
        rows[0].contains("required") && rows[0].ends_with("VMFA acs:ram::1234:mfa/bob"),
        "{stdout}"
    );
    assert!(
        rows[1].contains("no console logon") && rows[1].ends_with('-'),
        "{stdout}"
    );
    assert!(rows[2].contains("not required"), "{stdout}");

    change_state(&url, |s| {
        s["ramSecurityPreference"] = serde_json::json!({"mfaOperationForLogin": "mandatory"});
    })
    .await;
    let stdout = String::from_utf8_lossy(&audit_ram(&url, &[]).await.stdout).to_string();
    let dave = stdout.lines().find(|l| l.starts_with("dave@")).unwrap();
    assert!(dave.contains("required (account)"), "{stdout}");
}

#[tokio::test]
async fn ram_json_output_is_machine_readable() {
    let url = start_ram_emulator().await;
    let output = audit_ram(&url, &["-o", "json"]).await;
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["securityPreference"]["mfaOperationForLogin"],
        "independent"
    );
    assert_eq!(
        report["securityPreference"]["allowUserToManageMfaDevices"],
        true
    );
    let users = report["users"].as_array().unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users[0]["mfaRequiredAtLogon"], true);
    assert_eq!(users[0]["device"]["type"], "VMFA");
    assert_eq!(users[1]["consoleLogon"], false);
    assert!(users[1].get("mfaBindRequired").is_none());
    assert_eq!(users[2]["mfaBindRequired"], false);
    assert_eq!(users[2]["mfaRequiredAtLogon"], false);
    assert!(users[2]["userId"].as_str().unwrap().len() == 16);
}

#[tokio::test]
async fn ram_audit_errors_and_flags() {
    let url = start_ram_emulator().await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsso-mfa-operator"));
    let wrong = command
        .args(["audit", "--ram", "--endpoint", &url])
        .env_clear()
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "wrong")
        .output()
        .await
        .unwrap();
    let stderr = one_error_line(&wrong);
    assert!(
        stderr.contains("GetSecurityPreference") && stderr.contains("SignatureDoesNotMatch"),
        "{stderr}"
    );
    let both = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsso-mfa-operator"))
        .args(["audit", "--ram", "--directory-id", DIRECTORY])
        .output()
        .await
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).starts_with("error:"));
}
