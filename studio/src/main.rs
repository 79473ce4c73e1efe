//! samclipseg studio: one web page to try prompts on a live pipeline that runs
//! the real `samclipseg` element, and on uploaded pictures.
//!
//! The server only opens what its own command line names (the bundle and the
//! source); nothing a page sends can make it read a path.

mod api;
mod bundle_facts;
mod bus;
mod cli;
mod conns;
mod drain;
mod frames;
mod heap;
mod picture;
mod preview;
mod rules;
mod source;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tracing::{error, info, warn};

use crate::cli::Args;

fn main() -> ExitCode {
    heap::map_large_buffers();
    let args = Args::parse();
    init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            error!("{message}");
            eprintln!("samclipseg-studio: {message}");
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SAMCLIPSEG_STUDIO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn run(args: Args) -> Result<(), String> {
    gst::init().map_err(|e| format!("GStreamer does not start: {e}"))?;
    gstsamclipseg::plugin_register_static()
        .map_err(|e| format!("cannot register the samclipseg element: {e}"))?;

    let bundle = args.bundle_path()?;
    let source = source::Source::from_arg(args.source.as_deref())?;
    let facts = bundle_facts::BundleFacts::read(&bundle)?;
    info!(
        "bundle {} ({}, {}); source {}",
        facts.name,
        bundle.display(),
        facts.precision,
        source
    );

    // Before anything opens files: the cap is read from the raised limit.
    let cap = conns::connection_cap()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;

    // Bind first: a port in use must not cost a pipeline start.
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| cli::bind_error(&addr, &e))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    if !args.bind.is_loopback() {
        warn!(
            "LISTENING ON {local}, NOT ON LOOPBACK: anyone who can reach this address can change \
             the pipeline and upload pictures (the page cannot make the server open a path)"
        );
    }

    let preview = preview::Preview::start(&bundle, &source, args.frame_size()?, &facts)?;
    let hosts = args.allowed_hosts();
    if !args.bind.is_loopback() {
        info!("answering to the host names {hosts}");
    }
    let state = Arc::new(api::AppState::new(
        preview,
        bundle,
        facts,
        hosts,
        args.results_mb.saturating_mul(1 << 20),
    ));
    let app = api::router(state.clone())
        .layer(axum::middleware::from_fn(conns::track_requests))
        .into_make_service_with_connect_info::<conns::ConnSlot>();
    let listener = conns::Guarded::new(listener, cap);

    // Tests and scripts read this line for the address (`--port 0` picks one).
    println!("samclipseg-studio: listening on http://{local}/");
    info!("listening on http://{local}/");

    let stopping = state.clone();
    let served = runtime.block_on(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                stopping.begin_shutdown();
            })
            .await
    });
    state.preview.stop();
    served.map_err(|e| format!("the server stopped: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("stopping");
}
