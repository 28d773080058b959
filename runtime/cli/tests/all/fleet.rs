//! Fleet mode: three `virga serve` hosts sharing deployments through a real three-node NATS
//! JetStream cluster (Debian's `nats-server`, which `scripts/test` installs), on loopback.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::serve::{Host, TOKEN, serve};
use super::{Running, get, tempdir};

/// A JetStream cluster of `nats-server` processes on loopback ports.
struct NatsCluster {
    dir: PathBuf,
    /// (client, cluster, monitoring) ports per node.
    ports: Vec<(u16, u16, u16)>,
    nodes: Vec<Option<Running>>,
}

/// `n` distinct free loopback ports: every listener is held until all are picked, so no two
/// nodes are handed the same port.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

impl NatsCluster {
    /// Starts a cluster of `size` nodes and waits until every one is healthy. A port picked
    /// free can still be taken by another process before `nats-server` binds it (the other
    /// tests of this binary run alongside), so a cluster that does not come up is started
    /// again on fresh ports, twice at most; the last failure panics with the failing node's
    /// log.
    fn start(dir: &Path, size: usize) -> Self {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let mut cluster = Self::launch(&dir.join(format!("attempt{attempt}")), size);
            match cluster.wait_healthy(Duration::from_secs(30)) {
                Ok(()) => return cluster,
                Err(why) if attempt < ATTEMPTS => {
                    eprintln!("NATS cluster attempt {attempt} failed, again on fresh ports: {why}");
                    attempt += 1;
                }
                Err(why) => panic!("NATS cluster never came up ({ATTEMPTS} attempts): {why}"),
            }
        }
    }

    fn launch(dir: &Path, size: usize) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ports = free_ports(3 * size)
            .chunks(3)
            .map(|p| (p[0], p[1], p[2]))
            .collect();
        let mut cluster = Self {
            dir: dir.to_path_buf(),
            ports,
            nodes: (0..size).map(|_| None).collect(),
        };
        for node in 0..size {
            cluster.start_node(node);
        }
        cluster
    }

    fn log_path(&self, node: usize) -> PathBuf {
        self.dir.join(format!("n{node}.log"))
    }

    fn start_node(&mut self, node: usize) {
        let (client, cluster, monitor) = self.ports[node];
        let routes: Vec<String> = self
            .ports
            .iter()
            .map(|(_, c, _)| format!("\"nats://127.0.0.1:{c}\""))
            .collect();
        let store = self.dir.join(format!("n{node}"));
        let config = self.dir.join(format!("n{node}.conf"));
        std::fs::write(
            &config,
            format!(
                "server_name: n{node}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                 jetstream {{ store_dir: \"{}\" }}\n\
                 cluster {{ name: virga-test, listen: 127.0.0.1:{cluster}, routes: [{}] }}\n",
                store.display(),
                routes.join(", ")
            ),
        )
        .unwrap();
        // nats-server logs to stderr; a restarted node appends to the same file.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(node))
            .unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nats-server ({e}): scripts/test installs it (apt-get install nats-server)")
            });
        self.nodes[node] = Some(Running(child));
    }

    /// The last lines of a node's log, for failure messages.
    fn log_tail(&self, node: usize) -> String {
        let log = std::fs::read_to_string(self.log_path(node)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits until every running node reports JetStream healthy; panics if one does not
    /// within 60 s.
    fn wait_ready(&mut self) {
        if let Err(why) = self.wait_healthy(Duration::from_secs(60)) {
            panic!("{why}");
        }
    }

    /// Waits until every running node reports JetStream healthy, for at most `within` in
    /// all; a node that exits or stays unhealthy is an error carrying its log.
    fn wait_healthy(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        for node in 0..self.nodes.len() {
            let monitor = self.ports[node].2;
            let url = format!("http://127.0.0.1:{monitor}");
            while let Some(Running(child)) = self.nodes[node].as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "NATS node {node} exited ({status}):\n{}",
                        self.log_tail(node)
                    ));
                }
                let healthy = std::net::TcpStream::connect(("127.0.0.1", monitor)).is_ok()
                    && get(&url, "/healthz").starts_with("HTTP/1.1 200");
                if healthy {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "NATS node {node} not healthy after {within:?}:\n{}",
                        self.log_tail(node)
                    ));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    /// The node leading the deployment bucket's stream (from a live node's monitoring).
    fn kv_leader(&self) -> usize {
        let (node, (_, _, monitor)) = self
            .ports
            .iter()
            .enumerate()
            .find(|(node, _)| self.nodes[*node].is_some())
            .expect("a live node");
        let jsz: String = get(
            &format!("http://127.0.0.1:{monitor}"),
            "/jsz?accounts=true&streams=true",
        )
        .split_whitespace()
        .collect();
        let stream = jsz
            .find("\"name\":\"KV_virga-deployments\"")
            .unwrap_or_else(|| panic!("node {node} does not list the bucket: {jsz}"));
        let leader = &jsz[stream..];
        let at = leader
            .find("\"leader\":\"n")
            .expect("the stream has a leader")
            + 11;
        leader[at..at + 1].parse().unwrap()
    }

    fn kill(&mut self, node: usize) {
        self.nodes[node] = None;
    }

    /// The `[store]` section of hosts using this cluster.
    fn store_section(&self) -> String {
        let servers: Vec<String> = self
            .ports
            .iter()
            .map(|(c, _, _)| format!("\"nats://127.0.0.1:{c}\""))
            .collect();
        format!(
            "[store]\nkind = \"nats\"\nservers = [{}]\nreplicas = 3\ntimeout_ms = 10000\n\
             poll_ms = 250\n",
            servers.join(", ")
        )
    }
}

