//! ACS3-HMAC-SHA256 request signing, as Alibaba Cloud's own SDKs compute it.
//!
//! The canonical request is
//! `METHOD\nURI\nCANONICAL_QUERY\nCANONICAL_HEADERS\nSIGNED_HEADERS\nHEX(SHA256(body))`, the string
//! to sign is `ACS3-HMAC-SHA256\nHEX(SHA256(canonical request))` and the signature is
//! `HEX(HMAC-SHA256(secret, string to sign))`. The emulator verifies with the same functions.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ring::{digest, hmac};

pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// RFC 3986: everything but the unreserved characters is percent-encoded (space is %20, `*` is %2A),
/// whatever the wire form used.
const RFC3986_RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, RFC3986_RESERVED).to_string()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

pub fn hmac_sha256_hex(secret: &str, data: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(hmac::sign(&key, data.as_bytes()))
}

/// Query parameters sorted by name, each `name=value` RFC 3986-encoded, joined by `&`.
pub fn canonical_query(query: &BTreeMap<String, String>) -> String {
    query
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Headers whose values are credentials: Debug output shows `***` for them.
pub fn is_secret_header(name: &str) -> bool {
    ["authorization", "x-acs-security-token"]
        .iter()
        .any(|secret| name.eq_ignore_ascii_case(secret))
}

/// `(name, value)` pairs for Debug, the secret headers' values replaced by `***`.
pub(crate) fn redacted_headers<'a>(
    headers: impl Iterator<Item = (&'a String, &'a String)>,
) -> Vec<(&'a str, &'a str)> {
    headers
        .map(|(name, value)| {
            let shown = if is_secret_header(name) {
                "***"
            } else {
                value.as_str()
            };
            (name.as_str(), shown)
        })
        .collect()
}

/// The headers that take part in a signature, lowercased and sorted, with their trimmed values.
#[derive(Clone, Default)]
pub struct CanonicalHeaders(BTreeMap<String, String>);

impl std::fmt::Debug for CanonicalHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CanonicalHeaders")
            .field(&redacted_headers(self.0.iter()))
            .finish()
    }
}

impl CanonicalHeaders {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.0
            .insert(name.to_ascii_lowercase(), value.trim().to_string());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// `host;x-acs-action;...`: the names in the order they are signed.
    pub fn signed_names(&self) -> String {
        self.0.keys().cloned().collect::<Vec<_>>().join(";")
    }

    fn canonical(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}:{value}\n"))
            .collect()
    }
}

/// One request's parts that the signature covers.
pub struct RequestToSign<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a BTreeMap<String, String>,
    pub headers: &'a CanonicalHeaders,
    /// HEX(SHA256(body)), also sent as `x-acs-content-sha256`.
    pub payload_hash: &'a str,
}

impl RequestToSign<'_> {
    pub fn canonical_request(&self) -> String {
        let path = if self.path.is_empty() { "/" } else { self.path };
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            path,
            canonical_query(self.query),
            self.headers.canonical(),
            self.headers.signed_names(),
            self.payload_hash
        )
    }

    pub fn string_to_sign(&self) -> String {
        format!(
            "{ALGORITHM}\n{}",
            sha256_hex(self.canonical_request().as_bytes())
        )
    }

    pub fn signature(&self, access_key_secret: &str) -> String {
        hmac_sha256_hex(access_key_secret, &self.string_to_sign())
    }

    /// The `Authorization` header value.
    pub fn authorization(&self, access_key_id: &str, access_key_secret: &str) -> String {
        format!(
            "{ALGORITHM} Credential={access_key_id},SignedHeaders={},Signature={}",
            self.headers.signed_names(),
            self.signature(access_key_secret)
        )
    }
}

