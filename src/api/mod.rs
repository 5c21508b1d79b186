//! The custom resources (the namespaced kinds and the cluster-scoped CloudAccount): spec,
//! status, the reasons their conditions give, and the CRD YAML generated from them. No I/O.

pub mod cloud_account;
pub mod common;
pub mod directory_mfa_policy;
pub mod ram_security_preference;
pub mod ram_user_mfa_setting;
pub mod ram_user_mfa_status;
pub mod reasons;
pub mod user_mfa_policy;
pub mod user_mfa_setting;

pub use cloud_account::*;
pub use common::*;
pub use directory_mfa_policy::*;
pub use ram_security_preference::*;
pub use ram_user_mfa_setting::*;
pub use ram_user_mfa_status::*;
pub use reasons::Reason;
pub use user_mfa_policy::*;
pub use user_mfa_setting::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

// Every kind, once: its CRD, and the shared spec and status traits.
common::kinds!(
    DirectoryMfaPolicy: DirectoryMfaPolicySpec => DirectoryMfaPolicyStatus,
    UserMfaSetting: UserMfaSettingSpec => UserMfaSettingStatus,
    UserMfaPolicy: UserMfaPolicySpec => UserMfaPolicyStatus,
    RamUserMfaStatus: RamUserMfaStatusSpec => RamUserMfaStatusStatus,
    RamSecurityPreference: RamSecurityPreferenceSpec => RamSecurityPreferenceStatus,
    RamUserMfaSetting: RamUserMfaSettingSpec => RamUserMfaSettingStatus,
);

/// Every CRD as one YAML stream, in the order `crds/*.yaml` sorts, each document starting with `---`.
pub fn crd_documents() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    let mut crds: Vec<CustomResourceDefinition> = crds();
    crds.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    crds.into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let file = format!("{}.yaml", name);
            serde_yaml::to_string(&crd).map(|yaml| (file, format!("---\n{yaml}")))
        })
        .collect()
}

/// All CRDs concatenated: what `cloudsso-mfa-operator crd` prints and `crds/` holds.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    Ok(crd_documents()?.into_iter().map(|(_, yaml)| yaml).collect())
}
