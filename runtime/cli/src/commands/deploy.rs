//! `virga deploy APP.wasm --name N --route R`: uploads a component through the admin API.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::client::{AdminArgs, describe};

/// Arguments of `virga deploy`.
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The component (.wasm) to deploy.
    wasm: PathBuf,
    /// Deployment name (1-64 of a-z, 0-9, '-', '_').
    #[arg(long)]
    name: String,
    /// A route it serves, e.g. 'example.com/api/*' (repeatable; at least one).
    #[arg(long = "route", required = true)]
    routes: Vec<String>,
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
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(args: DeployArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.wasm).with_context(|| format!("reading {}", args.wasm.display()))?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for route in &args.routes {
        query.append_pair("route", route);
    }
    for var in &args.vars {
        query.append_pair("var", var);
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
