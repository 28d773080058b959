//! Per-deployment resource limits, enforced on every request: one typed policy, set the same
//! way from the library ([`Limits`] setters), the configuration file (`[limits]`), the admin
//! API (query parameters) and the CLI (`--limit KEY=VALUE`), all through [`Limits::set`].

use std::fmt;
use std::time::Duration;

/// The resource limits of one deployment. Every request gets a fresh sandbox bounded by these.
///
/// Build with [`Limits::default`] and the setters; each field documents its default and the
/// key that sets it by name ([`Limits::set`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Guest CPU time per request: time spent executing guest code and the host calls it
    /// makes that return without waiting (the host's work for the guest), not time spent
    /// waiting for I/O. Measured in epoch ticks of the engine. Default 50 ms; key `cpu_ms`.
    pub cpu_time: Duration,
    /// Wall-clock time per request, from dispatch until the response body is complete.
    /// Default 30 s; key `wall_ms`.
    pub wall_time: Duration,
    /// Linear memory of the guest, in bytes. Default 128 MiB; key `memory` (or `memory_mib`).
    pub memory: u64,
    /// Outbound requests (`wasi:http/outgoing-handler`) per incoming request. Default 50;
    /// key `subrequests`.
    pub subrequests: u32,
    /// Subrequests of one request in flight at once: sent and waiting for their response
    /// head. Further ones wait, unsent, until a head arrives (or a subrequest fails), so a
    /// request cannot set the host making hundreds of connections at once (Cloudflare
    /// Workers bounds open connections per request at 6 too; here a response whose head is
    /// in no longer counts, so a guest holding unread responses cannot deadlock itself).
    /// Default 6; key `concurrent_subrequests`.
    pub concurrent_subrequests: u32,
    /// Bytes of an incoming request's body. Default 100 MiB; key `request_body`
    /// (or `request_body_mib`). A declared larger `Content-Length` gets 413 at once.
    pub request_body: u64,
    /// Bytes of the response body a guest writes. Default 1 GiB; key `response_body`
    /// (or `response_body_mib`).
    pub response_body: u64,
    /// Bytes of one subrequest's body, each way: sent upstream, or received from it.
    /// Default 256 MiB; key `outbound_body` (or `outbound_body_mib`).
    pub outbound_body: u64,
    /// Requests of one deployment running at once. Excess requests wait up to
    /// [`queue_time`](Self::queue_time) for a slot, then get 503 with `Retry-After`.
    /// Default 256; key `concurrency`.
    pub concurrency: u32,
    /// How long a request may wait for one of the deployment's
    /// [`concurrency`](Self::concurrency) slots. Default 1 s; key `queue_ms`.
    pub queue_time: Duration,
    /// Subrequest connection set-up (DNS, TCP, TLS). Default 10 s; key `connect_timeout_ms`.
    /// A guest's `request-options` may ask for less, never for more (the same for the two
    /// timeouts below).
    pub connect_timeout: Duration,
    /// From sending a subrequest (connection set-up included) to its response head.
    /// Default 30 s; key `first_byte_timeout_ms`.
    pub first_byte_timeout: Duration,
    /// Between two pieces of a subrequest's response body. Default 30 s; key
    /// `between_bytes_timeout_ms`.
    pub between_bytes_timeout: Duration,
    /// Bytes the deployment may keep in the host cache (`virga:edge/cache`), its own share
    /// that no other deployment's entries can evict. Default 64 MiB; key `cache`
    /// (or `cache_mib`).
    pub cache: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_time: Duration::from_millis(50),
            wall_time: Duration::from_secs(30),
            memory: 128 << 20,
            subrequests: 50,
            concurrent_subrequests: 6,
            request_body: 100 << 20,
            response_body: 1 << 30,
            outbound_body: 256 << 20,
            concurrency: 256,
            queue_time: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
            cache: 64 << 20,
        }
    }
}

/// What unit a limit key takes.
#[derive(Clone, Copy)]
enum Unit {
    Millis,
    Bytes,
    Count,
}

