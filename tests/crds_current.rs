//! crds/ (and the chart's copy) must hold exactly what `cloudsso-mfa-operator crd` prints: fails when the types changed
//! and `hack/update-crds.sh` was not run.

use std::path::Path;

#[test]
fn crds_directory_matches_the_rust_types() {
    assert_directory_current("crds");
}

#[test]
fn the_helm_chart_carries_the_same_crds() {
    assert_directory_current("deploy/helm/cloudsso-mfa-operator/crds");
}

fn assert_directory_current(relative: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{relative}/: {error}"))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let on_disk: String = files
        .iter()
        .map(|path| std::fs::read_to_string(path).expect("readable CRD file"))
        .collect();
    let generated = cloudsso_mfa_operator::api::crds_yaml().expect("CRDs render");
    assert!(
        on_disk == generated,
        "{relative}/ is stale: run hack/update-crds.sh and commit the result"
    );
    // The six namespaced kinds and CloudAccount.
    assert_eq!(files.len(), 7, "{relative}/: one file per CRD");
}

#[test]
fn the_binary_prints_the_same_bytes() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cloudsso-mfa-operator"))
        .arg("crd")
        .output()
        .expect("binary runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        cloudsso_mfa_operator::api::crds_yaml().unwrap()
    );
}
