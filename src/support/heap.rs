//! glibc malloc settings for a process that lives seconds, not days.
//!
//! By default glibc serves every allocation over 128 KiB with a fresh
//! `mmap` and returns it with `munmap` when freed, so a buffer of that size
//! made again (the TOML parser's token and event lists, a 1,000-node
//! inventory's tables) faults its pages in from zero each time. Kept in
//! the heap, freed memory is reused instead (what that saves is measured
//! in BENCHMARKS.md, "Why it is built so").

/// The largest allocation served from the heap; glibc takes no more
/// (`HEAP_MAX_SIZE / 2` on 64-bit). Anything larger (a huge upload) still
/// gets its own mapping and goes back to the system when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Keeps allocations up to [`MMAP_THRESHOLD`] in the heap. Call once,
/// first thing; later calls change nothing.
pub(crate) fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; glibc serialises it
    // with the allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Whether glibc served this allocation by a mapping of its own: the
    /// IS_MMAPPED bit (2) of the chunk's size word, just before the data.
    /// Per allocation, so tests running alongside cannot disturb it (the
    /// process-wide counters of `mallinfo2` can).
    fn mapped(buf: &[u8]) -> bool {
        // SAFETY: every glibc malloc chunk has its size word right before
        // the pointer it hands out; reading it does not change it.
        let size_word = unsafe { *(buf.as_ptr() as *const usize).sub(1) };
        size_word & 2 != 0
    }

    #[test]
    fn a_megabyte_buffer_comes_from_the_heap_not_its_own_mapping() {
        tune();
        let buf = std::hint::black_box(vec![1u8; 1 << 20]);
        assert!(!mapped(&buf), "a 1 MiB buffer was mmapped");
        let huge = std::hint::black_box(vec![1u8; 64 << 20]);
        assert!(mapped(&huge), "64 MiB should be mapped");
    }
}
