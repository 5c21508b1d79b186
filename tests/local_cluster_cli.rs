//! hack/local-cluster.sh on bad input: each case answers with one clear line on stderr, never a
//! trace or a half-started cluster. Runs a copy of the scripts in a temporary checkout (its own
//! .local/), so the cases never touch the cluster the other tests use; the "second up" case asks
//! that cluster itself, which is the point.

mod common;
mod harness;

use std::path::Path;
use std::process::Command;

/// A checkout of just the scripts `up` and `down` need, in a temporary directory.
fn scratch_checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let hack = dir.path().join("hack");
    std::fs::create_dir_all(hack.join("pause")).unwrap();
    for file in [
        "local-cluster.sh",
        "build-control-plane.sh",
        "oci-image.py",
        "pause/pause.go",
    ] {
        std::fs::copy(
            Path::new(harness::ROOT).join("hack").join(file),
            hack.join(file),
        )
        .unwrap();
    }
    dir
}

/// Runs the script with `args` and `env`; (exit success, stdout, stderr lines).
fn run(checkout: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, Vec<String>) {
    let output = Command::new("bash")
        .arg(checkout.join("hack/local-cluster.sh"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
        stderr.lines().map(String::from).collect(),
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

#[test]
fn down_with_nothing_running_says_so_in_one_line() {
    let checkout = scratch_checkout();
    let (ok, stdout, stderr) = run(checkout.path(), &["down"], &[]);
    assert!(ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(
        stderr,
        ["[local-cluster] nothing is running; nothing to stop"]
    );
}

#[test]
fn a_missing_debian_package_is_named_in_one_line() {
    if !is_root() {
        eprintln!("skipped: the node's checks run as root");
        return;
    }
    let checkout = scratch_checkout();
    let (ok, _, stderr) = run(
        checkout.path(),
        &["up", "--node"],
        &[("CNI_BIN_DIR", "/nonexistent")],
    );
    assert!(!ok);
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].contains("missing Debian package(s) for --node: containernetworking-plugins")
            && stderr[0].contains("apt-get install containernetworking-plugins"),
        "{stderr:?}"
    );
    assert!(
        !checkout.path().join(".local/cluster").exists(),
        "nothing is started"
    );
}

#[test]
fn a_port_in_use_is_named_in_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let checkout = scratch_checkout();
    let (ok, _, stderr) = run(checkout.path(), &["up"], &[("APISERVER_PORT", &port)]);
    assert!(!ok);
    assert_eq!(
        stderr,
        [format!(
            "[local-cluster] error: port {port} (kube-apiserver, from APISERVER_PORT) is already in use on this machine"
        )]
    );
    let (ok, _, stderr) = run(checkout.path(), &["up"], &[("APISERVER_PORT", "http")]);
    assert!(!ok);
    assert_eq!(
        stderr,
        ["[local-cluster] error: APISERVER_PORT=http is not a port number"]
    );
    // Nothing was left running: down finds only the partial state to remove.
    let (ok, _, _) = run(checkout.path(), &["down"], &[]);
    assert!(ok);
}

#[tokio::test]
async fn a_second_up_reuses_the_running_cluster_in_one_line() {
    let cluster = harness::cluster().await;
    if !cluster.local {
        eprintln!("skipped: the cluster is not hack/local-cluster.sh's");
        return;
    }
    let root = Path::new(harness::ROOT);
    let (ok, stdout, stderr) = run(root, &["up"], &[]);
    assert!(ok, "{stderr:?}");
    assert_eq!(
        Path::new(&stdout),
        cluster.kubeconfig.canonicalize().unwrap()
    );
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with("[local-cluster] already running"),
        "{stderr:?}"
    );
}
