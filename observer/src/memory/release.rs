//! Returning freed memory to the OS.
//!
//! The binary allocates with mimalloc (`main.rs`). Loading a cluster state builds large
//! short-lived intermediates (parsed YAML, full Kubernetes objects) that mimalloc keeps
//! for reuse; after a rebuild, asking it to give them back keeps the daemon's resident
//! memory near what is live (docs/benchmarks.md). With another allocator this is a no-op.

/// Asks mimalloc to return freed pages to the OS now.
pub fn release_unused() {
    // SAFETY: mi_collect only walks mimalloc's own free lists; it has no preconditions.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
