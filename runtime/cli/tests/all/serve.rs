//! `virga serve` with `virga deploy/list/rollback/delete` against it, as an operator uses them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Running, get, get_with, send, tempdir, virga};

pub(super) const TOKEN: &str = "test-token-0123456789";

pub(super) struct Host {
    running: Running,
    http: String,
    pub(super) admin: String,
    dir: PathBuf,
}

/// A config on free ports with state in `dir/state`; without a token, the host makes one.
fn write_config(dir: &Path, token: Option<&str>, extra: &str) -> PathBuf {
    let config = dir.join("virga.toml");
    let token = token
        .map(|t| format!("admin_token = \"{t}\"\n"))
        .unwrap_or_default();
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp = \"127.0.0.1:0\"\nhttps = \"off\"\nadmin = \"127.0.0.1:0\"\n\
             {token}state_dir = \"{}\"\n{extra}",
            dir.join("state").display()
        ),
    )
    .unwrap();
    config
}

pub(super) fn serve(dir: &Path, extra: &str) -> Host {
    start(&write_config(dir, Some(TOKEN), extra), dir)
}

/// Starts `virga serve --config config` and reads the addresses it prints.
fn start(config: &Path, dir: &Path) -> Host {
    start_with_env(config, dir, &[])
}

fn start_with_env(config: &Path, dir: &Path, env: &[(&str, &str)]) -> Host {
    let mut child = virga()
        .args(["serve", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env_remove("VIRGA_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut http, mut admin) = (None, None);
    while http.is_none() || admin.is_none() {
        let line = lines.next().expect("serve printed its addresses").unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_owned);
        if line.starts_with("http on") {
            http = url;
        } else if line.starts_with("admin on") {
            admin = url;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Host {
        running: Running(child),
        http: http.unwrap(),
        admin: admin.unwrap().trim_end_matches('/').to_owned(),
        dir: dir.to_path_buf(),
    }
}

impl Host {
    /// Runs a client command against this host; returns (success, stdout, stderr).
    pub(super) fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = virga()
            .args(args)
            .args(["--admin", &self.admin, "--token", TOKEN])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(super) fn body(&self, path: &str) -> String {
        let response = get(&self.http, path);
        response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()
    }

    fn status(&self, path: &str) -> String {
        get(&self.http, path)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_owned()
    }

    fn stop(self) -> PathBuf {
        let mut running = self.running;
        let pid = running.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        assert!(running.0.wait().unwrap().success());
        self.dir
    }
}

fn deploy(host: &Host, wasm: &str, name: &str, route: &str) -> (bool, String, String) {
    host.cli(&["deploy", wasm, "--name", name, "--route", route])
}

#[test]
fn deploy_list_rollback_delete_through_the_cli() {
    use virga_test_artifacts::{COUNTER, HELLO};
    let host = serve(&tempdir("serve-cycle"), "");
    let (ok, out, err) = deploy(&host, HELLO, "app", "*/*");
    assert!(ok, "{err}");
    assert!(
        out.starts_with("deployed app  v1 live (kept: 1)  routes: */*"),
        "{out}"
    );
    assert_eq!(host.body("/a"), "hello from virga\nGET /a\n");

    let (ok, out, err) = deploy(&host, COUNTER, "app", "*/*");
    assert!(ok, "{err}");
    assert!(out.contains("v2 live (kept: 1, 2)"), "{out}");
    assert_eq!(host.body("/a"), "1\n");

    let (ok, out, _) = host.cli(&["list"]);
    assert!(ok);
    assert_eq!(out, "app  v2 live (kept: 1, 2)  routes: */*\n");
    let (ok, out, _) = host.cli(&["list", "--json"]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["deployments"][0]["version"], 2);

    let (ok, out, err) = host.cli(&["rollback", "app"]);
    assert!(ok, "{err}");
    assert!(out.contains("v1 live"), "{out}");
    assert_eq!(host.body("/a"), "hello from virga\nGET /a\n");
    let (ok, _, _) = host.cli(&["rollback", "app", "--to", "2"]);
    assert!(ok);
    assert_eq!(host.body("/a"), "1\n");
    let (ok, _, err) = host.cli(&["rollback", "app", "--to", "7"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "error: deployment 'app' has no version 7 to roll back to (kept: 1, 2) (404 Not Found)"
    );

    let (ok, out, _) = host.cli(&["delete", "app"]);
    assert!(ok);
    assert_eq!(out, "deleted app\n");
    assert_eq!(host.status("/a"), "404");
    let (ok, _, err) = host.cli(&["delete", "app"]);
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "error: no deployment named 'app' (404 Not Found)"
    );
    host.stop();
}

#[test]
fn a_restart_keeps_every_deployment() {
    use virga_test_artifacts::{COUNTER, HELLO};
    let host = serve(&tempdir("serve-restart"), "");
    assert!(deploy(&host, HELLO, "hello", "*/hello").0);
    assert!(deploy(&host, COUNTER, "counter", "*/count").0);
    assert!(deploy(&host, HELLO, "counter", "*/count").0);
    assert!(host.cli(&["rollback", "counter"]).0);
    let dir = host.stop();

    let host = serve(&dir, "");
    assert_eq!(host.body("/hello"), "hello from virga\nGET /hello\n");
    assert_eq!(
        host.body("/count"),
        "1\n",
        "the rolled-back version stays live"
    );
    let (_, out, _) = host.cli(&["list"]);
    assert!(out.contains("counter  v1 live (kept: 1, 2)"), "{out}");
    host.stop();
}

#[test]
fn bad_uploads_and_tokens_are_refused_and_nothing_changes() {
    use virga_test_artifacts::HELLO;
    let dir = tempdir("serve-bad");
    let host = serve(&dir, "max_upload_mib = 1\n");
    assert!(deploy(&host, HELLO, "app", "*/*").0);

    // A corrupt component: 400 naming the problem; v1 stays live.
    let corrupt = dir.join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm\x0d\0\x01\0nope").unwrap();
    let (ok, _, err) = deploy(&host, corrupt.to_str().unwrap(), "app", "*/*");
    assert!(!ok);
    assert!(err.starts_with("error: invalid component: "), "{err}");
    assert!(err.trim_end().ends_with("(400 Bad Request)"), "{err}");

    // A component that exports no handler.
    let empty = dir.join("empty.wat");
    std::fs::write(&empty, "(component)").unwrap();
    let (ok, _, err) = deploy(&host, empty.to_str().unwrap(), "app", "*/*");
    assert!(!ok);
    assert!(
        err.contains("does not export wasi:http/incoming-handler"),
        "{err}"
    );

    // A route owned by another deployment.
    let (ok, _, err) = deploy(&host, HELLO, "other", "*/*");
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "error: route '*/*' already belongs to deployment 'app' (409 Conflict)"
    );

    // An upload over the limit.
    let big = dir.join("big.wasm");
    std::fs::write(&big, vec![0u8; 2 << 20]).unwrap();
    let (ok, _, err) = deploy(&host, big.to_str().unwrap(), "app", "*/*");
    assert!(!ok);
    assert!(err.contains("larger than the upload limit"), "{err}");
    assert!(err.contains("413"), "{err}");

    // A bad name.
    let (ok, _, err) = deploy(&host, HELLO, "Bad Name!", "*/x");
    assert!(!ok);
    assert!(err.contains("invalid deployment name"), "{err}");

    // Missing and wrong tokens.
    for token in [None, Some("wrong")] {
        let mut command = virga();
        command
            .args(["delete", "app", "--admin", &host.admin, "--state-dir"])
            .arg(dir.join("nowhere"));
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let out = command.env_remove("VIRGA_TOKEN").output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        match token {
            None => assert!(err.contains("no --token or VIRGA_TOKEN"), "{err}"),
            Some(_) => assert!(
                err.contains("missing or wrong admin token") && err.contains("401"),
                "{err}"
            ),
        }
    }
    // After all of it, v1 is still the only version and still live.
    let (_, out, _) = host.cli(&["list"]);
    assert_eq!(out, "app  v1 live (kept: 1)  routes: */*\n");
    assert_eq!(host.body("/x"), "hello from virga\nGET /x\n");
    host.stop();
}

#[test]
fn metrics_are_served_to_scrapers_with_the_admin_token() {
    use virga_test_artifacts::HELLO;
    let dir = tempdir("serve-metrics");
    let host = serve(&dir, "");
    assert!(deploy(&host, HELLO, "app", "*/*").0);
    for _ in 0..2 {
        assert_eq!(host.status("/x"), "200");
    }
    let refused = get(&host.admin, "/metrics");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let wrong_method = send(&host.admin, "DELETE", "/metrics", &bearer);
    assert!(wrong_method.starts_with("HTTP/1.1 405"), "{wrong_method}");
    assert!(
        wrong_method.contains("DELETE is not allowed on /metrics"),
        "{wrong_method}"
    );
    let scraped = get_with(
        &host.admin,
        "/metrics",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    assert!(
        scraped.contains("content-type: text/plain; version=0.0.4"),
        "{scraped}"
    );
    assert!(
        scraped.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("virga_deployment=\"app\"")
                && l.ends_with(" 2")
        ),
        "{scraped}"
    );
    host.stop();
}

#[test]
fn serve_exports_spans_guest_and_host_logs_and_metrics_as_the_environment_says() {
    use super::otlp::{Receiver, attribute, hex, text};
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let receiver = tokio.block_on(Receiver::http());
    let dir = tempdir("serve-otel");
    let config = write_config(&dir, Some(TOKEN), "");
    let endpoint = format!("http://{}", receiver.addr);
    let host = start_with_env(
        &config,
        &dir,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "edge-test"),
        ],
    );
    assert!(deploy(&host, virga_test_artifacts::HOSTILE, "chatty", "*/*").0);
    let trace = "5a".repeat(16);
    let traceparent = format!("traceparent: 00-{trace}-00f067aa0ba902b7-01\r\n");
    let reply = get_with(&host.http, "/lines", &traceparent);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // SIGTERM: serve flushes its telemetry before it exits.
    host.stop();

    let received = receiver.receiver.received.lock().unwrap();
    let server = received
        .spans
        .iter()
        .find(|s| hex(&s.trace_id) == trace)
        .expect("the request's span");
    assert_eq!(
        attribute(&server.attributes, "virga.deployment").as_deref(),
        Some("chatty")
    );
    assert!(
        received.services.iter().all(|s| s == "edge-test"),
        "{:?}",
        received.services
    );
    let guest_lines: Vec<String> = received
        .logs
        .iter()
        .filter(|l| hex(&l.trace_id) == trace)
        .filter_map(|l| l.body.as_ref().and_then(text))
        .collect();
    assert_eq!(guest_lines.len(), 100, "the default bound");
    assert_eq!(guest_lines[1], "line 0");
    // The host's own log, through the tracing bridge.
    let deployed = received
        .logs
        .iter()
        .find(|l| l.body.as_ref().and_then(text).as_deref() == Some("deployed"))
        .expect("the host's 'deployed' log record");
    assert_eq!(
        attribute(&deployed.attributes, "deployment").as_deref(),
        Some("chatty")
    );
    assert!(
        received
            .metrics
            .iter()
            .any(|m| m.name == "http.server.request.duration"),
        "metrics were flushed at exit"
    );
    let paths = &received.http_paths;
    assert!(paths.iter().any(|p| p == "/v1/traces"), "{paths:?}");
}

#[test]
fn bad_telemetry_settings_stop_the_start_with_their_name() {
    let dir = tempdir("serve-badotel");
    let config = write_config(&dir, Some(TOKEN), "");
    for (env, expected) in [
        (
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            "OTLP over TLS",
        ),
        (
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url"),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ),
        (("OTEL_TRACES_EXPORTER", "zipkin"), "OTEL_TRACES_EXPORTER"),
    ] {
        let mut command = virga();
        command
            .args(["serve", "--config"])
            .arg(&config)
            .env(env.0, env.1);
        if env.0 == "OTEL_TRACES_EXPORTER" {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9");
        }
        let out = command.output().unwrap();
        assert!(!out.status.success(), "{env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{env:?}: {err}");
    }
}

#[test]
fn a_config_with_an_unknown_key_is_refused_by_name() {
    let dir = tempdir("serve-badconfig");
    let config = write_config(&dir, Some(TOKEN), "colour = \"blue\"\n");
    let out = virga()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown field `colour`"), "{err}");
    assert!(err.contains("virga.toml"), "{err}");
}

#[test]
fn a_host_killed_at_random_points_during_deploys_restarts_into_a_whole_state() {
    use virga_test_artifacts::{COUNTER, HELLO};
    let dir = tempdir("serve-crash");
    let host = serve(&dir, "");
    assert!(deploy(&host, HELLO, "app", "*/*").0);
    let mut host = Some(host);
    let mut interrupted = 0;
    for round in 0..20u64 {
        let current = host.take().unwrap();
        let wasm = if round % 2 == 0 { COUNTER } else { HELLO };
        let admin = current.admin.clone();
        let deploying = std::thread::spawn(move || {
            virga()
                .args([
                    "deploy", wasm, "--name", "app", "--route", "*/*", "--admin", &admin,
                    "--token", TOKEN,
                ])
                .output()
                .unwrap()
        });
        // A pseudo-random point in the deploy: 0-400 ms after it starts (a deploy takes a
        // few hundred ms here: process start, upload, compile, store, commit).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(std::time::Duration::from_millis(u64::from(nanos % 40) * 10));
        let mut running = current.running;
        let pid = running.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        let _ = running.0.wait();
        if !deploying.join().unwrap().status.success() {
            interrupted += 1;
        }

        let restarted = serve(&dir, "");
        let body = restarted.body("/crash");
        assert!(
            body == "hello from virga\nGET /crash\n" || body == "1\n",
            "round {round}: a broken state after SIGKILL: {body:?}"
        );
        let (ok, out, err) = restarted.cli(&["list"]);
        assert!(
            ok && out.starts_with("app  v"),
            "round {round}: {out} {err}"
        );
        host = Some(restarted);
    }
    eprintln!("{interrupted} of 20 deploys were cut off by the kill");
    assert!(interrupted > 0, "no kill landed during a deploy");
    host.unwrap().stop();
}

#[test]
fn deploy_takes_a_section_of_a_config_file_and_the_token_file_is_private() {
    use virga_test_artifacts::HELLO;
    let dir = tempdir("serve-section");
    // No admin_token in the config: the host generates one into the state dir, mode 0600.
    let host = start(&write_config(&dir, None, ""), &dir);
    let (http, admin) = (host.http.clone(), host.admin.clone());
    let token_file = dir.join("state/admin-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let app = dir.join("app.toml");
    std::fs::write(
        &app,
        format!(
            "[[deployments]]\nname = \"site\"\nmodule = \"{HELLO}\"\nroutes = [\"*/site/*\"]\n\
             limits = {{ memory_mib = 64 }}\n"
        ),
    )
    .unwrap();
    let out = virga()
        .args(["deploy", "--name", "site", "--config"])
        .arg(&app)
        .args(["--admin", &admin, "--state-dir"])
        .arg(dir.join("state"))
        .env_remove("VIRGA_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = virga()
        .args(["list", "--json", "--admin", &admin, "--state-dir"])
        .arg(dir.join("state"))
        .env_remove("VIRGA_TOKEN")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(json["deployments"][0]["limits"]["memory"], 64 << 20);
    let response = get(&http, "/site/x");
    assert!(
        response.ends_with("hello from virga\nGET /site/x\n"),
        "{response}"
    );
}

#[test]
fn a_chunked_upload_over_the_limit_gets_413() {
    use std::io::{Read, Write};
    let host = serve(&tempdir("serve-chunked"), "max_upload_mib = 1\n");
    let addr = host.admin.trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "PUT /v1/deployments/app?route=*/* HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // 1.5 MiB in 64 KiB chunks, no Content-Length: the limit is found while reading.
    let chunk = vec![b'x'; 64 << 10];
    for _ in 0..24 {
        write!(stream, "{:x}\r\n", chunk.len()).unwrap();
        stream.write_all(&chunk).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("larger than the upload limit of 1048576 bytes"),
        "{response}"
    );
    let (_, out, _) = host.cli(&["list"]);
    assert_eq!(out, "no deployments\n");
    host.stop();
}

#[test]
fn allow_lists_and_limits_are_deployed_checked_and_kept_across_a_restart() {
    use virga_test_artifacts::HELLO;
    let host = serve(&tempdir("serve-allow"), "");
    let (ok, _, err) = host.cli(&[
        "deploy",
        HELLO,
        "--name",
        "app",
        "--route",
        "*/*",
        "--allow",
        "https://api.example.com",
        "--allow",
        "http://*.internal.test:8080",
        "--limit",
        "subrequests=7",
        "--limit",
        "outbound_body_mib=2",
        "--cpu-ms",
        "80",
    ]);
    assert!(ok, "{err}");
    let listed = |host: &Host| {
        let (ok, out, _) = host.cli(&["list", "--json"]);
        assert!(ok);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        json["deployments"][0].clone()
    };
    let app = listed(&host);
    assert_eq!(
        app["allow"],
        serde_json::json!(["https://api.example.com", "http://*.internal.test:8080"])
    );
    assert_eq!(app["limits"]["subrequests"], 7);
    assert_eq!(app["limits"]["outbound_body"], 2 << 20);
    assert_eq!(app["limits"]["cpu_ms"], 80);
    assert_eq!(
        app["limits"]["concurrency"], 256,
        "unset limits keep their defaults"
    );

    // Bad values are refused by name, and the live version stays.
    for (args, expected) in [
        (
            &["--allow", "ftp://x"][..],
            "invalid origin 'ftp://x': the scheme must be http or https",
        ),
        (&["--allow", "https://a.com/path"], "an origin has no path"),
        (
            &["--limit", "cpu=5"],
            "unknown parameter 'cpu' (takes route, var, allow, and limits",
        ),
        (
            &["--limit", "concurrency=0"],
            "'concurrency' must be greater than 0",
        ),
        (
            &["--limit", "memory_mib=lots"],
            "'memory_mib' must be a whole number",
        ),
    ] {
        let mut all = vec!["deploy", HELLO, "--name", "app", "--route", "*/*"];
        all.extend_from_slice(args);
        let (ok, _, err) = host.cli(&all);
        assert!(!ok, "{args:?} was accepted");
        assert!(
            err.contains(expected) && err.contains("400"),
            "{args:?}: {err}"
        );
    }
    let (ok, _, err) = host.cli(&[
        "deploy", HELLO, "--name", "app", "--route", "*/*", "--limit", "x",
    ]);
    assert!(
        !ok && err.contains("--limit takes KEY=VALUE, not 'x'"),
        "{err}"
    );
    assert_eq!(listed(&host)["version"], 1);

    let dir = host.stop();
    let host = serve(&dir, "");
    let app = listed(&host);
    assert_eq!(app["allow"][1], "http://*.internal.test:8080");
    assert_eq!(app["limits"]["subrequests"], 7);
    assert_eq!(host.body("/x"), "hello from virga\nGET /x\n");
    host.stop();
}

#[test]
fn host_keys_come_from_files_and_variables_and_bad_ones_stop_the_start() {
    use base64::Engine;
    use virga_test_artifacts::CRYPTO_PROBE;
    let dir = tempdir("serve-keys");
    // An Ed25519 PKCS#8 key (fixed prefix + seed) as PEM, and an HMAC secret in base64.
    let mut pkcs8 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    pkcs8.extend([7u8; 32]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        b64.encode(&pkcs8)
    );
    std::fs::write(dir.join("issuer.pem"), pem).unwrap();
    let deployment = format!(
        "[[deployments]]\nname = \"probe\"\nmodule = \"{CRYPTO_PROBE}\"\nroutes = [\"*/*\"]\n\
         keys.issuer = {{ algorithm = \"ed25519\", file = \"issuer.pem\" }}\n\
         keys.mac = {{ algorithm = \"hmac-sha256\", env = \"VIRGA_TEST_MAC\" }}\n"
    );
    let config = write_config(&dir, Some(TOKEN), &deployment);
    let secret = b64.encode([9u8; 32]);
    let host = start_with_env(&config, &dir, &[("VIRGA_TEST_MAC", &secret)]);
    let run = |line: &str| {
        let out = Command::new("curl")
            .args(["-s", "--data-binary", line, &format!("{}run", host.http)])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let signature = run("op=named-sign&name=issuer&msg=00");
    assert_eq!(
        signature.len(),
        128,
        "an Ed25519 signature in hex: {signature}"
    );
    assert_eq!(
        run("op=named-export&name=issuer"),
        "error not permitted: the key is not extractable"
    );
    assert_eq!(run("op=named-sign&name=mac&msg=00").len(), 64);
    drop(host);

    // A missing variable, a file that is not a key, an unknown algorithm: the host does not
    // start, and says which key of which deployment is wrong.
    for (keys, env, expected) in [
        (
            "keys.mac = { algorithm = \"hmac-sha256\", env = \"VIRGA_TEST_MAC\" }",
            false,
            "environment variable VIRGA_TEST_MAC is not set",
        ),
        (
            "keys.issuer = { algorithm = \"ed25519\", file = \"virga.toml\" }",
            true,
            "key 'issuer' of 'probe'",
        ),
        (
            "keys.issuer = { algorithm = \"ecdsa-p256-sha256\", file = \"issuer.pem\" }",
            true,
            "not a ecdsa-p256-sha256 private key",
        ),
    ] {
        let body = format!(
            "[[deployments]]\nname = \"probe\"\nmodule = \"{CRYPTO_PROBE}\"\nroutes = [\"*/*\"]\n{keys}\n"
        );
        let config = write_config(&dir, Some(TOKEN), &body);
        let mut command = virga();
        command
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("VIRGA_TEST_MAC");
        if env {
            command.env("VIRGA_TEST_MAC", &secret);
        }
        let out = command.output().unwrap();
        assert!(!out.status.success(), "{keys}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{keys}: {err}");
        assert!(!err.contains(&secret), "the error shows the secret: {err}");
    }
}
