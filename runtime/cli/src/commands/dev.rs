//! `virga dev PATH`: the inner loop. Serves one guest on every route, rebuilds and swaps it in
//! when its sources change, and keeps the last good version when a rebuild fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use virga::server::{Server, TlsIdentity};
use virga::{DeploymentConfig, GuestOutput, Limits, RoutePattern, Runtime};

use super::guest::GuestSource;

/// Arguments of `virga dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// A guest crate directory (built with `cargo build --release --target wasm32-wasip2`)
    /// or a component `.wasm` file.
    path: PathBuf,
    /// Plaintext listener: HTTP/1.1 and h2c.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// TLS listener: HTTP/1.1 and HTTP/2 (ALPN), with a self-signed certificate for localhost.
    #[arg(long, default_value = "127.0.0.1:8443")]
    https: SocketAddr,
    /// Do not start the TLS listener.
    #[arg(long)]
    no_tls: bool,
    /// Do not serve HTTP/3 (QUIC) on the TLS listener's UDP port.
    #[arg(long)]
    no_http3: bool,
    /// Where state lives (the self-signed certificate, for now).
    #[arg(long, default_value = ".virga")]
    state_dir: PathBuf,
    /// Guest CPU time per request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    cpu_ms: u64,
    /// Wall-clock time per request, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    wall_ms: u64,
    /// Guest linear memory, in MiB.
    #[arg(long, default_value_t = 128)]
    memory_mib: u64,
    /// Any limit as KEY=VALUE (repeatable), e.g. `subrequests=10`, `request_body_mib=8`.
    #[arg(long = "limit", value_name = "KEY=VALUE")]
    limits: Vec<String>,
    /// An origin the handler may fetch from, e.g. 'http://127.0.0.1:9000' (repeatable;
    /// default none).
    #[arg(long = "allow", value_name = "ORIGIN")]
    allow: Vec<String>,
    /// Do not watch the sources for changes.
    #[arg(long)]
    no_watch: bool,
}

/// What every version served by `virga dev` is deployed with.
#[derive(Clone, Debug)]
struct Settings {
    limits: Limits,
    allow: Vec<virga::AllowedOrigin>,
}

pub(crate) async fn run(args: DevArgs) -> Result<()> {
    let source = GuestSource::from_path(&args.path)?;
    let runtime = Runtime::builder()
        .guest_output(GuestOutput::Inherit)
        .build()
        .context("starting the runtime")?;
    let mut limits = Limits::default()
        .cpu_time(Duration::from_millis(args.cpu_ms))
        .wall_time(Duration::from_millis(args.wall_ms))
        .memory(args.memory_mib << 20);
    for limit in &args.limits {
        let (key, value) = limit
            .split_once('=')
            .with_context(|| format!("--limit takes KEY=VALUE, not '{limit}'"))?;
        let value = value
            .parse()
            .map_err(|_| anyhow::anyhow!("--limit {key}: '{value}' is not a whole number"))?;
        limits.set(key, value).map_err(anyhow::Error::msg)?;
    }
    let allow = args
        .allow
        .iter()
        .map(|origin| origin.parse())
        .collect::<Result<Vec<virga::AllowedOrigin>, _>>()?;
    let settings = Settings { limits, allow };
    let name = source.name();
    deploy(&runtime, &source, &name, &settings)
        .with_context(|| format!("loading {}", args.path.display()))?;

    let mut builder = Server::builder(runtime.clone()).http(args.http);
    let mut cert_note = None;
    if !args.no_tls {
        let (identity, cert) = TlsIdentity::self_signed(&args.state_dir.join("tls"))?;
        cert_note = Some(cert);
        builder = builder.https(args.https, identity);
        if !args.no_http3 {
            builder = builder.http3(virga::server::Http3::default());
        }
    }
    let server = builder.bind().await?;
    if let Some(addr) = server.http_addr() {
        println!("serving {name} on http://{addr}/ (HTTP/1.1, h2c)");
    }
    if let (Some(addr), Some(cert)) = (server.https_addr(), &cert_note) {
        let h3 = if server.h3_addr().is_some() {
            ", HTTP/3"
        } else {
            ""
        };
        println!(
            "serving {name} on https://{addr}/ (HTTP/1.1, HTTP/2{h3}; self-signed certificate: {})",
            cert.display()
        );
    }
    if !args.no_watch {
        tokio::spawn(watch(runtime.clone(), source, name, settings));
    }
    server.run(shutdown_signal()).await;
    println!("stopped");
    Ok(())
}

fn deploy(runtime: &Runtime, source: &GuestSource, name: &str, settings: &Settings) -> Result<u64> {
    let bytes = source.load()?;
    let component = runtime.compile(&bytes)?;
    let mut config = DeploymentConfig::new(name, component)
        .route(RoutePattern::any())
        .limits(settings.limits.clone());
    config.allow = settings.allow.clone();
    let info = runtime.deploy(config)?;
    Ok(info.version)
}

/// Polls the sources once a second; on a change, rebuilds and swaps the new version in.
async fn watch(runtime: Runtime, source: GuestSource, name: String, settings: Settings) {
    let mut seen = source.newest_change();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = source.newest_change();
        if now == seen {
            continue;
        }
        seen = now;
        let (runtime, source, name, settings) = (
            runtime.clone(),
            source.clone(),
            name.clone(),
            settings.clone(),
        );
        let result =
            tokio::task::spawn_blocking(move || deploy(&runtime, &source, &name, &settings)).await;
        match result {
            Ok(Ok(version)) => println!("reloaded: version {version} is live"),
            Ok(Err(e)) => eprintln!("reload failed, still serving the previous version: {e:#}"),
            Err(e) => eprintln!("reload failed: {e}"),
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    eprintln!("shutting down: finishing in-flight requests");
}
