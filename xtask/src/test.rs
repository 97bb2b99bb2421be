//! `cargo xtask test`: the whole suite, as CI runs it.

use anyhow::{Result, bail};

use crate::setup;
use crate::shell::{cargo, is_root, run};

/// rustfmt check, clippy, unit tests, then the privileged integration tests (root only:
/// without root this fails, it never skips them).
pub fn run_all() -> Result<()> {
    setup::run()?;
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
    if !is_root() {
        bail!(
            "the privileged integration tests (real eBPF programs, network namespaces) need \
             root: run `cargo xtask test` as root"
        );
    }
    cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "observer-ebpf",
        "--test",
        "*",
    ])
}
