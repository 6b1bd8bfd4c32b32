//! medic itself as the tests run it: a daemon child process logging JSON to a file
//! ([`Medic`]), a one-shot command with a clean environment, and its configuration file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::wait_for;

/// A medic configuration file holding `yaml`, in a folder that lives as long as the returned
/// guard.
pub fn medic_config(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("medic.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
}

/// A medic daemon run as a child process, logging JSON to a file the test reads.
pub struct Medic {
    child: Child,
    pub log: PathBuf,
    pub data_dir: PathBuf,
    /// Keeps the temporary folder alive.
    _dir: Option<tempfile::TempDir>,
    /// The environment it was started with, to start it again the same way.
    env: HashMap<String, String>,
}

impl Medic {
    /// Starts medic with these variables on top of: a fresh data dir, port 0 on loopback, JSON
    /// logs, fast reconcile. Waits until it says it is running.
    pub fn start(vars: &[(&str, &str)]) -> Medic {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut env: HashMap<String, String> = HashMap::from([
            ("MEDIC_DATA_DIR".into(), data_dir.display().to_string()),
            ("MEDIC_LISTEN".into(), "127.0.0.1:0".into()),
            ("MEDIC_LOG_FORMAT".into(), "json".into()),
            (
                "MEDIC_LOG".into(),
                std::env::var("MEDIC_TEST_LOG").unwrap_or_else(|_| "info".into()),
            ),
            ("MEDIC_RECONCILE_INTERVAL".into(), "1s".into()),
            ("MEDIC_RESTART_GRACE".into(), "1s".into()),
            ("MEDIC_STOP_TIMEOUT".into(), "1s".into()),
        ]);
        for (k, v) in vars {
            env.insert(k.to_string(), v.to_string());
        }
        Medic::spawn(env, dir.path().join("medic.log"), data_dir, Some(dir))
    }

    /// [`Medic::start`] with variables held as owned strings.
    pub fn start_owned(vars: &[(String, String)]) -> Medic {
        let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Medic::start(&refs)
    }

    fn spawn(
        env: HashMap<String, String>,
        log: PathBuf,
        data_dir: PathBuf,
        dir: Option<tempfile::TempDir>,
    ) -> Medic {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_medic"));
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(file);
        let child = cmd.spawn().expect("start medic");
        let medic = Medic {
            child,
            log,
            data_dir,
            _dir: dir,
            env,
        };
        medic.wait_log("medic running", Duration::from_secs(20), |l| {
            l.contains("medic is running")
        });
        medic
    }

    /// Kills medic with SIGKILL and starts it again with the same settings and data.
    pub fn sigkill_and_restart(mut self) -> Medic {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(f, "---- SIGKILL ----").unwrap();
        let env = self.env.clone();
        let log = self.log.clone();
        let data = self.data_dir.clone();
        let dir = self._dir.take();
        drop(self);
        Medic::spawn(env, log, data, dir)
    }

    /// Every log line so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Log lines written since the last SIGKILL marker.
    pub fn current_lines(&self) -> Vec<String> {
        let lines = self.lines();
        let start = lines
            .iter()
            .rposition(|l| l.starts_with("---- SIGKILL"))
            .map(|i| i + 1)
            .unwrap_or(0);
        lines[start..].to_vec()
    }

    /// Waits until a log line matches.
    pub fn wait_log(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        wait_for(what, timeout, || {
            self.current_lines().iter().any(|l| pred(l))
        });
    }

    /// The HTTP address from the "medic is running" line.
    pub fn addr(&self) -> String {
        let line = self
            .current_lines()
            .into_iter()
            .find(|l| l.contains("medic is running"))
            .expect("medic is running");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["listen"].as_str().unwrap().to_string()
    }

    /// The whole log, for assertion messages.
    pub fn dump(&self) -> String {
        self.lines().join("\n")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Medic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- medic log ----\n{}", self.dump());
        }
    }
}

/// Runs the medic binary once with exactly these variables (plus `PATH`), nothing inherited
/// from the test's own environment.
pub fn medic_with_only<K, V>(args: &[&str], env: &[(K, V)]) -> Output
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
}

// Drills (tests/drills.rs): restarting medic without waiting for it, stopping it cleanly.

impl Medic {
    /// The process id of the running medic.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills medic with SIGKILL and waits until it is gone (its data is then as a crash left
    /// it); [`Medic::respawn`] starts it again.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        writeln!(f, "---- SIGKILL ----").unwrap();
    }

    /// Starts medic again, after [`Medic::sigkill`], with the same settings and data dir, from
    /// `binary` (a copy of the build's `medic`, which a concurrent `cargo build` may be
    /// relinking), without waiting for it to come up: a drill times that itself (from the log
    /// after [`Medic::log_len`], then `/health`).
    pub fn respawn(&mut self, binary: &Path) {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Command::new(binary)
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start medic");
    }

    /// The log's length in bytes now, to read only what a later start writes.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Asks medic to stop (SIGTERM) and waits up to `timeout` for it to exit. Returns its exit
    /// status, or None when it did not exit in time (it is then killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

/// A copy of the `medic` binary under test in `dir`, for tests that start it many times: a
/// `cargo build` running beside them may replace the original at any moment.
pub fn medic_binary_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("medic");
    std::fs::copy(env!("CARGO_BIN_EXE_medic"), &copy).expect("copy the medic binary");
    copy
}

// Evidence that medic's loop really ran, for tests that then assert something did not happen.

impl Medic {
    /// `/health/detailed`, with the API token medic was started with (if any).
    pub fn detailed(&self) -> serde_json::Value {
        let token = self.env.get("MEDIC_API_TOKEN").map(String::as_str);
        super::http::detailed(&self.addr(), token)
    }

    /// Waits until medic has looked at `check` `times` more times: see
    /// [`super::http::wait_checked`]. On timeout the test fails with medic's log.
    pub fn wait_checked(&self, check: &str, times: usize, timeout: Duration) {
        let token = self.env.get("MEDIC_API_TOKEN").map(String::as_str);
        super::http::wait_checked(&self.addr(), token, check, times, timeout);
    }
}
