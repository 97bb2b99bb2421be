//! `observer` binary: see `observer --help`.

/// mimalloc: rebuilding the cluster view and enriching records allocate many small
/// objects; glibc's allocator made both 2-3 times slower (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    observer::cli::main()
}
