//! `virga delete NAME`: removes a deployment and all its versions.

use anyhow::Result;
use clap::Args;

use super::client::AdminArgs;

/// Arguments of `virga delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The deployment.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(args: DeleteArgs) -> Result<()> {
    let name: String = form_urlencoded::byte_serialize(args.name.as_bytes()).collect();
    let value = args
        .admin
        .call(
            http::Method::DELETE,
            &format!("/v1/deployments/{name}"),
            Default::default(),
        )
        .await?;
    if args.admin.json {
        println!("{value}");
    } else {
        println!("deleted {}", args.name);
    }
    Ok(())
}
