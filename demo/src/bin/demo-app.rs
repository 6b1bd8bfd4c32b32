//! `demo-app`: the demo stack's upload API. See `demo::app` for the routes and `docs/demo.md`
//! for the environment.
//!
//! ```text
//! demo-app               serve (the default)
//! demo-app healthcheck   exit 0 if the local app answers GET /health, else 1 (for HEALTHCHECK)
//! ```

use std::process::ExitCode;

use demo::config::{self, AppSettings};

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => serve(),
        Some("healthcheck") => healthcheck(),
        Some("-h" | "--help" | "help") => {
            println!("usage: demo-app [serve|healthcheck]\nsettings come from the environment: see docs/demo.md");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("demo-app: unknown command {other:?}; try `demo-app --help`");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    demo::telemetry::init();
    let settings = match AppSettings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            tracing::error!("invalid configuration: {error:#}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(?settings, "demo-app starting");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let shutdown = demo::shutdown::on_signal();
        let app = demo::app::Application::build(settings).await?;
        app.run_until_stopped(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("demo-app failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck() -> ExitCode {
    let result =
        config::app_port_from_env().and_then(|port| demo::client::request("GET", port, "/health"));
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
