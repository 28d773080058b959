//! A small client for the admin API, shared by deploy, list, rollback and delete.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Where the admin API is and how to authenticate.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// Admin API of the host.
    #[arg(long, default_value = "http://127.0.0.1:8081", env = "VIRGA_ADMIN")]
    admin: String,
    /// Admin token. Default: $VIRGA_TOKEN, else STATE_DIR/admin-token.
    #[arg(long, env = "VIRGA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The host's state directory, to read the admin token from.
    #[arg(long, default_value = ".virga")]
    state_dir: PathBuf,
    /// Print the server's JSON instead of a human-readable summary.
    #[arg(long)]
    pub(crate) json: bool,
}

impl AdminArgs {
    fn token(&self) -> Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let path = self.state_dir.join("admin-token");
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no --token or VIRGA_TOKEN, and cannot read {}",
                path.display()
            )
        })?;
        Ok(token.trim().to_owned())
    }

    /// Sends one request; returns the JSON of a 2xx answer, or fails with the server's
    /// error message on one line.
    pub(crate) async fn call(
        &self,
        method: http::Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<Value> {
        let base = self.admin.trim_end_matches('/');
        let authority = base
            .strip_prefix("http://")
            .with_context(|| format!("--admin must be an http:// URL, not {base}"))?;
        let uri = format!("{base}{path_and_query}");
        let request = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::HOST, authority)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token()?),
            )
            .body(Full::new(body))?;
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("cannot reach the admin API at {base}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .context("admin API request failed")?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
            bail!("{} ({})", message, status);
        }
        Ok(value)
    }
}

/// One line per deployment: name, live version, kept versions, routes.
pub(crate) fn describe(info: &Value) -> String {
    let list = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.to_string().trim_matches('"').to_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    format!(
        "{}  v{} live (kept: {})  routes: {}",
        info["name"].as_str().unwrap_or("?"),
        info["version"],
        list(&info["versions"]),
        list(&info["routes"]),
    )
}
