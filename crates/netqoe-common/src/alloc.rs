//! The global allocator of the long-running binaries: mimalloc, told to keep freed memory.
//!
//! mimalloc hands memory a thread no longer uses back to the kernel after a short delay (1 s
//! in its v3). The aggregator and ingest free and reallocate tens of megabytes per second in
//! bursts (a batch of events, its window states, its statement buffers), so the default made
//! the kernel zero-fill the same memory again and again: page faults cost about a tenth of the
//! aggregator's CPU in `make bench`. Keeping freed memory for [`PURGE_DELAY_MS`] halves the
//! page faults; memory a quiet process no longer needs still goes back after that delay.

pub use mimalloc::MiMalloc;

/// How long freed memory stays with the process before it goes back to the kernel.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys names only some
/// of its options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies the allocator settings; call first thing in `main`. A purge delay given in
/// `MIMALLOC_PURGE_DELAY` is left as the operator set it.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set stores one integer in mimalloc's option table; it takes no
    // pointers and may be called at any time, from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _);
    }
}

/// The current purge delay in milliseconds, as mimalloc reads it.
pub fn purge_delay_ms() -> i64 {
    // SAFETY: as in `tune`: reads one integer from mimalloc's option table.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) as i64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tune_sets_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // mimalloc v3's default purge delay: the option index names the right option.
            assert_eq!(super::purge_delay_ms(), 1000);
            super::tune();
            assert_eq!(super::purge_delay_ms(), super::PURGE_DELAY_MS);
        }
    }
}
