//! Builds the kernel programs (`observer-ebpf`) for the BPF target with the nightly toolchain
//! and bpf-linker (`cargo xtask setup` installs both); `src/datapath` embeds the object.
//! Also generates the gRPC code from `proto/observer.proto` (`src/api` includes it).
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../observer-common/src");
    println!("cargo:rerun-if-changed=../proto/observer.proto");
    let schema = protox::compile(["observer.proto"], ["../proto"])?;
    tonic_prost_build::configure().compile_fds(schema)?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "observer-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../observer-ebpf"),
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
