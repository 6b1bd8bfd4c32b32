//! `demo-worker`: consumes upload jobs and extracts their text, with fault switches for drills.
//! See `demo::worker`, `demo::admin` and `docs/demo.md`.
//!
//! ```text
//! demo-worker                  run (the default)
//! demo-worker healthcheck      exit 0 if the local worker's admin port answers GET /health
//! demo-worker fault POSITION   move the local worker's switch: none|stop-consuming|hang|crash
//! ```
//!
//! The subcommands talk to the running worker's admin port on 127.0.0.1, so they work through
//! `docker exec` in the `FROM scratch` image, which has no shell.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use demo::config::{self, WorkerSettings};
use demo::fault::{Fault, CRASH_EXIT_CODE};
use demo::worker::{Worker, WorkerState};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("run") => run(),
        Some("healthcheck") => healthcheck(),
        Some("fault") => match args.get(1) {
            Some(position) => fault(position),
            None => {
                eprintln!("usage: demo-worker fault none|stop-consuming|hang|crash");
                ExitCode::from(2)
            }
        },
        Some("-h" | "--help" | "help") => {
            println!(
                "usage: demo-worker [run|healthcheck|fault none|stop-consuming|hang|crash]\n\
                 settings come from the environment: see docs/demo.md"
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("demo-worker: unknown command {other:?}; try `demo-worker --help`");
            ExitCode::from(2)
        }
    }
}

fn run() -> ExitCode {
    demo::telemetry::init();
    let settings = match WorkerSettings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!("invalid configuration: {error:#}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(?settings, "demo-worker starting");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("demo-worker failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: WorkerSettings) -> anyhow::Result<()> {
    let shutdown = demo::shutdown::on_signal();
    let state = Arc::new(WorkerState::new(settings.initial_fault));
    if settings.initial_fault != Fault::None {
        tracing::warn!(fault = %settings.initial_fault, "starting with a fault switched on (WORKER_FAULT)");
    }
    tokio::spawn(crash_on_switch(state.clone()));

    let listener = tokio::net::TcpListener::bind(("0.0.0.0", settings.admin_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on port {} (WORKER_ADMIN_PORT)",
                settings.admin_port
            )
        })?;
    tracing::info!(port = settings.admin_port, "admin API listening");
    let admin = tokio::spawn(serve_admin(listener, state.clone(), shutdown.clone()));

    let store = demo::store::Store::connect(&settings.backends, "demo-worker").await?;
    Worker::new(settings, store, state).run(shutdown).await;
    admin.await.context("admin API task failed")??;
    Ok(())
}

async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: Arc<WorkerState>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, demo::admin::router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("admin API failed")
}

/// The `crash` fault: exits at once (after the admin answer has gone out) with a non-zero
/// status, as a worker that crashed would.
async fn crash_on_switch(state: Arc<WorkerState>) {
    let mut faults = state.watch_fault();
    loop {
        if *faults.borrow_and_update() == Fault::Crash {
            tracing::error!(
                exit_code = CRASH_EXIT_CODE,
                "fault switch `crash`: exiting now"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            std::process::exit(CRASH_EXIT_CODE);
        }
        if faults.changed().await.is_err() {
            return;
        }
    }
}

fn healthcheck() -> ExitCode {
    let result = config::worker_admin_port_from_env()
        .and_then(|port| demo::client::request("GET", port, "/health"));
    match result {
        Ok((200, _)) => ExitCode::SUCCESS,
        Ok((status, body)) => {
            eprintln!("unhealthy: HTTP {status} {body}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("unhealthy: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn fault(position: &str) -> ExitCode {
    if let Err(message) = position.parse::<Fault>() {
        eprintln!("{message}");
        return ExitCode::from(2);
    }
    let result = config::worker_admin_port_from_env()
        .and_then(|port| demo::client::request("POST", port, &format!("/fault/{position}")));
    match result {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("HTTP {status}: {body}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("cannot reach the worker: {error:#}");
            ExitCode::FAILURE
        }
    }
}
