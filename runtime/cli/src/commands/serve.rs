//! `virga serve [--config virga.toml]`: the long-lived host with its admin API. Deployments
//! persist in the state directory and come back after a restart without recompiling.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use virga::config::Config;
use virga::server::{AdminOptions, Server, TlsIdentity, load_or_create_token};
use virga::store::content_digest;
use virga::{DeploymentConfig, GuestOutput, Runtime};

/// Arguments of `virga serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The configuration file (see virga.example.toml). Without it, every default applies.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub(crate) async fn run(args: ServeArgs, log_bridge: crate::LogBridge) -> Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let server_config = &config.server;
    let state_dir = &server_config.state_dir;
    let store = config
        .store
        .open(state_dir, &format!("virga pid {}", std::process::id()))
        .with_context(|| format!("opening the store (state in {})", state_dir.display()))?;
    let telemetry = config
        .telemetry
        .builder()?
        .build()
        .context("setting up telemetry")?;
    // Guests' output becomes log records when they are exported; otherwise it is
    // discarded (a guest must not be able to fill the host's own log).
    let mut guest_output = GuestOutput::Discard;
    if let Some(provider) = telemetry.logger_provider() {
        guest_output = GuestOutput::Log;
        let bridge = OpenTelemetryTracingBridge::new(provider);
        if let Err(e) = log_bridge.modify(|slot| *slot = Some(bridge)) {
            tracing::warn!(error = %e, "host logs are not exported");
        }
    }
    let mut builder = Runtime::builder();
    builder
        .telemetry(telemetry.clone())
        .guest_output(guest_output)
        .store(store)
        .keep_versions(server_config.keep_versions)
        .max_instances(server_config.max_instances)
        .extra_root_certificates(config.fetch.load_ca_certs()?)
        .key_store(Arc::new(config.load_keys()?))
        .cache_capacity(config.cache.capacity()?);
    if let Some(lanes) = server_config.long_running_lanes {
        builder.long_running_lanes(lanes);
    }
    let runtime = builder.build().context("restoring the deployments")?;
    let restored = runtime.deployments().len();

    let defaults = config.default_limits();
    for declared in &config.deployments {
        let bytes = std::fs::read(&declared.module).with_context(|| {
            format!(
                "deployment '{}': reading {}",
                declared.name,
                declared.module.display()
            )
        })?;
        let limits = declared.limits.over(&defaults)?;
        let allow = declared
            .allow
            .iter()
            .map(|origin| origin.parse::<virga::AllowedOrigin>())
            .collect::<Result<Vec<_>, _>>()?;
        let live = runtime
            .deployments()
            .into_iter()
            .find(|d| d.name == declared.name);
        let unchanged = live.is_some_and(|d| {
            d.component == content_digest(&bytes)
                && d.routes == declared.routes
                && d.limits == limits
                && d.vars == declared.vars
                && d.allow == allow.iter().map(ToString::to_string).collect::<Vec<_>>()
        });
        if unchanged {
            continue;
        }
        let component = runtime.compile(&bytes).with_context(|| {
            format!(
                "deployment '{}' ({})",
                declared.name,
                declared.module.display()
            )
        })?;
        let mut deployment = DeploymentConfig::new(declared.name.clone(), component).limits(limits);
        for route in &declared.routes {
            deployment = deployment.route(route.parse()?);
        }
        deployment.vars = declared.vars.clone();
        deployment.allow = allow;
        let info = runtime
            .deploy(deployment)
            .with_context(|| format!("deployment '{}'", declared.name))?;
        println!(
            "deployed {} v{} from {}",
            info.name,
            info.version,
            declared.module.display()
        );
    }

    let mut builder = Server::builder(runtime.clone())
        .max_connections(server_config.max_connections)
        .header_read_timeout(std::time::Duration::from_millis(
            server_config.header_timeout_ms,
        ))
        .min_body_rate(
            server_config.min_body_rate,
            std::time::Duration::from_millis(server_config.body_grace_ms),
        );
    if let Some(addr) = server_config.http {
        builder = builder.http(addr);
    }
    let mut cert_path = None;
    if let Some(addr) = server_config.https {
        let identity = match (&server_config.tls_cert, &server_config.tls_key) {
            (Some(cert), Some(key)) => {
                cert_path = Some(cert.clone());
                TlsIdentity::from_pem_files(cert, key)?
            }
            _ => {
                let (identity, path) = TlsIdentity::self_signed(&state_dir.join("tls"))?;
                cert_path = Some(path);
                identity
            }
        };
        builder = builder.https(addr, identity);
        if server_config.http3 {
            builder = builder.http3(server_config.http3_options());
        }
    }
    if let Some(addr) = server_config.admin {
        let token = match (&server_config.admin_token, std::env::var("VIRGA_TOKEN")) {
            (Some(token), _) => token.clone(),
            (None, Ok(token)) if !token.is_empty() => token,
            _ => load_or_create_token(&state_dir.join("admin-token"))?,
        };
        let options = AdminOptions::new(token)
            .max_upload(usize::try_from(server_config.max_upload_mib << 20).unwrap_or(usize::MAX))
            .default_limits(defaults);
        builder = builder.admin(addr, options);
    }
    let server = builder.bind().await?;
    println!(
        "state in {} ({restored} deployments restored)",
        state_dir.display()
    );
    if let Some(addr) = server.http_addr() {
        println!("http on http://{addr}/ (HTTP/1.1, h2c)");
    }
    if let (Some(addr), Some(cert)) = (server.https_addr(), &cert_path) {
        println!(
            "https on https://{addr}/ (HTTP/1.1, HTTP/2; certificate {})",
            cert.display()
        );
    }
    if let Some(addr) = server.h3_addr() {
        println!("http3 on https://{addr}/ (QUIC, UDP port {})", addr.port());
    }
    if let Some(addr) = server.admin_addr() {
        println!(
            "admin on http://{addr}/ (token in {})",
            state_dir.join("admin-token").display()
        );
    }
    server.run(super::dev::shutdown_signal()).await;
    // Bounded: a stalled collector must not hold up the exit.
    match tokio::time::timeout(std::time::Duration::from_secs(10), telemetry.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "telemetry was not all exported"),
        Err(_) => tracing::warn!("telemetry was not all exported within 10 s"),
    }
    println!("stopped");
    Ok(())
}
