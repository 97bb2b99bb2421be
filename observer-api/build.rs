//! Generates the gRPC code from `proto/observer.proto` (`src/lib.rs` includes it), with
//! protox: no protoc on the machine.
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../proto/observer.proto");
    let schema = protox::compile(["observer.proto"], ["../proto"])?;
    // The encoded schema, for the server's reflection service (grpcurl without a .proto).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("observer_descriptor.bin"),
        prost::Message::encode_to_vec(&schema),
    )?;
    tonic_prost_build::configure().compile_fds(schema)?;
    Ok(())
}
