//! Our signer and Alibaba Cloud's official Python SDK sign the same request (same date, nonce and
//! user agent) and must produce the same headers and the same Authorization.
//! Needs python3 with alibabacloud-cloudsso20210515 (tests/sdk/requirements.txt; .ci/run installs it).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use cloudsso_mfa_operator::cloud::client::{RequestStamp, prepare_request};
use cloudsso_mfa_operator::cloud::{Credentials, Endpoint};
use serde_json::{Value, json};

fn sign_with_sdk(spec: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/sdk_sign.py");
    let mut child = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (install tests/sdk/requirements.txt)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the official SDK could not sign (pip install -r tests/sdk/requirements.txt): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("sdk_sign.py prints JSON")
}

fn compare(action: &str, version: &str, params: &[(&str, &str)], token: Option<&str>) {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let host = "cloudsso.cn-shanghai.aliyuncs.com";
    let (date, nonce) = ("2026-11-23T10:00:00Z", "5d1f8b3e0c9a4f7e8b2a6c4d1e0f9a8b");
    let sdk = sign_with_sdk(&json!({
        "endpoint": host, "version": version, "action": action, "params": params,
        "accessKeyId": "LTAI5tExampleKeyId", "accessKeySecret": "ExampleSecret/with+chars=",
        "securityToken": token, "date": date, "nonce": nonce,
    }));
    let credentials = Credentials::new(
        "LTAI5tExampleKeyId",
        "ExampleSecret/with+chars=",
        token.map(str::to_string),
    )
    .unwrap();
    let stamp = RequestStamp {
        date: date.into(),
        nonce: nonce.into(),
        user_agent: sdk["headers"]["user-agent"].as_str().unwrap().into(),
    };
    let ours = prepare_request(
        &Endpoint::parse(host).unwrap(),
        version,
        action,
        &params,
        &credentials,
        &stamp,
    );
    let our_headers: BTreeMap<String, String> = ours.headers.iter().cloned().collect();
    let sdk_headers: BTreeMap<String, String> =
        serde_json::from_value(sdk["headers"].clone()).unwrap();
    let mut our_without_auth = our_headers.clone();
    let our_authorization = our_without_auth.remove("authorization").unwrap();
    assert_eq!(our_without_auth, sdk_headers, "{action}: same headers");
    assert_eq!(
        our_authorization,
        sdk["authorization"].as_str().unwrap(),
        "{action}: same Authorization"
    );
}

#[test]
fn list_users_with_a_filter_that_needs_rfc3986_encoding() {
    compare(
        "ListUsers",
        "2021-05-15",
        &[
            ("DirectoryId", "d-00fc2p61abcd"),
            ("Filter", "UserName sw a*b c"),
            ("MaxResults", "100"),
        ],
        None,
    );
}

#[test]
fn update_with_a_json_array_parameter() {
    compare(
        "UpdateMFAAuthenticationSettings",
        "2021-05-15",
        &[
            ("DirectoryId", "d-00fc2p61abcd"),
            ("MFAAuthenticationSettings", "OnlyRiskyLogin"),
            ("OperationForRiskLogin", "EnforceVerify"),
            ("AllowedVerificationTypes", "[\"TOTP\",\"WebAuthn\"]"),
        ],
        None,
    );
}

#[test]
fn sts_credentials_sign_the_security_token() {
    compare(
        "GetUserMFAInfo",
        "2019-08-15",
        &[("UserPrincipalName", "bob@example.onaliyun.com")],
        Some("CAISexampleSecurityToken+/="),
    );
}
