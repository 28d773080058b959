//! `virga`: serve, develop and deploy Virga edge components. Parses arguments and hands each
//! command to `commands/<verb>.rs`; the work is done by the `virga` library.

mod commands;

/// mimalloc: per-request allocations (stores, resource tables, headers) are small, short-lived
/// and spread over worker threads, where it is measurably faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// Virga: an edge runtime for WebAssembly HTTP handlers (WASI 0.2 `wasi:http/proxy`).
#[derive(Debug, Parser)]
#[command(name = "virga", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build a guest crate (or take a .wasm) and serve it on every route, rebuilding and
    /// swapping it in when its sources change.
    Dev(commands::dev::DevArgs),
    /// Run a long-lived host with an admin API; deployments persist in the state directory.
    Serve(commands::serve::ServeArgs),
    /// Upload a component to a running host and make it live as a new version.
    Deploy(commands::deploy::DeployArgs),
    /// List a host's deployments and their kept versions.
    List(commands::list::ListArgs),
    /// Make an earlier version of a deployment live again.
    Rollback(commands::rollback::RollbackArgs),
    /// Remove a deployment and all its versions.
    Delete(commands::delete::DeleteArgs),
}

/// The host's `tracing` events as OpenTelemetry log records, once `serve` has a logger.
pub(crate) type LogBridge = tracing_subscriber::reload::Handle<
    Option<
        opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge<
            opentelemetry_sdk::logs::SdkLoggerProvider,
            opentelemetry_sdk::logs::SdkLogger,
        >,
    >,
    tracing_subscriber::Registry,
>;

/// Logs to stderr (filtered by `RUST_LOG`, default `info` with the NATS client's own
/// connection events at `warn`: the store logs what they mean), with a slot for the
/// OpenTelemetry bridge.
fn init_logging() -> LogBridge {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (bridge, handle) = tracing_subscriber::reload::Layer::new(None);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    // The exporters' own logs are not exported (that would feed back into them).
    let not_exporters = tracing_subscriber::filter::filter_fn(|meta| {
        let target = meta.target();
        !["opentelemetry", "tonic", "h2", "hyper", "tower"]
            .iter()
            .any(|prefix| target.starts_with(prefix))
    });
    tracing_subscriber::registry()
        .with(tracing_subscriber::Layer::with_filter(
            bridge,
            not_exporters,
        ))
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    handle
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let log_bridge = init_logging();
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = tokio.block_on(async {
        match cli.command {
            Command::Dev(args) => commands::dev::run(args).await,
            Command::Serve(args) => commands::serve::run(args, log_bridge).await,
            Command::Deploy(args) => commands::deploy::run(args).await,
            Command::List(args) => commands::list::run(args).await,
            Command::Rollback(args) => commands::rollback::run(args).await,
            Command::Delete(args) => commands::delete::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
