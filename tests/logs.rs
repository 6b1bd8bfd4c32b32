//! Text logs as log collectors store them: no colour codes unless a person is watching at a
//! terminal (and `NO_COLOR` is unset), fields as plain values.
//!
//! medic runs as users run it, against the real engine; "a terminal" is a real pseudo-terminal
//! from util-linux's `script`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ESC: &str = "\x1b[";

/// Variables for a short `medic run` with text logs (the default format).
fn medic_env(data: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("MEDIC_DATA_DIR", data.display().to_string()),
        ("MEDIC_LISTEN", "127.0.0.1:0".into()),
        ("MEDIC_PROJECT", "medictest-logs-nothing".into()),
        ("MEDIC_RECONCILE_INTERVAL", "1s".into()),
    ]
}

/// Runs `cmd` (stdout piped) until a line of its output holds every one of `until`, then kills
/// it; returns all it printed.
fn output_until(mut cmd: Command, until: &[&str]) -> String {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut text = String::new();
    let mut seen = vec![false; until.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.iter().any(|s| !s) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            for (i, want) in until.iter().enumerate() {
                seen[i] |= line.contains(want);
            }
            text.push_str(&line);
            text.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().all(|s| *s),
        "never saw all of {until:?} in:\n{text}"
    );
    text
}

#[test]
fn text_logs_through_a_pipe_carry_no_colour_codes_and_plain_values() {
    let data = tempfile::tempdir().unwrap();
    // stderr to a pipe, the way `docker logs`, journald and log shippers read it.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$0\" run 2>&1"])
        .arg(env!("CARGO_BIN_EXE_medic"))
        .env_clear()
        .envs(medic_env(data.path()));
    let text = output_until(cmd, &["medic is running", "connected to the Docker engine"]);
    assert!(!text.contains(ESC), "colour codes in piped logs:\n{text:?}");
    let connected = text
        .lines()
        .find(|l| l.contains("connected to the Docker engine"))
        .unwrap();
    assert!(connected.contains(" api=1."), "{connected}");
    assert!(connected.contains(" reconnected=false"), "{connected}");
    assert!(
        !text.contains("Some(") && !text.contains("None"),
        "Rust debug text in the logs:\n{text}"
    );
}

#[test]
fn at_a_terminal_logs_are_coloured_unless_no_color_is_set() {
    let at_terminal = |no_color: Option<&str>| {
        let data = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("script");
        // A pseudo-terminal for medic; `timeout` ends it even if the kill below missed it.
        cmd.args(["-q", "-e", "-c"])
            .arg(format!(
                "exec timeout 60 {} run",
                env!("CARGO_BIN_EXE_medic")
            ))
            .arg("/dev/null")
            .env_clear()
            .envs(medic_env(data.path()))
            .env("TERM", "xterm");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        output_until(cmd, &["medic is running"])
    };
    let coloured = at_terminal(None);
    assert!(
        coloured.contains(ESC),
        "no colours at a terminal:\n{coloured:?}"
    );
    let plain = at_terminal(Some("1"));
    assert!(!plain.contains(ESC), "colours despite NO_COLOR:\n{plain:?}");
}
