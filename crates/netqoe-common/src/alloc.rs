//! The global allocator of the long-running binaries: mimalloc, told to keep freed memory and
//! to use ordinary pages.
//!
//! mimalloc hands memory a thread no longer uses back to the kernel after a short delay (1 s
//! in its v3). The aggregator and ingest free and reallocate tens of megabytes per second in
//! bursts (a batch of events, its window states, its statement buffers), so the default made
//! the kernel zero-fill the same memory again and again: page faults cost about a tenth of the
//! aggregator's CPU in `make bench`. Keeping freed memory for [`PURGE_DELAY_MS`] halves the
//! page faults; memory a quiet process no longer needs still goes back after that delay.
//!
//! mimalloc also asks for transparent huge pages (`madvise(MADV_HUGEPAGE)`) on its arenas.
//! Each first touch of such memory then makes the kernel clear 2 MiB, and every partial purge
//! splits a huge page that the next burst faults in again: with the purge delay above, that
//! clearing was still ~11 % of the aggregator's CPU. [`tune`] turns transparent huge pages off
//! for the process (`PR_SET_THP_DISABLE`, which processes it starts inherit).

pub use mimalloc::MiMalloc;

/// How long freed memory stays with the process before it goes back to the kernel.
pub const PURGE_DELAY_MS: i64 = 10_000;

/// Indexes in mimalloc v3's `mi_option_e` (libmimalloc-sys names only some of its options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Applies the allocator settings; call first thing in `main`. Settings an operator gives in
/// `MIMALLOC_PURGE_DELAY` or `MIMALLOC_ALLOW_THP` are left as they are.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_option(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS);
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // New arenas are no longer advised for huge pages; the flag also covers the arena
        // mimalloc reserved before `main`.
        set_option(MI_OPTION_ALLOW_THP, 0);
        // Only kernels older than 3.15 lack the flag; they keep huge pages.
        let _ = nix::sys::prctl::set_thp_disable(true);
    }
}

fn set_option(option: libmimalloc_sys::mi_option_t, value: i64) {
    // SAFETY: mi_option_set stores one integer in mimalloc's option table; it takes no
    // pointers and may be called at any time, from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(option, value as _);
    }
}

fn option(option: libmimalloc_sys::mi_option_t) -> i64 {
    // SAFETY: as in `set_option`: reads one integer from mimalloc's option table.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_get(option) as i64
    }
}

/// The current purge delay in milliseconds, as mimalloc reads it.
pub fn purge_delay_ms() -> i64 {
    option(MI_OPTION_PURGE_DELAY)
}

/// Whether mimalloc may ask for transparent huge pages, and whether the kernel would give
/// them to this process.
pub fn huge_pages_allowed() -> (bool, bool) {
    let kernel = !nix::sys::prctl::get_thp_disable().unwrap_or(false);
    (option(MI_OPTION_ALLOW_THP) != 0, kernel)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tune_keeps_freed_memory_and_turns_huge_pages_off() {
        let operator = std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
            || std::env::var_os("MIMALLOC_ALLOW_THP").is_some();
        if !operator {
            // mimalloc v3's defaults: the option indexes name the right options.
            assert_eq!(super::purge_delay_ms(), 1000);
            assert_eq!(super::huge_pages_allowed(), (true, true));
            super::tune();
            assert_eq!(super::purge_delay_ms(), super::PURGE_DELAY_MS);
            assert_eq!(super::huge_pages_allowed(), (false, false));
        }
    }
}
