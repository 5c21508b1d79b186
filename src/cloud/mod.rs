//! The Alibaba Cloud client: signer, credentials, endpoints, transport, typed operations. Knows
//! nothing of Kubernetes.

pub mod backoff;
pub mod client;
pub mod cloudsso;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod groups;
pub mod ims;
pub mod limiter;
pub mod signer;
pub mod sts;
pub mod text;
pub mod wire;

pub use client::{ApiClient, CallObserver, ClientConfig};
pub use cloudsso::CloudSsoClient;
pub use credentials::{CredentialSource, Credentials};
pub use endpoint::Endpoint;
pub use error::{ApiErrorKind, CloudError, CredentialsError, ErrorClass};
pub use ims::ImsClient;
pub use limiter::{Access, Limiter, Priority, SharedLimiter, Urgency, rate_limiter, with_urgency};

/// Installs ring as the process's TLS crypto provider (kube and reqwest share it). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client every cloud call goes through. Never follows a redirect: an endpoint may be a
/// tenant's, and reqwest would carry the signed headers and the security token to the next host.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
}
