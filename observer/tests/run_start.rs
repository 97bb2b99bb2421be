//! `observer run` refuses bad settings at start, naming the flag, before it loads anything
//! (so these run without root): a daemon that starts with them would judge against a
//! cluster with objects missing, warn every second, or serve an API that accepts nothing.

use std::process::Command;

fn observer_run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_observer"))
        .arg("run")
        .args(args)
        .output()
        .expect("observer run");
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_manifests_path() {
    let stderr = observer_run(&["--manifests", "/nonexistent/observer-run/cluster.yaml"]);
    assert!(
        stderr.contains("--manifests /nonexistent/observer-run/cluster.yaml"),
        "{stderr}"
    );
}

#[test]
fn a_stats_file_it_cannot_write() {
    let stderr = observer_run(&["--stats-file", "/nonexistent/observer-run/stats.json"]);
    assert!(
        stderr.contains("--stats-file /nonexistent/observer-run/stats.json"),
        "{stderr}"
    );
}

#[test]
fn tls_files_that_are_not_a_certificate_and_key() {
    let dir = std::env::temp_dir().join(format!("run-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    std::fs::write(&key, "not a key\n").expect("write");
    let stderr = observer_run(&[
        "--grpc-tls-cert",
        cert.to_str().unwrap_or_default(),
        "--grpc-tls-key",
        key.to_str().unwrap_or_default(),
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(stderr.contains("--grpc-tls-cert"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}
