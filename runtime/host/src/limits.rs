//! Per-deployment resource limits, enforced on every request.

use std::fmt;
use std::time::Duration;

/// The resource limits of one deployment. Every request gets a fresh sandbox bounded by these.
///
/// Build with [`Limits::default`] and the setters; each setter documents its default.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Guest CPU time per request: time spent executing guest code, not time spent waiting
    /// for I/O. Measured in epoch ticks of the engine. Default is 50 ms.
    pub cpu_time: Duration,
    /// Wall-clock time per request, from dispatch until the response body is complete.
    /// Default is 30 s.
    pub wall_time: Duration,
    /// Linear memory of the guest, in bytes. Default is 128 MiB.
    pub memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_millis(50),
            wall_time: Duration::from_secs(30),
            memory: 128 << 20,
        }
    }
}

impl Limits {
    /// Sets the guest CPU time allowed per request. Default is 50 ms.
    pub fn cpu_time(mut self, limit: Duration) -> Self {
        self.cpu_time = limit;
        self
    }

    /// Sets the wall-clock time allowed per request. Default is 30 s.
    pub fn wall_time(mut self, limit: Duration) -> Self {
        self.wall_time = limit;
        self
    }

    /// Sets the linear memory allowed per request, in bytes. Default is 128 MiB.
    pub fn memory(mut self, bytes: u64) -> Self {
        self.memory = bytes;
        self
    }
}

/// Which limit a request exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`Limits::cpu_time`].
    CpuTime,
    /// [`Limits::wall_time`].
    WallTime,
    /// [`Limits::memory`].
    Memory,
}

impl Limit {
    /// A stable, machine-readable name: `cpu-time`, `wall-time`, `memory`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::CpuTime => "cpu-time",
            Limit::WallTime => "wall-time",
            Limit::Memory => "memory",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Formats a byte count the way people read limits: `128 MiB`, `64 KiB`, `100 B`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let limits = Limits::default();
        assert_eq!(limits.cpu_time, Duration::from_millis(50));
        assert_eq!(limits.wall_time, Duration::from_secs(30));
        assert_eq!(limits.memory, 128 * 1024 * 1024);
    }

    #[test]
    fn human_bytes_picks_the_largest_exact_unit() {
        assert_eq!(human_bytes(128 << 20), "128 MiB");
        assert_eq!(human_bytes(3 << 30), "3 GiB");
        assert_eq!(human_bytes(1536), "1536 B");
        assert_eq!(human_bytes(2048), "2 KiB");
        assert_eq!(human_bytes(7), "7 B");
    }
}
