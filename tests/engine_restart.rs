//! medic survives a restart of dockerd: it says so, reconnects, and heals what broke meanwhile.
//!
//! The test runs its own second Docker Engine (own socket, data and exec roots, no networking),
//! so stopping it disturbs nothing else on the machine. Without live-restore the engine stops
//! the container with itself and starts it again (restart policy `always`) when it comes back;
//! its health file was removed meanwhile, so it comes back unhealthy. (With `--live-restore`,
//! engine 20.10 does not resume healthchecks of restored containers, so nothing could turn
//! unhealthy.)

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{docker_ok, wait_for, Medic, TestRun};

/// A private dockerd that the test may stop and start.
struct SecondEngine {
    dir: PathBuf,
    socket: String,
    /// A bridge interface of its own (the test's containers use no network at all).
    bridge: String,
    /// The running dockerd, reaped when it stops.
    process: std::sync::Mutex<Option<std::process::Child>>,
}

impl SecondEngine {
    fn start(dir: &Path) -> SecondEngine {
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let bridge = format!("medicdk{}", std::process::id() % 100_000);
        let status = Command::new("ip")
            .args(["link", "add", &bridge, "type", "bridge"])
            .status()
            .expect("iproute2's ip command");
        assert!(status.success(), "cannot create the bridge {bridge}");
        let engine = SecondEngine {
            bridge,
            dir: dir.to_path_buf(),
            socket: format!("unix://{}/docker.sock", dir.display()),
            process: std::sync::Mutex::new(None),
        };
        engine.up();
        engine
    }

    fn host(&self) -> Option<&str> {
        Some(&self.socket)
    }

    fn up(&self) {
        let d = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args(["-H", &self.socket])
            // Its own bridge: with `--bridge none` dockerd deletes the host's docker0, which
            // belongs to the machine's engine.
            .args([
                "--bridge",
                &self.bridge,
                "--iptables=false",
                "--ip-masq=false",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd must be installed (scripts/testenv.sh installs docker.io)");
        *self.process.lock().unwrap() = Some(child);
        wait_for("the second dockerd", Duration::from_secs(60), || {
            support::docker_at(self.host(), &["info"]).status.success()
        });
    }

    fn down(&self) {
        let pidfile = self.dir.join("docker.pid");
        if let Ok(pid) = std::fs::read_to_string(&pidfile) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            wait_for("dockerd to stop", Duration::from_secs(60), || {
                !pidfile.exists()
            });
        }
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        let ids = support::docker_at(self.host(), &["ps", "-aq"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = support::docker_at(self.host(), &["rm", "-f", id]);
        }
        self.down();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        // dockerd bind-mounts its data root onto itself and leaves it mounted.
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(self.dir.join("data"))
            .status();
    }
}

#[test]
fn medic_reconnects_after_dockerd_restarts_and_heals_what_broke_meanwhile() {
    let dir = tempfile::Builder::new()
        .prefix("medic-dk")
        .tempdir_in("/tmp")
        .unwrap();
    let engine = SecondEngine::start(dir.path());
    // No registry here: the test image comes over from the main engine.
    let image = support::busybox_image();
    let saved = dir.path().join("image.tar");
    docker_ok(None, &["save", "-o", saved.to_str().unwrap(), &image]);
    docker_ok(engine.host(), &["load", "-i", saved.to_str().unwrap()]);

    let run = TestRun::on("dockerd", engine.host());
    let hc = dir.path().join("hc");
    std::fs::create_dir_all(&hc).unwrap();
    std::fs::write(hc.join("ok"), "").unwrap();
    let volume = format!("{}:/hc", hc.display());
    let web = run.container(
        "web",
        &[
            ("com.docker.compose.project", &run.id),
            ("com.docker.compose.service", "web"),
        ],
        &[
            "--network",
            "none",
            "--restart",
            "always",
            "--stop-timeout",
            "1",
            "-v",
            &volume,
            "--health-cmd",
            "test -f /hc/ok",
        ],
    );
    let medic = Medic::start(&[("MEDIC_PROJECT", &run.id), ("DOCKER_HOST", &engine.socket)]);
    wait_for("web healthy", Duration::from_secs(30), || {
        run.health(&web) == "healthy"
    });

    engine.down();
    medic.wait_log(
        "medic notices the engine is gone",
        Duration::from_secs(30),
        |l| l.contains("lost the Docker engine") || l.contains("cannot reach the Docker engine"),
    );
    // While the engine is away, web's health breaks.
    std::fs::remove_file(hc.join("ok")).unwrap();
    engine.up();

    medic.wait_log("medic reconnects", Duration::from_secs(60), |l| {
        l.contains("connected to the Docker engine") && l.contains(r#""reconnected":true"#)
    });
    medic.wait_log("medic restarts web", Duration::from_secs(60), |l| {
        l.contains(r#""message":"restarted""#) && l.contains(&web)
    });
    // With its health file back, the restarted container is healthy and medic sees it.
    std::fs::write(hc.join("ok"), "").unwrap();
    medic.wait_log("recovery", Duration::from_secs(30), |l| {
        l.contains("healthy again")
    });
}
