//! Generates the gRPC code from `proto/observer.proto` (`src/lib.rs` includes it), with
//! protox: no protoc on the machine.
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../proto/observer.proto");
    let schema = protox::compile(["observer.proto"], ["../proto"])?;
    tonic_prost_build::configure().compile_fds(schema)?;
    Ok(())
}