/// The parts of an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub access_key_id: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<ParsedAuthorization, String> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| format!("the signature algorithm is not {ALGORITHM}"))?
        .trim_start();
    let mut access_key_id = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, val) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("malformed Authorization part '{part}'"))?;
        match name {
            "Credential" => access_key_id = Some(val.to_string()),
            "SignedHeaders" => {
                signed_headers = Some(val.split(';').map(str::to_string).collect::<Vec<_>>())
            }
            "Signature" => signature = Some(val.to_string()),
            _ => {}
        }
    }
    Ok(ParsedAuthorization {
        access_key_id: access_key_id.ok_or("Authorization has no Credential")?,
        signed_headers: signed_headers.ok_or("Authorization has no SignedHeaders")?,
        signature: signature.ok_or("Authorization has no Signature")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_headers_never_print_the_token() {
        let mut headers = CanonicalHeaders::new();
        headers.insert("x-acs-action", "GetUser");
        headers.insert("X-Acs-Security-Token", "canonical-token-value");
        let debug = format!("{headers:?}");
        assert!(!debug.contains("canonical-token-value"), "{debug}");
        assert!(debug.contains("GetUser") && debug.contains("x-acs-security-token"));
    }

    #[test]
    fn empty_payload_hash_is_sha256_of_nothing() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn query_values_use_rfc3986_not_form_encoding() {
        let mut query = BTreeMap::new();
        query.insert("Filter".to_string(), "UserName eq a*b".to_string());
        query.insert(
            "AllowedVerificationTypes".to_string(),
            "[\"TOTP\"]".to_string(),
        );
        query.insert("Tilde".to_string(), "a~b/c+d".to_string());
        assert_eq!(
            canonical_query(&query),
            "AllowedVerificationTypes=%5B%22TOTP%22%5D&Filter=UserName%20eq%20a%2Ab&Tilde=a~b%2Fc%2Bd"
        );
    }

    /// The query of the documentation's examples (ECS DescribeInstanceStatus).
    fn documented_query() -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "ImageId".to_string(),
                "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd".to_string(),
            ),
            ("RegionId".to_string(), "cn-shanghai".to_string()),
        ])
    }

    /// The documentation's requests: POST to `/` with an empty body.
    fn post_root<'a>(
        query: &'a BTreeMap<String, String>,
        headers: &'a CanonicalHeaders,
        payload_hash: &'a str,
    ) -> RequestToSign<'a> {
        RequestToSign {
            method: "POST",
            path: "/",
            query,
            headers,
            payload_hash,
        }
    }

    /// The worked example of Alibaba Cloud's "Request syntax and signature method V3" page
    /// (ECS DescribeInstanceStatus), with its published canonical request and signature.
    #[test]
    fn known_answer_from_alibaba_signature_v3_documentation() {
        let query = documented_query();
        let payload_hash = sha256_hex(b"");
        let mut headers = CanonicalHeaders::new();
        headers.insert("host", "ecs.cn-shanghai.aliyuncs.com");
        headers.insert("x-acs-action", "RunInstances");
        headers.insert("x-acs-content-sha256", &payload_hash);
        headers.insert("x-acs-date", "2023-10-26T10:22:32Z");
        headers.insert("x-acs-signature-nonce", "3156853299f313e23d1673dc12e1703d");
        headers.insert("x-acs-version", "2014-05-26");
        let request = post_root(&query, &headers, &payload_hash);
        assert_eq!(
            request.canonical_request(),
            "POST\n/\nImageId=win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd&RegionId=cn-shanghai\n\
             host:ecs.cn-shanghai.aliyuncs.com\n\
             x-acs-action:RunInstances\n\
             x-acs-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             x-acs-date:2023-10-26T10:22:32Z\n\
             x-acs-signature-nonce:3156853299f313e23d1673dc12e1703d\n\
             x-acs-version:2014-05-26\n\n\
             host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            request.string_to_sign(),
            "ACS3-HMAC-SHA256\n7ea06492da5221eba5297e897ce16e55f964061054b7695beedaac1145b1e259"
        );
        assert_eq!(
            request.authorization("YourAccessKeyId", "YourAccessKeySecret"),
            "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0"
        );
    }

    /// The same page's other example: same request, another date and nonce.
    #[test]
    fn second_known_answer_from_the_documentation() {
        let query = documented_query();
        let payload_hash = sha256_hex(b"");
        let mut headers = CanonicalHeaders::new();
        for (name, value) in [
            ("Host", "ecs.cn-shanghai.aliyuncs.com"),
            ("x-acs-action", "RunInstances"),
            ("x-acs-content-sha256", payload_hash.as_str()),
            ("x-acs-date", "2023-10-26T09:01:01Z"),
            ("x-acs-signature-nonce", "d410180a5abf7fe235dd9b74aca91fc0"),
            ("x-acs-version", "2014-05-26"),
        ] {
            headers.insert(name, value);
        }
        let request = post_root(&query, &headers, &payload_hash);
        assert_eq!(
            request.signature("YourAccessKeySecret"),
            "e521358f7776c97df52e6b2891a8bc73026794a071b50c3323388c4e0df64804"
        );
    }

    #[test]
    fn authorization_round_trips_through_the_parser() {
        let parsed = parse_authorization(
            "ACS3-HMAC-SHA256 Credential=AK1,SignedHeaders=host;x-acs-date,Signature=abcd",
        )
        .unwrap();
        assert_eq!(parsed.access_key_id, "AK1");
        assert_eq!(parsed.signed_headers, vec!["host", "x-acs-date"]);
        assert_eq!(parsed.signature, "abcd");
        assert!(parse_authorization("HMAC-SHA1 Credential=x").is_err());
    }
}
