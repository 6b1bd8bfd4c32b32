//! The `medic` command line: parse, load settings, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use medic::app::Application;
use medic::config::{LogFormat, Settings};

/// A Docker-native sidecar that keeps a docker compose stack healthy.
#[derive(Parser)]
#[command(name = "medic", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Ask the running daemon's /health (for the image's HEALTHCHECK); exit 0 healthy, 1 not.
    Healthcheck,
    /// Run probes once and print their results; exit 1 if any failed.
    Probe {
        /// Probes to run (all when none is named).
        names: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Preflight: validate the configuration, reach Docker, SMTP and every probe target once.
    /// Exit 0 all good, 1 something unreachable, 2 configuration invalid.
    Check {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send one test email to ADMIN_EMAIL; exit 0 sent, 1 not.
    TestEmail,
    /// Render the daily report from the state in MEDIC_DATA_DIR to stdout, or send it now.
    Report {
        /// Email it now instead of printing it; exit 1 if it was not sent.
        #[arg(long)]
        send: bool,
        /// Print the HTML part instead of the plain text.
        #[arg(long)]
        html: bool,
    },
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let vars = match medic::config::environment() {
        Ok(vars) => vars,
        Err(e) => {
            eprintln!("medic: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    // Known before the first line is logged or printed (src/redact.rs).
    medic::redact::register_from_env(&vars);
    let command = cli.command.unwrap_or(Command::Run);
    // The one-shot commands print their own results; their logs stay quiet unless asked.
    let default_level = if matches!(command, Command::Run) {
        "info"
    } else {
        "warn"
    };
    // Before the settings are read, so what reading them warns about is logged (an invalid
    // format is reported with the other settings' errors just below).
    init_logging(
        LogFormat::from_vars(&vars).unwrap_or(LogFormat::Text),
        default_level,
    );
    // The whole tree, once: nothing reads the environment after this.
    let settings = match Settings::from_vars(&vars) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("medic: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    for (var, suggestion) in Settings::unknown_variables(&vars) {
        match suggestion {
            Some(known) => {
                tracing::warn!("unknown variable {var} is ignored; did you mean {known}?")
            }
            None => tracing::warn!("unknown variable {var} is ignored"),
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("medic: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Run => runtime.block_on(run(settings)),
        Command::Healthcheck => runtime.block_on(healthcheck(settings.listen)),
        Command::Probe { names, json } => {
            runtime.block_on(medic::commands::probe(&settings, &names, json))
        }
        Command::Check { json } => runtime.block_on(medic::commands::check(&settings, json)),
        Command::TestEmail => {
            print_outcome(runtime.block_on(medic::notify::cli::test_email(&vars)))
        }
        Command::Report { send, html } => {
            let output = if html {
                medic::notify::cli::ReportOutput::Html
            } else {
                medic::notify::cli::ReportOutput::Text
            };
            print_outcome(runtime.block_on(medic::notify::cli::report(
                &vars,
                &settings.data_dir,
                send,
                output,
            )))
        }
    }
}

/// Prints a one-shot command's answer: stdout and exit 0, or stderr and exit 1 (2 for bad
/// configuration).
fn print_outcome(outcome: Result<String, medic::notify::cli::CliError>) -> ExitCode {
    match outcome {
        // The edge where these commands' answers leave: no secret medic knows, in clear or
        // encoded (an SMTP server may quote the AUTH line in its refusal).
        Ok(text) => {
            println!("{}", medic::redact::scrub(text.trim_end()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("medic: {}", medic::redact::scrub(&e.to_string()));
            match e {
                medic::notify::cli::CliError::Config(_) => ExitCode::from(2),
                medic::notify::cli::CliError::Failed(_) => ExitCode::FAILURE,
            }
        }
    }
}

async fn run(settings: Settings) -> ExitCode {
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start: {e:#}");
            return ExitCode::from(2);
        }
    };
    tokio::spawn(return_freed_memory());
    app.run_until_stopped(shutdown_signal()).await;
    ExitCode::SUCCESS
}

async fn healthcheck(listen: std::net::SocketAddr) -> ExitCode {
    match medic::api::probe_own_health(listen).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("medic healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDIC_LOG")
        // lapin logs a failed passive declare (the rabbitmq probe's "queue missing") at ERROR;
        // the probe reports it itself.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("{default_level},lapin=off"))
        });
    // Every event is scrubbed of the secrets medic knows on its way to stderr (src/redact.rs).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour_logs(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_writer(medic::redact::RedactingWriter(std::io::stderr));
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        // JSON escapes control characters itself; text needs its own escaping to keep one
        // event on one line.
        LogFormat::Text => builder.fmt_fields(medic::redact::EscapedFields).init(),
    }
}

/// Colour codes only for a person at a terminal: `docker logs`, journald and log shippers store
/// them verbatim, where they are noise. `NO_COLOR` (set to anything but empty, as no-color.org
/// defines it) turns them off at a terminal too.
fn colour_logs(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// glibc gives threads their own malloc arenas (up to eight per core), and each keeps memory
/// its thread freed. medic's threads mostly wait on I/O and allocate little, so one arena costs
/// nothing in speed and keeps its resident memory near what it uses (with 300 probes: 6.2 MiB
/// anonymous with one arena, 6.1 to 7.0 with two; measured as in bench/footprint.py).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

/// glibc returns freed memory to the kernel only from the top of its heap. medic rebuilds its
/// views and probe results all the time, so free pages pile up between live ones; every 10 s
/// `malloc_trim` hands whole free pages back (about 1 MiB with 300 probes, for well under a
/// millisecond of work every 10 s).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
async fn return_freed_memory() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // SAFETY: malloc_trim only releases free pages; it takes the allocator's own locks.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
async fn return_freed_memory() {}

#[cfg(test)]
mod tests {
    use super::colour_logs;

    #[test]
    fn colours_only_at_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(colour_logs(true, Some("".into())));
        assert!(!colour_logs(true, Some("1".into())));
        assert!(!colour_logs(false, None));
        assert!(!colour_logs(false, Some("1".into())));
    }
}