/// Deploys the echo guest as `app` on every host with `V=value` through `host`'s admin API.
fn deploy_version(host: &Host, value: &str) {
    let (ok, out, err) = host.cli(&[
        "deploy",
        virga_test_artifacts::ECHO,
        "--name",
        "app",
        "--route",
        "*/*",
        "--var",
        &format!("V={value}"),
    ]);
    assert!(ok, "deploy V={value}: {out}{err}");
}

/// Waits until every host answers `V=value`; returns how long that took.
fn converged(hosts: &[&Host], value: &str, within: Duration) -> Duration {
    let start = Instant::now();
    for (i, host) in hosts.iter().enumerate() {
        loop {
            if host.body("/env?V") == value {
                break;
            }
            assert!(
                start.elapsed() < within,
                "host {i} still answers {:?}, not {value:?}, after {within:?}; health: {}",
                host.body("/env?V"),
                health(host)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    start.elapsed()
}

/// Waits until every host's `/v1/health` says `status`, for at most `within` in all.
fn wait_for_status(hosts: &[&Host], status: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let expected = format!("\"status\":\"{status}\"");
    for host in hosts {
        while !health(host).contains(&expected) {
            assert!(
                Instant::now() < deadline,
                "never {status}: {}",
                health(host)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn health(host: &Host) -> String {
    let response = get(&host.admin, "/v1/health");
    response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()
}

#[test]
fn three_hosts_converge_through_a_jetstream_cluster_and_survive_losing_it() {
    let dir = tempdir("fleet");
    let mut nats = NatsCluster::start(&dir.join("nats"), 3);
    let store = nats.store_section();
    let host_dirs: Vec<PathBuf> = (0..4).map(|i| dir.join(format!("host{i}"))).collect();
    for d in &host_dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let hosts: Vec<Host> = host_dirs[..3].iter().map(|d| serve(d, &store)).collect();
    let all: Vec<&Host> = hosts.iter().collect();
    let within = Duration::from_secs(2);

    // A deploy through host 1 is served by all three within 2 s; so are the next one and a
    // rollback.
    deploy_version(&hosts[0], "1");
    converged(&all, "1", within);
    deploy_version(&hosts[0], "2");
    converged(&all, "2", within);
    let (ok, out, err) = hosts[0].cli(&["rollback", "app"]);
    assert!(ok, "rollback: {out}{err}");
    converged(&all, "1", within);
    // A deploy through another host reaches the rest just as well.
    deploy_version(&hosts[2], "3");
    converged(&all, "3", within);
    for host in &hosts {
        assert!(
            health(host).contains("\"status\":\"ok\""),
            "{}",
            health(host)
        );
    }

    // One NATS node down — the one leading the deployment bucket: the hosts serve on, and
    // deploys go on and converge (one sent while the stream elects a new leader waits for
    // it, within the store's timeout).
    let leader = nats.kv_leader();
    nats.kill(leader);
    converged(&all, "3", Duration::ZERO);
    let sent = Instant::now();
    deploy_version(&hosts[0], "4");
    let took = sent.elapsed();
    let spread = converged(&all, "4", within);
    eprintln!(
        "bucket leader n{leader} down: the deploy took {took:?}, all hosts served it {spread:?} later"
    );

    // Every NATS node down: every host keeps serving its state, says it is degraded, and
    // refuses changes with a clear error rather than forking.
    for node in 0..3 {
        nats.kill(node);
    }
    wait_for_status(&all, "degraded", Duration::from_secs(10));
    for host in &hosts {
        assert!(health(host).contains("NATS"), "{}", health(host));
        assert_eq!(host.body("/env?V"), "4");
        let metrics = super::send(
            &host.admin,
            "GET",
            "/metrics",
            &format!("Authorization: Bearer {TOKEN}\r\n"),
        );
        assert!(metrics.contains("virga_store_degraded 1"), "{metrics}");
    }
    let (ok, out, err) = hosts[1].cli(&[
        "deploy",
        virga_test_artifacts::ECHO,
        "--name",
        "app",
        "--route",
        "*/*",
        "--var",
        "V=lost",
    ]);
    assert!(!ok, "a deploy without NATS must fail: {out}");
    assert!(err.contains("503") && err.contains("NATS"), "{err}");
    converged(&all, "4", within);

    // NATS back: the hosts recover, and a new deploy converges again.
    for node in 0..3 {
        nats.start_node(node);
    }
    nats.wait_ready();
    wait_for_status(&all, "ok", Duration::from_secs(30));
    deploy_version(&hosts[1], "5");
    converged(&all, "5", within);

    // A host started fresh while NATS is up catches up to the current state.
    let fresh = serve(&host_dirs[3], &store);
    converged(&[&fresh], "5", within);
    let listed = fresh.cli(&["list"]);
    assert!(listed.0, "{listed:?}");
    assert!(listed.1.contains("app"), "{}", listed.1);
}

#[test]
fn bad_nats_settings_stop_the_start_with_their_name() {
    let dir = tempdir("fleet-bad");
    for (store, expected) in [
        (
            "[store]\nkind = \"nats\"\ncredentials = \"missing.creds\"\n",
            "missing.creds",
        ),
        (
            "[store]\nkind = \"nats\"\nservers = [\"nats://127.0.0.1:notaport\"]\n",
            "NATS servers",
        ),
        (
            "[store]\nkind = \"nats\"\ntls_ca = \"missing-ca.pem\"\n",
            "missing-ca.pem",
        ),
        (
            "[store]\nkind = \"nats\"\nkv_bucket = \"has space\"\n",
            "invalid bucket name 'has space'",
        ),
    ] {
        let config = dir.join("virga.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nhttp = \"127.0.0.1:0\"\nhttps = \"off\"\nadmin = \"off\"\n\
                 state_dir = \"{}\"\n{store}",
                dir.join("state").display()
            ),
        )
        .unwrap();
        let out = super::virga()
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{store}: {stderr}");
        assert!(stderr.contains(expected), "{store}: {stderr}");
        assert!(!stderr.contains("panicked"), "{store}: {stderr}");
    }
}