/// Every limit by its canonical key (milliseconds, bytes, or a count).
const KEYS: [(&str, Unit); 14] = [
    ("cpu_ms", Unit::Millis),
    ("wall_ms", Unit::Millis),
    ("memory", Unit::Bytes),
    ("subrequests", Unit::Count),
    ("concurrent_subrequests", Unit::Count),
    ("request_body", Unit::Bytes),
    ("response_body", Unit::Bytes),
    ("outbound_body", Unit::Bytes),
    ("concurrency", Unit::Count),
    ("queue_ms", Unit::Millis),
    ("connect_timeout_ms", Unit::Millis),
    ("first_byte_timeout_ms", Unit::Millis),
    ("between_bytes_timeout_ms", Unit::Millis),
    ("cache", Unit::Bytes),
];

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

    /// Sets the subrequests allowed per request. Default is 50.
    pub fn subrequests(mut self, count: u32) -> Self {
        self.subrequests = count;
        self
    }

    /// Sets how many subrequests of one request may be in flight at once. Default is 6.
    pub fn concurrent_subrequests(mut self, count: u32) -> Self {
        self.concurrent_subrequests = count;
        self
    }

    /// Sets the largest incoming request body, in bytes. Default is 100 MiB.
    pub fn request_body(mut self, bytes: u64) -> Self {
        self.request_body = bytes;
        self
    }

    /// Sets the largest response body a guest may write, in bytes. Default is 1 GiB.
    pub fn response_body(mut self, bytes: u64) -> Self {
        self.response_body = bytes;
        self
    }

    /// Sets the largest subrequest body, each way, in bytes. Default is 256 MiB.
    pub fn outbound_body(mut self, bytes: u64) -> Self {
        self.outbound_body = bytes;
        self
    }

    /// Sets how many requests of the deployment may run at once. Default is 256.
    pub fn concurrency(mut self, requests: u32) -> Self {
        self.concurrency = requests;
        self
    }

    /// Sets how long a request waits for a concurrency slot. Default is 1 s.
    pub fn queue_time(mut self, limit: Duration) -> Self {
        self.queue_time = limit;
        self
    }

    /// Sets the subrequest connect timeout. Default is 10 s.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// Sets the subrequest first-byte timeout. Default is 30 s.
    pub fn first_byte_timeout(mut self, limit: Duration) -> Self {
        self.first_byte_timeout = limit;
        self
    }

    /// Sets the subrequest between-bytes timeout. Default is 30 s.
    pub fn between_bytes_timeout(mut self, limit: Duration) -> Self {
        self.between_bytes_timeout = limit;
        self
    }

    /// Sets the bytes the deployment may keep in the host cache. Default is 64 MiB.
    pub fn cache(mut self, bytes: u64) -> Self {
        self.cache = bytes;
        self
    }

    /// Sets a limit by its key: `cpu_ms`, `wall_ms`, `queue_ms`, `connect_timeout_ms`,
    /// `first_byte_timeout_ms`, `between_bytes_timeout_ms` (milliseconds); `memory`,
    /// `request_body`, `response_body`, `outbound_body`, `cache` (bytes, or MiB with a `_mib`
    /// suffix); `subrequests`, `concurrent_subrequests`, `concurrency` (counts). Zero is
    /// refused for every key but `subrequests` and `queue_ms`. The error names the key and
    /// what is wrong with it.
    pub fn set(&mut self, key: &str, value: u64) -> Result<(), String> {
        let (canonical, value) = match key.strip_suffix("_mib") {
            Some(base) if matches!(unit_of(base), Some(Unit::Bytes)) => (
                base,
                value.checked_mul(1 << 20).ok_or_else(|| too_large(key))?,
            ),
            _ => (key, value),
        };
        if unit_of(canonical).is_none() {
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "unknown limit '{key}' (known: {}; sizes also take a _mib suffix)",
                known.join(", ")
            ));
        }
        if value == 0 && !matches!(canonical, "subrequests" | "queue_ms") {
            return Err(format!("limit '{key}' must be greater than 0"));
        }
        let count = || u32::try_from(value).map_err(|_| too_large(key));
        let ms = Duration::from_millis(value);
        match canonical {
            "cpu_ms" => self.cpu_time = ms,
            "wall_ms" => self.wall_time = ms,
            "memory" => self.memory = value,
            "subrequests" => self.subrequests = count()?,
            "concurrent_subrequests" => self.concurrent_subrequests = count()?,
            "request_body" => self.request_body = value,
            "response_body" => self.response_body = value,
            "outbound_body" => self.outbound_body = value,
            "concurrency" => self.concurrency = count()?,
            "queue_ms" => self.queue_time = ms,
            "connect_timeout_ms" => self.connect_timeout = ms,
            "first_byte_timeout_ms" => self.first_byte_timeout = ms,
            "between_bytes_timeout_ms" => self.between_bytes_timeout = ms,
            "cache" => self.cache = value,
            _ => unreachable!("every key of KEYS is matched"),
        }
        Ok(())
    }

    /// Every limit by its canonical key, in a fixed order: what [`set`](Self::set) takes,
    /// what the admin API lists and what a store keeps.
    pub fn entries(&self) -> Vec<(&'static str, u64)> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        KEYS.iter()
            .map(|(key, _)| {
                let value = match *key {
                    "cpu_ms" => ms(self.cpu_time),
                    "wall_ms" => ms(self.wall_time),
                    "memory" => self.memory,
                    "subrequests" => u64::from(self.subrequests),
                    "concurrent_subrequests" => u64::from(self.concurrent_subrequests),
                    "request_body" => self.request_body,
                    "response_body" => self.response_body,
                    "outbound_body" => self.outbound_body,
                    "concurrency" => u64::from(self.concurrency),
                    "queue_ms" => ms(self.queue_time),
                    "connect_timeout_ms" => ms(self.connect_timeout),
                    "first_byte_timeout_ms" => ms(self.first_byte_timeout),
                    "cache" => self.cache,
                    _ => ms(self.between_bytes_timeout),
                };
                (*key, value)
            })
            .collect()
    }

    /// Whether `key` names a limit (canonical, or a size with a `_mib` suffix).
    pub fn is_key(key: &str) -> bool {
        unit_of(key).is_some()
            || key
                .strip_suffix("_mib")
                .is_some_and(|base| matches!(unit_of(base), Some(Unit::Bytes)))
    }

    /// The value of `limit` as people read it: `50 ms`, `128 MiB`, `50`.
    pub fn describe(&self, limit: Limit) -> String {
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        match limit {
            Limit::CpuTime => ms(self.cpu_time),
            Limit::WallTime => ms(self.wall_time),
            Limit::Memory => human_bytes(self.memory),
            Limit::Subrequests => format!("{} per request", self.subrequests),
            Limit::RequestBody => human_bytes(self.request_body),
            Limit::ResponseBody => human_bytes(self.response_body),
            Limit::OutboundBody => human_bytes(self.outbound_body),
            Limit::Concurrency => format!(
                "{} requests at once (waited {})",
                self.concurrency,
                ms(self.queue_time)
            ),
            Limit::ConnectTimeout => ms(self.connect_timeout),
            Limit::FirstByteTimeout => ms(self.first_byte_timeout),
            Limit::BetweenBytesTimeout => ms(self.between_bytes_timeout),
            Limit::Cache => human_bytes(self.cache),
        }
    }
}

