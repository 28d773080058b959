//! `virga list`: the deployments of a host.

use anyhow::Result;
use clap::Args;

use super::client::{AdminArgs, describe};

/// Arguments of `virga list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(args: ListArgs) -> Result<()> {
    let value = args
        .admin
        .call(http::Method::GET, "/v1/deployments", Default::default())
        .await?;
    if args.admin.json {
        println!("{value}");
        return Ok(());
    }
    let deployments = value["deployments"].as_array().cloned().unwrap_or_default();
    if deployments.is_empty() {
        println!("no deployments");
    }
    for info in &deployments {
        println!("{}", describe(info));
    }
    Ok(())
}
