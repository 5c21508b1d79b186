//! Where each API answers: derived from the region, or an override URL.

use std::fmt;

/// A base URL: scheme and host (with port when given), no path.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: String,
    /// `host` or `host:port`, exactly as sent in the Host header and signed.
    authority: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.url())
    }
}

impl Endpoint {
    /// Parses `https://host[:port]`, `http://host:port` or a bare `host[:port]` (HTTPS).
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let (scheme, rest) = match value.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("https".to_string(), value),
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("scheme '{scheme}' is not http or https"));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() {
            return Err("no host".into());
        }
        if authority.contains(['/', '?', '#', '@', ' ']) {
            return Err("an endpoint is scheme://host[:port], without path, query or user".into());
        }
        if let Some((_, port)) = authority.rsplit_once(':')
            && !authority.ends_with(']')
            && port.parse::<u16>().is_err()
        {
            return Err(format!("port '{port}' is not a number from 0 to 65535"));
        }
        Ok(Self {
            scheme,
            authority: authority.to_string(),
        })
    }

    fn https(host: String) -> Self {
        Self {
            scheme: "https".into(),
            authority: host,
        }
    }

    /// CloudSSO answers per region: `cloudsso.{region}.aliyuncs.com`.
    pub fn cloudsso(region: &str) -> Result<Self, String> {
        validate_region(region)?;
        Ok(Self::https(format!("cloudsso.{region}.aliyuncs.com")))
    }

    /// RAM's identity API (IMS) is global.
    pub fn ims() -> Self {
        Self::https("ims.aliyuncs.com".into())
    }

    pub fn sts(region: Option<&str>) -> Self {
        match region {
            Some(region) if validate_region(region).is_ok() => {
                Self::https(format!("sts.{region}.aliyuncs.com"))
            }
            _ => Self::https("sts.aliyuncs.com".into()),
        }
    }

    /// The endpoint a resource asks for: its override, or the one derived from its region.
    pub fn resolve(
        override_url: Option<&str>,
        derived: impl FnOnce() -> Result<Self, String>,
    ) -> Result<Self, String> {
        match override_url {
            Some(url) if !url.trim().is_empty() => Self::parse(url),
            _ => derived(),
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}/", self.scheme, self.authority)
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }
}

fn validate_region(region: &str) -> Result<(), String> {
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "region '{region}' is not a region id such as cn-shanghai"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_and_overrides() {
        assert_eq!(
            Endpoint::cloudsso("cn-shanghai").unwrap().url(),
            "https://cloudsso.cn-shanghai.aliyuncs.com/"
        );
        assert_eq!(Endpoint::ims().authority(), "ims.aliyuncs.com");
        let local = Endpoint::parse("http://127.0.0.1:8443/").unwrap();
        assert_eq!(local.authority(), "127.0.0.1:8443");
        assert_eq!(local.url(), "http://127.0.0.1:8443/");
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://host:99999").is_err());
        assert!(Endpoint::parse("http://host/path").is_err());
        assert!(Endpoint::cloudsso("CN SHANGHAI").is_err());
    }
}
