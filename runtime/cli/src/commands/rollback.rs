//! `virga rollback NAME [--to VERSION]`: makes an earlier version live again.

use anyhow::Result;
use clap::Args;

use super::client::{AdminArgs, describe};

/// Arguments of `virga rollback`.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The deployment.
    name: String,
    /// The version to make live (default: the one before the live version).
    #[arg(long)]
    to: Option<u64>,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(args: RollbackArgs) -> Result<()> {
    let name: String = form_urlencoded::byte_serialize(args.name.as_bytes()).collect();
    let to = args.to.map(|v| format!("?to={v}")).unwrap_or_default();
    let path = format!("/v1/deployments/{name}/rollback{to}");
    let info = args
        .admin
        .call(http::Method::POST, &path, Default::default())
        .await?;
    if args.admin.json {
        println!("{info}");
    } else {
        println!("rolled back {}", describe(&info));
    }
    Ok(())
}
