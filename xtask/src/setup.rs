//! `cargo xtask setup`: everything a fresh machine of this kind needs, idempotently.

use anyhow::{Context, Result, bail};

use crate::shell::{self, output};

/// Debian packages the tests, benchmarks and demo use.
const PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "iperf3",
    "tcpdump",
    "ethtool",
    "iputils-ping",
    "procps",
    "nftables",
    "iptables",
    // promtool, which checks the metrics endpoint's output (observer/tests/metrics_endpoint.rs).
    "prometheus",
    // A real browser for the console's tests and benchmark (observer/tests/console_*.rs).
    "chromium",
    "chromium-driver",
];
/// The Python packages of the API test with a client that is not ours
/// (`observer/tests/api_python.rs`), pinned.
const PYTHON_PACKAGES: &[&str] = &[
    "grpcio==1.85.3",
    "grpcio-reflection==1.85.1",
    "grpcio-health-checking==1.85.1",
    "protobuf==7.36.2",
];
/// Where their virtual environment is, from the workspace root.
const PYTHON_VENV: &str = "target/python-client";
/// bpf-linker version known to work with the pinned aya set.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Installs rust-src for nightly, bpf-linker linked against nightly's LLVM, and packages.
pub fn run() -> Result<()> {
    rust_components()?;
    bpf_linker()?;
    packages()?;
    python_client()
}

/// What the build and the unprivileged tests need: the toolchain parts, not the Debian
/// packages (installing those takes root, and only the privileged tests use them).
pub fn toolchain() -> Result<()> {
    rust_components()?;
    bpf_linker()?;
    python_client()
}

/// A Python virtual environment with grpcio, for the API test whose client is not ours.
fn python_client() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join(PYTHON_VENV);
    let python = venv.join("bin/python");
    let installed = output(
        &python.to_string_lossy(),
        &["-m", "pip", "freeze", "--disable-pip-version-check"],
    )
    .unwrap_or_default();
    if PYTHON_PACKAGES
        .iter()
        .all(|p| installed.lines().any(|l| l.eq_ignore_ascii_case(p)))
    {
        return Ok(());
    }
    let venv_text = venv.to_string_lossy().into_owned();
    shell::run("python3", &["-m", "venv", &venv_text])
        .context("python3 with the venv module is needed for the Python API test")?;
    let mut args = vec!["-m", "pip", "install", "-q", "--disable-pip-version-check"];
    args.extend(PYTHON_PACKAGES);
    shell::run(&python.to_string_lossy(), &args)
}

fn rust_components() -> Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .context("rustup is needed, with a `nightly` toolchain")?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        shell::run(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        )?;
    }
    let stable = output("rustup", &["component", "list", "--installed"]).unwrap_or_default();
    for component in ["rustfmt", "clippy"] {
        if !stable.lines().any(|l| l.starts_with(component)) {
            shell::run("rustup", &["component", "add", component])?;
        }
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let works =
        output("bpf-linker", &["--version"]).is_some_and(|v| v.contains(BPF_LINKER_VERSION));
    let resolves = output("sh", &["-c", "ldd \"$(command -v bpf-linker)\""])
        .is_some_and(|ldd| !ldd.contains("not found"));
    if works && resolves {
        return Ok(());
    }
    // bpf-linker must use the nightly toolchain's own libLLVM: Debian's LLVM is too old to
    // read the bitcode nightly rustc writes.
    let sysroot = output("rustc", &["+nightly", "--print", "sysroot"])
        .context("rustc +nightly --print sysroot")?
        .trim()
        .to_string();
    let version = output("rustc", &["+nightly", "-vV"]).context("rustc +nightly -vV")?;
    let major = version
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("no LLVM version in rustc +nightly -vV")?
        .to_string();
    let lib_dir = format!("{sysroot}/lib");
    let lib = std::fs::read_dir(&lib_dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&format!("libLLVM-{major}")) && n.ends_with(".so"))
        .with_context(|| format!("no libLLVM-{major}*.so in {lib_dir}"))?;
    let lib = lib
        .trim_start_matches("lib")
        .trim_end_matches(".so")
        .to_string();
    let rustflags = format!("-L native={lib_dir} -l dylib={lib} -C link-arg=-Wl,-rpath,{lib_dir}");
    eprintln!("+ RUSTFLAGS=\"{rustflags}\" cargo install bpf-linker@{BPF_LINKER_VERSION} ...");
    let status = std::process::Command::new("cargo")
        .env("RUSTFLAGS", rustflags)
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &format!("llvm-{major},no-llvm-linking"),
        ])
        .status()?;
    if !status.success() {
        bail!("installing bpf-linker failed ({status})");
    }
    Ok(())
}

fn packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !crate::shell::is_root() {
        bail!("missing Debian packages {missing:?}: run `cargo xtask setup` as root");
    }
    shell::run("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing);
    // Noninteractive: CI has no terminal to answer a prompt.
    let status = std::process::Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(&args)
        .status()?;
    if !status.success() {
        bail!("apt-get install failed ({status})");
    }
    Ok(())
}
