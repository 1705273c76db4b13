//! Peak resident memory of this process, per job: Linux's `VmHWM`, reset at the start of a job
//! through `/proc/self/clear_refs` (a warm Lambda or the embedded runner handles many jobs in one
//! process). `None` where /proc does not say (other systems).

/// Starts a new peak: the next `peak_rss_bytes` covers what happens from now on.
pub fn reset_peak() {
    // best effort by design: a kernel without the reset reports the process's lifetime peak
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size since the last `reset_peak`, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
