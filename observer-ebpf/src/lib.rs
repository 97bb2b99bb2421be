//! Exists so that `observer/build.rs` can depend on this crate (cargo then rebuilds the
//! observer when the kernel programs change). The programs themselves are in `main.rs`.
#![no_std]
