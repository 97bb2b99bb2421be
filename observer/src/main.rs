//! `observer` binary: see `observer --help`.

fn main() -> std::process::ExitCode {
    observer::cli::main()
}
