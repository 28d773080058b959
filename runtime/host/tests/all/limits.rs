//! Limits are enforced per request: a looping, trapping or memory-hungry guest gets its own
//! request answered 5xx, and everything else carries on.

use std::time::Duration;

use virga::Limits;
use virga_test_artifacts::{COUNTER, HELLO, LOOPING, MEMORY_BOMB, TRAPPING};

use crate::support::{Proto, TestHost};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_guest_is_cut_at_its_cpu_limit_while_others_are_served() {
    let host = TestHost::builder()
        .guest("loop", LOOPING, "*/loop")
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    let host = std::sync::Arc::new(host);
    let looping = {
        let host = host.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let reply = host.get(Proto::H1, "/loop").await.unwrap();
            (reply, started.elapsed())
        })
    };
    let mut hellos = Vec::new();
    for i in 0..20 {
        let host = host.clone();
        hellos.push(tokio::spawn(async move {
            host.get(Proto::H2c, &format!("/h{i}")).await.unwrap()
        }));
    }
    for hello in hellos {
        let reply = hello.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let (reply, elapsed) = looping.await.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(
        reply.text(),
        "deployment 'loop' failed: the handler exceeded its cpu-time limit of 50 ms\n"
    );
    // Generous: CPU time is counted in 1 ms ticks; this only catches a limit not enforced.
    assert!(elapsed < Duration::from_secs(5), "cut after {elapsed:?}");
}

#[tokio::test]
async fn a_trapping_guest_gets_500_and_the_host_carries_on() {
    let host = TestHost::builder()
        .guest("trap", TRAPPING, "*/trap")
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    for _ in 0..3 {
        let reply = host.get(Proto::H1, "/trap").await.unwrap();
        assert_eq!(reply.status, 500);
        let text = reply.text();
        assert!(
            text.starts_with("deployment 'trap' failed: the handler trapped: "),
            "{text}"
        );
        assert!(text.contains("unreachable"), "{text}");
        assert_eq!(host.get(Proto::H1, "/ok").await.unwrap().status, 200);
    }
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_memory_bomb_gets_500_and_host_memory_stays_bounded() {
    let _heavy = crate::support::MEMORY_HEAVY.lock().await;
    let host = TestHost::builder()
        .guest("bomb", MEMORY_BOMB, "*/bomb")
        .limits(Limits::default().memory(32 << 20))
        .guest("hello", HELLO, "*/*")
        .start()
        .await;
    // Warm up once, then measure the growth over many bombs.
    let reply = host.get(Proto::H1, "/bomb").await.unwrap();
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.text(),
        "deployment 'bomb' failed: the handler exceeded its memory limit of 32 MiB\n"
    );
    let before = rss_bytes();
    for _ in 0..20 {
        let reply = host.get(Proto::H1, "/bomb").await.unwrap();
        assert_eq!(reply.status, 500);
    }
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    // 20 bombs of 32 MiB each would be 640 MiB if memory were kept; allow one slot's worth.
    assert!(growth < 64 << 20, "RSS grew by {} MiB", growth >> 20);
    assert_eq!(host.get(Proto::H1, "/").await.unwrap().status, 200);
}

#[tokio::test]
async fn wall_clock_limit_is_enforced() {
    // The looping guest with a CPU budget far above its wall-clock budget: the wall clock
    // trips first.
    let host = TestHost::builder()
        .guest("loop", LOOPING, "*/*")
        .limits(
            Limits::default()
                .cpu_time(Duration::from_secs(60))
                .wall_time(Duration::from_millis(200)),
        )
        .start()
        .await;
    let reply = host.get(Proto::H1, "/").await.unwrap();
    assert_eq!(reply.status, 504);
    assert_eq!(
        reply.text(),
        "deployment 'loop' failed: the handler exceeded its wall-time limit of 200 ms\n"
    );
}

#[tokio::test]
async fn state_does_not_leak_between_requests() {
    let host = TestHost::builder()
        .guest("counter", COUNTER, "*/*")
        .start()
        .await;
    for proto in [Proto::H1, Proto::H1, Proto::H2c, Proto::H2Tls] {
        let reply = host.get(proto, "/").await.unwrap();
        assert_eq!(reply.text(), "1\n", "{proto:?}");
    }
}

/// Waiting for I/O is not CPU time: a guest reading a body that trickles in (40 chunks,
/// 5 ms apart: 200 ms of waiting) stays well inside a 10 ms CPU limit. (Each wait used to
/// be charged a tick when the host handed over the bytes through the guest's allocator.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_slow_body_is_not_charged_as_cpu_time() {
    use bytes::Bytes;
    let host = TestHost::builder()
        .guest("echo", virga_test_artifacts::ECHO, "*/*")
        .limits(Limits::default().cpu_time(Duration::from_millis(10)))
        .start()
        .await;
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
    let body =
        http_body_util::StreamBody::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let request = http::Request::put(host.uri(Proto::H1, "/sum"))
        .body(http_body_util::BodyExt::boxed(body))
        .unwrap();
    let feeder = tokio::spawn(async move {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let chunk = Bytes::from(vec![1u8; 1024]);
            if tx.send(Ok(http_body::Frame::data(chunk))).await.is_err() {
                return;
            }
        }
    });
    let reply = host.request(Proto::H1, request).await.unwrap();
    feeder.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().starts_with("40960 "), "{}", reply.text());
}
