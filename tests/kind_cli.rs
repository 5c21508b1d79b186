//! hack/kind.sh on bad input: each case answers with one clear line on stderr, never a trace or a
//! half-started cluster. Runs a copy of the script in a temporary checkout (its own .local/), so
//! the cases never touch a kind cluster the other tests use; the "second up" and "in use" cases
//! ask that cluster itself when the suite runs on it (hack/test.sh --kind), which is the point.

mod common;
mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn scratch_checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    // Readable by nobody too: the no-root case runs the script as uid 65534.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let hack = dir.path().join("hack/kind");
    std::fs::create_dir_all(&hack).unwrap();
    for file in ["kind.sh", "kind/runc-wrapper", "kind/node-image.sh"] {
        std::fs::copy(
            Path::new(harness::ROOT).join("hack").join(file),
            dir.path().join("hack").join(file),
        )
        .unwrap();
    }
    dir
}

/// Runs `prefix... bash hack/kind.sh args` with `env`; (exit success, stdout, stderr lines).
fn run(
    prefix: &[&str],
    checkout: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, Vec<String>) {
    let mut command = match prefix.split_first() {
        Some((program, rest)) => {
            let mut command = Command::new(program);
            command.args(rest).arg("bash");
            command
        }
        None => Command::new("bash"),
    };
    let output = command
        .arg(checkout.join("hack/kind.sh"))
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

/// The kind cluster of this checkout is up (hack/test.sh --kind).
fn kind_is_up() -> bool {
    let kubeconfig = Path::new(harness::ROOT).join(".local/kind/kubeconfig");
    std::env::var_os("KUBECONFIG").is_some_and(|k| Path::new(&k) == kubeconfig)
}

#[test]
fn down_with_nothing_running_says_so_in_one_line() {
    let checkout = scratch_checkout();
    let (ok, stdout, stderr) = run(&[], checkout.path(), &["down"], &[]);
    assert!(ok);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr, ["[kind] nothing is running; nothing to stop"]);
}

#[test]
fn bad_usage_is_one_line() {
    let checkout = scratch_checkout();
    let (ok, _, stderr) = run(&[], checkout.path(), &["start"], &[]);
    assert!(!ok);
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(stderr[0].starts_with("usage: "), "{stderr:?}");
    let (ok, _, stderr) = run(&[], checkout.path(), &["load"], &[]);
    assert!(!ok);
    assert_eq!(stderr, ["[kind] error: usage: load ARCHIVE"]);
}

#[test]
fn without_root_up_says_so_in_one_line() {
    let checkout = scratch_checkout();
    let prefix: &[&str] = if is_root() {
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        &[]
    };
    let (ok, _, stderr) = run(prefix, checkout.path(), &["up"], &[]);
    assert!(!ok);
    assert_eq!(
        stderr,
        ["[kind] error: hack/kind.sh needs root (a private dockerd, routes and iptables rules)"]
    );
    assert!(
        !checkout.path().join(".local/kind").exists(),
        "nothing is started"
    );
}

#[test]
fn a_port_in_use_is_named_in_one_line() {
    if !is_root() {
        eprintln!("skipped: hack/kind.sh up runs as root");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let checkout = scratch_checkout();
    let (ok, _, stderr) = run(&[], checkout.path(), &["up"], &[("KIND_API_PORT", &port)]);
    assert!(!ok);
    assert_eq!(
        stderr,
        [format!(
            "[kind] error: port {port} (the API server, from KIND_API_PORT) is already in use on this machine"
        )]
    );
    let (ok, _, stderr) = run(&[], checkout.path(), &["up"], &[("KIND_API_PORT", "http")]);
    assert!(!ok);
    assert_eq!(
        stderr,
        ["[kind] error: KIND_API_PORT=http is not a port number"]
    );
    assert!(
        !checkout.path().join(".local/kind").exists(),
        "nothing is started"
    );
}

/// With this checkout's kind cluster up, another checkout's `up` finds its dockerd in use, and
/// this checkout's second `up` says the cluster is up; each in one line, changing nothing.
#[test]
fn a_second_up_and_a_dockerd_in_use_are_one_line_each() {
    if !kind_is_up() {
        eprintln!("skipped: no kind cluster of this checkout is up (hack/test.sh --kind)");
        return;
    }
    let (ok, _, stderr) = run(&[], Path::new(harness::ROOT), &["up"], &[]);
    assert!(!ok);
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(
        stderr[0].starts_with("[kind] error: kind cluster 'cloudsso' is already up"),
        "{stderr:?}"
    );
    let checkout = scratch_checkout();
    let (ok, _, stderr) = run(&[], checkout.path(), &["up"], &[]);
    assert!(!ok);
    assert_eq!(
        stderr,
        [
            "[kind] error: /run/cloudsso-kind/docker.sock is in use: a private dockerd from another checkout runs (its hack/kind.sh down stops it)"
        ]
    );
    assert!(
        !checkout.path().join(".local/kind").exists(),
        "nothing is started"
    );
}

/// A bridge of kind's name that something else made: `up` names it and starts nothing.
#[test]
fn a_bridge_in_use_is_named_in_one_line() {
    if !is_root() || Path::new("/run/cloudsso-kind/docker.sock").exists() {
        eprintln!("skipped: needs root and no private dockerd of hack/kind.sh running");
        return;
    }
    let made = Command::new("ip")
        .args(["link", "add", "cssokind0", "type", "bridge"])
        .status()
        .is_ok_and(|status| status.success());
    if !made {
        eprintln!("skipped: cannot make a bridge here (or cssokind0 exists)");
        return;
    }
    let checkout = scratch_checkout();
    let (ok, _, stderr) = run(&[], checkout.path(), &["up"], &[]);
    let _ = Command::new("ip")
        .args(["link", "del", "cssokind0"])
        .status();
    assert!(!ok);
    assert_eq!(
        stderr,
        [
            "[kind] error: bridge cssokind0 already exists: a kind cluster from another checkout runs (its hack/kind.sh down removes it)"
        ]
    );
    assert!(
        !checkout.path().join(".local/kind").exists(),
        "nothing is started"
    );
}
