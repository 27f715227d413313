//! Listening ports for tests that hand a port to another process (HAProxy, marathon-lb).
//!
//! Binding `127.0.0.1:0` and releasing the port is racy across test processes: the kernel may
//! hand the same ephemeral port to another test's `bind(0)` or outgoing connection, and two
//! HAProxies both bind it (`SO_REUSEPORT`) and split its requests. So ports come from below
//! the kernel's ephemeral range, and each one is reserved for the life of the test process by
//! an exclusive `flock` on a file named after it, which the kernel drops when the process exits.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Ports handed out come from this range (Linux's ephemeral range starts at 32768).
const RANGE: std::ops::Range<u32> = 10_000..32_000;

/// The lock files held by this process: one per reserved port.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// A loopback port no other test process holds and nothing listens on right now; it stays
/// reserved until this process exits.
///
/// # Panics
/// When no port can be found after many tries (the range is exhausted or `/tmp` unwritable).
pub fn free_port() -> u16 {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join("marathon-lb-test-ports");
    std::fs::create_dir_all(&dir).expect("creating the test port lock dir");
    let seed = std::process::id().wrapping_mul(2_654_435_761);
    for attempt in 0..2_000u32 {
        let call = CALLS.fetch_add(1, Ordering::Relaxed);
        let spread = seed
            .wrapping_add(call.wrapping_mul(40_503))
            .wrapping_add(attempt);
        let port = RANGE.start + spread % (RANGE.end - RANGE.start);
        let Ok(file) = File::create(dir.join(port.to_string())) else {
            continue;
        };
        // SAFETY: flock on a file descriptor this function owns and keeps open.
        #[allow(unsafe_code)]
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if locked && std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
            return port as u16;
        }
    }
    panic!("no free test port in {RANGE:?}");
}

/// `n` distinct ports from [`free_port`].
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = super::free_ports(50);
        let unique: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), 50);
        for port in ports {
            assert!((10_000..32_000).contains(&port));
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
