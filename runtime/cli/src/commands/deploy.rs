//! `virga deploy APP.wasm --name N --route R`: uploads a component through the admin API.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::client::{AdminArgs, describe};

/// Arguments of `virga deploy`.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The component (.wasm) to deploy. With --config, the module of the named section.
    #[arg(required_unless_present = "config")]
    wasm: Option<PathBuf>,
    /// Deployment name (1-64 of a-z, 0-9, '-', '_').
    #[arg(long)]
    name: String,
    /// A route it serves, e.g. 'example.com/api/*' (repeatable; at least one).
    #[arg(long = "route", required_unless_present = "config")]
    routes: Vec<String>,
    /// Deploy the `[[deployments]]` section named --name of this virga.toml (module, routes,
    /// vars, limits); flags given as well add to it or override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A variable for the guest, NAME=VALUE (repeatable).
    #[arg(long = "var")]
    vars: Vec<String>,
    /// Guest CPU time per request, ms (default: the host's).
    #[arg(long)]
    cpu_ms: Option<u64>,
    /// Wall-clock time per request, ms (default: the host's).
    #[arg(long)]
    wall_ms: Option<u64>,
    /// Guest memory, MiB (default: the host's).
    #[arg(long)]
    memory_mib: Option<u64>,
    /// Any limit as KEY=VALUE (repeatable): cpu_ms, wall_ms, memory_mib, subrequests,
    /// concurrent_subrequests, request_body_mib, response_body_mib, outbound_body_mib,
    /// concurrency, queue_ms, connect_timeout_ms, first_byte_timeout_ms,
    /// between_bytes_timeout_ms, cache_mib.
    #[arg(long = "limit", value_name = "KEY=VALUE")]
    limits: Vec<String>,
    /// An origin its handlers may fetch from, e.g. 'https://api.example.com' or
    /// 'https://*.example.com:8443' (repeatable; default none).
    #[arg(long = "allow", value_name = "ORIGIN")]
    allow: Vec<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(mut args: DeployArgs) -> Result<()> {
    if let Some(path) = &args.config {
        let config = virga::config::Config::load(path)?;
        let section = config
            .deployments
            .iter()
            .find(|d| d.name == args.name)
            .with_context(|| {
                format!(
                    "{} has no [[deployments]] named '{}'",
                    path.display(),
                    args.name
                )
            })?;
        args.wasm.get_or_insert_with(|| section.module.clone());
        if args.routes.is_empty() {
            args.routes = section.routes.clone();
        }
        let mut vars: Vec<String> = section
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        vars.append(&mut args.vars);
        args.vars = vars;
        // The section's limits over the file's [limits], then the flags over those.
        let limits = section.limits.over(&config.default_limits())?;
        let mut from_file: Vec<String> = limits
            .entries()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        from_file.append(&mut args.limits);
        args.limits = from_file;
        let mut allow = section.allow.clone();
        allow.append(&mut args.allow);
        args.allow = allow;
    }
    let wasm = args.wasm.clone().context("give the component to deploy")?;
    let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for route in &args.routes {
        query.append_pair("route", route);
    }
    for var in &args.vars {
        query.append_pair("var", var);
    }
    for origin in &args.allow {
        query.append_pair("allow", origin);
    }
    for limit in &args.limits {
        let (key, value) = limit
            .split_once('=')
            .with_context(|| format!("--limit takes KEY=VALUE, not '{limit}'"))?;
        query.append_pair(key, value);
    }
    for (key, value) in [
        ("cpu_ms", args.cpu_ms),
        ("wall_ms", args.wall_ms),
        ("memory_mib", args.memory_mib),
    ] {
        if let Some(value) = value {
            query.append_pair(key, &value.to_string());
        }
    }
    let name: String = form_urlencoded::byte_serialize(args.name.as_bytes()).collect();
    let path = format!("/v1/deployments/{name}?{}", query.finish());
    let info = args
        .admin
        .call(http::Method::PUT, &path, bytes.into())
        .await?;
    if args.admin.json {
        println!("{info}");
    } else {
        println!("deployed {}", describe(&info));
    }
    Ok(())
}
