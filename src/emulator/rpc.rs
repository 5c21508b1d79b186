//! The RPC signature (HMAC-SHA1, `Signature` among the parameters) that the older SDKs, the aliyun
//! CLI and the alicloud Terraform provider use; the emulator verifies it beside ACS3.
//!
//! String to sign: `METHOD&%2F&` + RFC 3986 encoding of the canonicalized query (every parameter of
//! query and form body but `Signature`, sorted by name, each `name=value` RFC 3986-encoded, joined
//! by `&`). Signature: `Base64(HMAC-SHA1(secret + "&", string to sign))`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

use crate::cloud::signer::{canonical_query, percent_encode};

pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
pub const SIGNATURE_VERSION: &str = "1.0";

/// The parameters every RPC-signed call must carry, in the order they are checked.
pub const REQUIRED_PARAMETERS: [&str; 8] = [
    "Action",
    "Version",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
];

/// The string the caller signed: the HTTP method, the encoded path `/`, and the encoded
/// canonicalized parameters without `Signature`.
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let signed: BTreeMap<String, String> = params
        .iter()
        .filter(|(name, _)| name.as_str() != "Signature")
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode("/"),
        percent_encode(&canonical_query(&signed))
    )
}

fn key(access_key_secret: &str) -> hmac::Key {
    // The documented key is the secret followed by "&" (an empty token secret, from OAuth 1).
    hmac::Key::new(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        format!("{access_key_secret}&").as_bytes(),
    )
}

/// `Base64(HMAC-SHA1(secret + "&", string to sign))`.
pub fn signature(access_key_secret: &str, string_to_sign: &str) -> String {
    BASE64.encode(hmac::sign(
        &key(access_key_secret),
        string_to_sign.as_bytes(),
    ))
}

/// True when `claimed` is the signature of `string_to_sign`; compared in constant time.
pub fn verify(access_key_secret: &str, string_to_sign: &str, claimed: &str) -> bool {
    match BASE64.decode(claimed) {
        Ok(tag) => hmac::verify(&key(access_key_secret), string_to_sign.as_bytes(), &tag).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Alibaba Cloud's published RPC signature example (ECS DescribeRegions, key `testid` /
    /// `testsecret`): its string to sign and its signature.
    #[test]
    fn the_documented_example() {
        let request = params(&[
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
            ("Signature", "left out of the string to sign"),
        ]);
        let expected = "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML\
            %26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
            %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26";
        let sts = string_to_sign("GET", &request);
        assert_eq!(sts, expected);
        assert_eq!(
            signature("testsecret", &sts),
            "OLeaidS1JvxuMvnyHOwuJ+uX5qY="
        );
        assert!(verify("testsecret", &sts, "OLeaidS1JvxuMvnyHOwuJ+uX5qY="));
        assert!(!verify("testsecreT", &sts, "OLeaidS1JvxuMvnyHOwuJ+uX5qY="));
    }

    /// Computed by aliyun-python-sdk-core 2.16.1 (`rpc_signature_composer.get_signed_url`, POST,
    /// query plus form body, pinned time and nonce): reserved characters, `*`, `~`, a space and a
    /// non-ASCII letter, and the empty `SignatureType` that SDK sends.
    #[test]
    fn the_python_sdk_answer_for_a_form_post() {
        let request = params(&[
            ("Action", "ListUsers"),
            ("Version", "2021-05-15"),
            ("RegionId", "cn-shanghai"),
            ("Timestamp", "2026-11-23T19:30:00Z"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureType", ""),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", "7d1bd1c0-5b57-4cd1-a3a5-3b3e1c0f2a11"),
            ("AccessKeyId", "LTAI5tEmulatorKey01"),
            ("Format", "JSON"),
            ("DirectoryId", "d-00fc2p61abcd"),
            ("Filter", "UserName sw al*~ é/+"),
        ]);
        let sts = string_to_sign("POST", &request);
        assert_eq!(
            sts,
            "POST&%2F&AccessKeyId%3DLTAI5tEmulatorKey01%26Action%3DListUsers%26DirectoryId%3Dd-00fc2p61abcd\
             %26Filter%3DUserName%2520sw%2520al%252A~%2520%25C3%25A9%252F%252B%26Format%3DJSON\
             %26RegionId%3Dcn-shanghai%26SignatureMethod%3DHMAC-SHA1\
             %26SignatureNonce%3D7d1bd1c0-5b57-4cd1-a3a5-3b3e1c0f2a11%26SignatureType%3D\
             %26SignatureVersion%3D1.0%26Timestamp%3D2026-11-23T19%253A30%253A00Z%26Version%3D2021-05-15"
        );
        assert_eq!(
            signature("emulator-secret-01", &sts),
            "g5T6t3dVcXu2zsSr3ZZ+RwQq+z8="
        );
    }

    #[test]
    fn a_signature_that_is_not_base64_does_not_verify() {
        let sts = string_to_sign("GET", &params(&[("Action", "GetUser")]));
        assert!(!verify("s", &sts, "not base64 at all!"));
        assert!(!verify("s", &sts, ""));
        assert!(verify("s", &sts, &signature("s", &sts)));
    }
}
