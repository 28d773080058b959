//! `NatsStore` against a real `nats-server` with JetStream on loopback: racing deploys from
//! two runtimes land in one order on both, and a state in the bucket that no host wrote (not
//! JSON) degrades the hosts without touching what they serve.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virga::store::NatsStore;
use virga::{DeploymentConfig, Runtime};
use virga_test_artifacts::HELLO;

use crate::support::tempdir;

/// Runs the `nats-server` that `command` makes for a free loopback port, and waits until it
/// listens there. The port is free when picked but may be taken before the server binds
/// it (tests run in parallel): a server that exits is started again on another port.
fn spawn_listening(command: impl Fn(u16) -> Command) -> (Child, u16) {
    for _attempt in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = command(port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nats-server ({e}): scripts/test installs it (apt-get install nats-server)")
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                eprintln!("nats-server on port {port} exited ({status}); trying another port");
                break;
            }
            // Listening, and still running (not someone else's listener on that port).
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && child.try_wait().unwrap().is_none()
            {
                return (child, port);
            }
            assert!(
                Instant::now() < deadline,
                "nats-server never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("nats-server exited on three free ports in a row");
}

/// One `nats-server -js` on a free loopback port, killed on drop.
struct Nats {
    child: Child,
    url: String,
}

impl Nats {
    fn start(dir: &Path) -> Self {
        let (child, port) = spawn_listening(|port| {
            let mut command = Command::new("nats-server");
            command
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
                .arg(dir);
            command
        });
        Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }

    fn runtime(&self, cache: &Path) -> Runtime {
        let store = NatsStore::builder()
            .servers([self.url.clone()])
            .poll_interval(Duration::from_millis(100))
            .open(cache)
            .unwrap();
        Runtime::builder().store(Arc::new(store)).build().unwrap()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` holds, for at most 10 s.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn racing_deploys_from_two_hosts_all_land_in_one_order() {
    let dir = tempdir();
    let nats = Nats::start(&dir.join("nats"));
    let hosts = [nats.runtime(&dir.join("a")), nats.runtime(&dir.join("b"))];
    let bytes = std::fs::read(HELLO).unwrap();
    let per_host = 5;
    std::thread::scope(|scope| {
        for (h, host) in hosts.iter().enumerate() {
            let bytes = &bytes;
            scope.spawn(move || {
                for i in 0..per_host {
                    let component = host.compile(bytes).unwrap();
                    host.deploy(
                        DeploymentConfig::new("app", component)
                            .route("*/*".parse().unwrap())
                            .var("BY", format!("{h}-{i}")),
                    )
                    .unwrap();
                }
            });
        }
    });
    // Every deploy landed, each with its own version number, and both hosts agree on the
    // whole table: the same versions, each with the same variables, the same one live.
    let total = 2 * per_host;
    eventually("both hosts at the same revision", || {
        hosts[0].store_health().revision == hosts[1].store_health().revision
    });
    let [a, b] = [&hosts[0], &hosts[1]].map(|h| h.deployments());
    assert_eq!(a, b);
    assert_eq!(a[0].version, total as u64, "{a:?}");
    assert_eq!(
        a[0].versions,
        (1..=total as u64).collect::<Vec<_>>(),
        "{a:?}"
    );
    for host in &hosts {
        assert_eq!(host.store_health().degraded, None);
    }
}

#[test]
fn a_bucket_state_no_host_wrote_degrades_the_hosts_and_changes_nothing() {
    let dir = tempdir();
    let nats = Nats::start(&dir.join("nats"));
    let host = nats.runtime(&dir.join("a"));
    let component = host.compile(&std::fs::read(HELLO).unwrap()).unwrap();
    host.deploy(DeploymentConfig::new("app", component.clone()).route("*/*".parse().unwrap()))
        .unwrap();
    let before = host.deployments();

    // Someone with access to the bucket writes a value that is not a deployment state.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(&nats.url).await.unwrap();
        let kv = async_nats::jetstream::new(client)
            .get_key_value("virga-deployments")
            .await
            .unwrap();
        kv.put("state", "{\"format\": 1, \"deployments\": 7".into())
            .await
            .unwrap();
    });
    eventually("the host reports the bad state", || {
        host.store_health()
            .degraded
            .is_some_and(|reason| reason.contains("unreadable"))
    });
    assert_eq!(host.deployments(), before);
    // A change now fails naming the problem instead of overwriting what it cannot read.
    let error = host
        .deploy(DeploymentConfig::new("other", component).route("x.example/*".parse().unwrap()))
        .unwrap_err();
    assert!(error.to_string().contains("unreadable"), "{error}");
    assert_eq!(host.deployments(), before);
}

#[test]
fn a_tls_server_with_a_token_is_used_with_the_right_settings_and_named_with_wrong_ones() {
    let dir = tempdir();
    let [ca, cert, key] = crate::upstream::TestCa::new().write_pem(&dir);
    let config = dir.join("nats.conf");
    let (mut server, port) = spawn_listening(|port| {
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\n\
                 authorization {{ token: \"s3cret\" }}\n\
                 tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
                dir.join("js").display(),
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let mut command = Command::new("nats-server");
        command.arg("-c").arg(&config);
        command
    });
    let open = |token: &str, cache: &str| {
        let store = NatsStore::builder()
            .servers([format!("tls://127.0.0.1:{port}")])
            .root_certificates(&ca)
            .require_tls(true)
            .token(token)
            .timeout(Duration::from_secs(2))
            .poll_interval(Duration::from_millis(100))
            .open(dir.join(cache))
            .unwrap();
        Runtime::builder().store(Arc::new(store)).build().unwrap()
    };
    let bytes = std::fs::read(HELLO).unwrap();

    // The right CA and token: deploys are committed, and the store is healthy.
    let good = open("s3cret", "good");
    let component = good.compile(&bytes).unwrap();
    let info = good
        .deploy(DeploymentConfig::new("app", component).route("*/*".parse().unwrap()))
        .unwrap();
    assert_eq!(info.version, 1);
    eventually("the store is healthy", || {
        good.store_health().degraded.is_none()
    });

    // A wrong token: the host starts (from its empty cache), says why it is degraded, and
    // refuses changes.
    let bad = open("wrong", "bad");
    eventually("the refusal is named", || {
        bad.store_health()
            .degraded
            .is_some_and(|reason| reason.to_lowercase().contains("authorization"))
    });
    let error = bad.compile(&bytes).unwrap_err();
    assert_eq!(
        error.status(),
        http::StatusCode::SERVICE_UNAVAILABLE,
        "{error}"
    );
    assert!(bad.deployments().is_empty());
    let _ = server.kill();
    let _ = server.wait();
}