fn unit_of(key: &str) -> Option<Unit> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, unit)| *unit)
}

fn too_large(key: &str) -> String {
    format!("limit '{key}' is too large")
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
    /// [`Limits::subrequests`].
    Subrequests,
    /// [`Limits::request_body`].
    RequestBody,
    /// [`Limits::response_body`].
    ResponseBody,
    /// [`Limits::outbound_body`].
    OutboundBody,
    /// [`Limits::concurrency`].
    Concurrency,
    /// [`Limits::connect_timeout`].
    ConnectTimeout,
    /// [`Limits::first_byte_timeout`].
    FirstByteTimeout,
    /// [`Limits::between_bytes_timeout`].
    BetweenBytesTimeout,
    /// [`Limits::cache`].
    Cache,
}

impl Limit {
    /// A stable, machine-readable name: `cpu-time`, `wall-time`, `memory`, `subrequests`,
    /// `request-body`, `response-body`, `outbound-body`, `concurrency`, `connect-timeout`,
    /// `first-byte-timeout`, `between-bytes-timeout`, `cache`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::CpuTime => "cpu-time",
            Limit::WallTime => "wall-time",
            Limit::Memory => "memory",
            Limit::Subrequests => "subrequests",
            Limit::RequestBody => "request-body",
            Limit::ResponseBody => "response-body",
            Limit::OutboundBody => "outbound-body",
            Limit::Concurrency => "concurrency",
            Limit::ConnectTimeout => "connect-timeout",
            Limit::FirstByteTimeout => "first-byte-timeout",
            Limit::BetweenBytesTimeout => "between-bytes-timeout",
            Limit::Cache => "cache",
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
        assert_eq!(limits.subrequests, 50);
        assert_eq!(limits.request_body, 100 << 20);
        assert_eq!(limits.concurrency, 256);
    }

    #[test]
    fn every_key_round_trips_through_set_and_entries() {
        let mut limits = Limits::default();
        for (i, (key, _)) in KEYS.iter().enumerate() {
            limits.set(key, 1000 + i as u64).unwrap();
        }
        for (i, (key, value)) in limits.entries().into_iter().enumerate() {
            assert_eq!(value, 1000 + i as u64, "{key}");
        }
        limits.set("memory_mib", 3).unwrap();
        assert_eq!(limits.memory, 3 << 20);
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let mut limits = Limits::default();
        let e = limits.set("cpu", 5).unwrap_err();
        assert!(
            e.contains("unknown limit 'cpu'") && e.contains("cpu_ms"),
            "{e}"
        );
        let e = limits.set("cpu_ms_mib", 5).unwrap_err();
        assert!(e.contains("unknown limit 'cpu_ms_mib'"), "{e}");
        let e = limits.set("memory", 0).unwrap_err();
        assert!(e.contains("'memory' must be greater than 0"), "{e}");
        let e = limits.set("concurrency", u64::MAX).unwrap_err();
        assert!(e.contains("'concurrency' is too large"), "{e}");
        let e = limits.set("memory_mib", u64::MAX).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        assert_eq!(limits, Limits::default(), "a refused value changes nothing");
        limits.set("subrequests", 0).unwrap();
        assert_eq!(limits.subrequests, 0);
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
