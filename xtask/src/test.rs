//! `cargo xtask test`: the whole suite, as CI runs it.

use anyhow::{Context, Result, bail};

use crate::setup;
use crate::shell::{cargo, is_root, run};

/// Where the integration suites live; those named `privileged_*` need root.
const INTEGRATION_TESTS: &str = "observer/tests";

/// rustfmt check, clippy, unit tests, the unprivileged integration tests, then the
/// privileged ones (root only: without root this fails after running everything else, it
/// never skips them).
pub fn run_all() -> Result<()> {
    if is_root() {
        setup::run()?;
    } else {
        setup::toolchain()?;
    }
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "observer-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The kernel crate only builds for the BPF target, with nightly.
    run(
        "cargo",
        &[
            "+nightly",
            "clippy",
            "-p",
            "observer-ebpf",
            "--bins",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "observer-ebpf",
        "--lib",
        "--bins",
    ])?;
    let (privileged, unprivileged) = integration_suites()?;
    let mut args = vec!["test", "-p", "observer"];
    for suite in &unprivileged {
        args.extend(["--test", suite.as_str()]);
    }
    cargo(&args)?;
    // The lab crate's own: the WebDriver client against real headless Chromium.
    cargo(&["test", "-p", "observer-lab", "--tests"])?;
    if !is_root() {
        bail!(
            "every unprivileged test passed; the privileged integration tests ({}) load real \
             eBPF programs and build network namespaces, and need root: run `cargo xtask \
             test` as root",
            privileged.join(", ")
        );
    }
    cargo(&["test", "-p", "observer", "--test", "privileged_*"])
}

/// The integration suites, split into privileged (`privileged_*`) and the rest.
fn integration_suites() -> Result<(Vec<String>, Vec<String>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(INTEGRATION_TESTS);
    let mut suites: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    suites.sort();
    if suites.is_empty() {
        bail!("no integration suites in {}", dir.display());
    }
    Ok(suites
        .into_iter()
        .partition(|s| s.starts_with("privileged_")))
}
