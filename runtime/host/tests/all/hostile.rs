//! Every hostile guest at once, several copies of each, next to a well-behaved deployment
//! under steady load: each hostile request ends within its limit with its own outcome, and
//! the well-behaved deployment keeps answering. Its p99 latency alone and under attack are
//! printed, not asserted (this is a debug build on a shared machine); `bench/hostile.sh`
//! measures them on a release build.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use virga::Limits;
use virga_test_artifacts::{FETCHER, HELLO, HOSTILE, LOOPING, MEMORY_BOMB};

use crate::support::{Proto, TestHost};
use crate::upstream::Upstream;

/// What a hostile request must end with: one of some statuses (the limit that trips first
/// may depend on the load: a CPU loop waiting its turn for a long-running lane meets its wall
/// limit), or a response body cut short.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Status(&'static [u16]),
    Cut,
}

/// `clients` loops of `per_client` hello requests each; the sorted latencies.
async fn hello_latencies(host: &Arc<TestHost>, clients: usize, per_client: usize) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let started = Instant::now();
                let reply = host.get(Proto::H1, "/hello").await.expect("hello answers");
                assert_eq!(reply.status, 200, "hello under attack: {}", reply.text());
                took.push(started.elapsed());
            }
            took
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_hostile_guests_at_once_leave_the_others_served() {
    let _heavy = crate::support::MEMORY_HEAVY.lock().await;
    let upstream = Upstream::plain().await;
    let wall = Duration::from_secs(2);
    let limits = Limits::default()
        .wall_time(wall)
        .memory(32 << 20)
        .response_body(8 << 20);
    let host = Arc::new(
        TestHost::builder()
            .guest("hello", HELLO, "*/hello")
            .guest("hostile", HOSTILE, "*/h/*")
            .limits(limits.clone())
            .guest("looping", LOOPING, "*/loop")
            .limits(limits.clone())
            .guest("bomb", MEMORY_BOMB, "*/bomb")
            .limits(limits.clone())
            .guest("fetcher", FETCHER, "*/f/*")
            .allow(&upstream.url("http", ""))
            .limits(limits)
            .start()
            .await,
    );
    let flood = format!(
        "/f/concurrent?url={}&n=1000",
        form_urlencoded::byte_serialize(upstream.url("http", "/bytes?n=10").as_bytes())
            .collect::<String>()
    );
    let attacks: Vec<(String, Outcome)> = [
        ("/loop", Outcome::Status(&[503, 504])),
        ("/bomb", Outcome::Status(&[500, 504])),
        ("/h/recurse", Outcome::Status(&[500])),
        ("/h/stdout", Outcome::Status(&[200, 503, 504])),
        ("/h/wait", Outcome::Status(&[504])),
        ("/h/headers", Outcome::Status(&[500])),
        ("/h/stream", Outcome::Cut),
        // A declared length over the response-body limit is refused before a byte is sent.
        ("/h/huge", Outcome::Status(&[500])),
        // The subrequest flood: 1000 fetches at once; past the 50th each fails naming the limit,
        // and the guest answers 502 (unless the flood spends its CPU or wall time first).
        (flood.as_str(), Outcome::Status(&[502, 503, 504])),
    ]
    .into_iter()
    .map(|(path, outcome)| (path.to_owned(), outcome))
    .collect();

    let alone = hello_latencies(&host, 4, 50).await;

    // Two attackers per hostile guest, each repeating its request until hello is measured.
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for (path, outcome) in attacks.iter().cloned().flat_map(|a| [a.clone(), a]) {
        let host = host.clone();
        let stop = stop.clone();
        attackers.push(tokio::spawn(async move {
            let mut done = 0u32;
            loop {
                let started = Instant::now();
                let reply =
                    tokio::time::timeout(Duration::from_secs(20), host.get(Proto::H1, &path))
                        .await
                        .unwrap_or_else(|_| panic!("{path} never ended"));
                let took = started.elapsed();
                match (outcome, &reply) {
                    (Outcome::Status(codes), Ok(reply)) => {
                        let status = reply.status.as_u16();
                        assert!(codes.contains(&status), "{path}: {status} {}", reply.text());
                        if status >= 503 {
                            assert!(reply.text().contains("limit"), "{path}: {}", reply.text());
                        }
                    }
                    (Outcome::Cut, Err(_)) => {}
                    (expected, got) => panic!("{path}: expected {expected:?}, got {got:?}"),
                }
                // Within its wall limit, plus the time a loaded debug build takes to answer.
                assert!(took < wall + Duration::from_secs(8), "{path} took {took:?}");
                done += 1;
                if stop.load(Ordering::Relaxed) {
                    return (path, done);
                }
            }
        }));
    }
    let attacked = hello_latencies(&host, 4, 50).await;
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        let (path, done) = attacker.await.unwrap();
        println!("hostile {path}: {done} requests, each ended with its expected outcome");
    }
    let (alone, attacked) = (p99(&alone), p99(&attacked));
    println!(
        "hello p99 alone {alone:?}, under attack {attacked:?} ({:.1}x)",
        attacked.as_secs_f64() / alone.as_secs_f64()
    );
    // Everything is released: a last hello on a quiet host.
    assert_eq!(host.get(Proto::H1, "/hello").await.unwrap().status, 200);
}
