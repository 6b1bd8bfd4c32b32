//! The store's faults against a running medic (issue 14, item 6): its data folder full, turned
//! read-only, `medic.db` deleted while medic runs, and a corrupt `medic.db` at start.
//!
//! Everything is real: a real medic process, a real container on the real engine that medic
//! heals meanwhile, the test environment's SMTP server receiving the alert, and real
//! filesystems made to fail the way disks do: a small tmpfs filled to the last byte, and an ext4
//! filesystem on a loop device whose kernel error trigger (`/sys/fs/ext4/<dev>/trigger_fs_error`)
//! makes it remount itself read-only, as `errors=remount-ro` does on a failing disk. (As root,
//! `chmod` changes nothing, and a filesystem with files open for writing cannot simply be
//! remounted read-only: the kernel refuses with "busy".) Mounting needs root, as the test
//! environment runs; every mount is undone when the test ends, also when it fails.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::mail::{plain_dir, plain_port, unique_rcpt, wait_mails, Mail};
use support::{http_get, wait_for, Medic, TestRun};

/// A filesystem mounted for the test, unmounted (every layer) when dropped.
struct Mounted {
    path: PathBuf,
    layers: usize,
    _dir: tempfile::TempDir,
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed (this test needs root and mounts): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Mounted {
    /// A tmpfs of `size` (e.g. `6m`).
    fn tmpfs(size: &str) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                path.to_str().unwrap(),
            ],
        );
        Mounted {
            path,
            layers: 1,
            _dir: dir,
        }
    }

    /// A fresh 16 MB ext4 filesystem in an image file, on a loop device, that remounts itself
    /// read-only on an error.
    fn ext4() -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("store.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        run(
            "mount",
            &[
                "-o",
                "loop,errors=remount-ro",
                image.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
        );
        Mounted {
            path,
            layers: 1,
            _dir: dir,
        }
    }

    /// The loop device's kernel name (`loop3`).
    fn device(&self) -> String {
        let out = Command::new("findmnt")
            .args(["-no", "SOURCE", self.path.to_str().unwrap()])
            .output()
            .unwrap();
        let source = String::from_utf8_lossy(&out.stdout).trim().to_string();
        source.rsplit('/').next().unwrap_or_default().to_string()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for _ in 0..self.layers {
            let _ = Command::new("umount")
                .args(["-l", self.path.to_str().unwrap()])
                .status();
        }
    }
}

fn mail_vars(run: &TestRun, rcpt: &str, data: &Path) -> Vec<(String, String)> {
    vec![
        ("MEDIC_PROJECT".into(), run.id.clone()),
        ("MEDIC_DATA_DIR".into(), data.display().to_string()),
        ("MAIL_SERVER".into(), "127.0.0.1".into()),
        ("MAIL_PORT".into(), plain_port()),
        ("MAIL_USE_TLS".into(), "false".into()),
        ("ADMIN_EMAIL".into(), rcpt.into()),
        ("MAIL_DEFAULT_SENDER".into(), "medic@stack.test".into()),
        ("MEDIC_ALERT_GROUP_WINDOW".into(), "1s".into()),
    ]
}

/// Waits for `/health` to answer `status`, returning its body.
fn wait_health(medic: &Medic, status: u16, timeout: Duration) -> String {
    let addr = medic.addr();
    let mut last = (0, String::new());
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        last = http_get(&addr, "/health");
        if last.0 == status {
            return last.1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "/health did not answer {status} within {timeout:?}; last {last:?}\n{}",
        medic.dump()
    );
}

/// A JSON log line at `level` whose text holds `text`.
fn logged(medic: &Medic, level: &str, text: &str) -> bool {
    medic
        .current_lines()
        .iter()
        .any(|l| l.contains(&format!("\"level\":\"{level}\"")) && l.contains(text))
}

/// The email about medic's store (its text names `text`).
fn store_mail(medic: &Medic, rcpt: &str, text: &'static str) -> Mail {
    let mails = wait_mails(&plain_dir(), rcpt, Duration::from_secs(30), medic, |m| {
        m.iter().any(|m| m.text.contains(text))
    });
    let mail = mails.into_iter().find(|m| m.text.contains(text)).unwrap();
    // One round: the CRITICAL saying what happened and the RECOVERED closing it (other
    // components' alerts of the same round may share the email).
    let recovered = mail.subject.split("RECOVERED:").nth(1).unwrap_or_default();
    assert!(
        mail.subject.contains("CRITICAL: medic") && recovered.contains("medic"),
        "{}",
        mail.subject
    );
    mail
}

/// Fills the filesystem holding `dir` to its last byte; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&block).and_then(|_| f.flush()).is_err() {
            break;
        }
    }
    // The last partial block, byte by byte in small pieces.
    while f.write_all(&[0u8; 512]).is_ok() {}
    filler
}

/// The restarts recorded for `service` in the database at `data`.
fn recorded_restarts(data: &Path, service: &str) -> i64 {
    let conn = rusqlite::Connection::open(data.join("medic.db")).unwrap();
    conn.query_row(
        "SELECT COUNT(*) FROM restarts WHERE service = ?1",
        [service],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn a_full_data_folder_is_reported_and_an_alert_follows() {
    let run = TestRun::new("store-full");
    let rcpt = unique_rcpt("store-full");
    let disk = Mounted::tmpfs("8m");
    let data = disk.path.join("data");
    let medic = Medic::start_owned(&mail_vars(&run, &rcpt, &data));
    let _web = run.healthy_web();
    wait_health(&medic, 200, Duration::from_secs(10));

    // SQLite may go on writing into its write-ahead log's free room for a while; the folder's
    // own check (a small file written beside the database) sees the full disk at once.
    let filler = fill(&disk.path);
    let body = wait_health(&medic, 503, Duration::from_secs(10));
    assert!(body.contains("not writable"), "{body}");
    assert!(body.contains("No space left"), "{body}");
    wait_for("the ERROR line", Duration::from_secs(5), || {
        logged(&medic, "ERROR", "the state store is not writable")
    });
    assert_eq!(
        medic
            .current_lines()
            .iter()
            .filter(|l| l.contains("the state store is not writable"))
            .count(),
        1,
        "one ERROR for one fault"
    );

    std::fs::remove_file(&filler).unwrap();
    wait_health(&medic, 200, Duration::from_secs(10));
    let mail = store_mail(&medic, &rcpt, "could not be written");
    assert!(mail.text.contains("No space left"), "{}", mail.text);
}

#[test]
fn a_read_only_data_folder_is_reported_healing_goes_on_and_an_alert_follows() {
    let run = TestRun::new("store-ro");
    let rcpt = unique_rcpt("store-ro");
    let mut disk = Mounted::ext4();
    let data = disk.path.join("data");
    let medic = Medic::start_owned(&mail_vars(&run, &rcpt, &data));
    let web = run.healthy_web();
    wait_health(&medic, 200, Duration::from_secs(10));

    // The kernel's own error path: ext4 with errors=remount-ro turns read-only.
    let trigger = format!("/sys/fs/ext4/{}/trigger_fs_error", disk.device());
    std::fs::write(&trigger, "medic test\n").unwrap();
    let body = wait_health(&medic, 503, Duration::from_secs(10));
    assert!(body.contains("not writable"), "{body}");
    assert!(body.to_lowercase().contains("read-only"), "{body}");
    wait_for("the ERROR line", Duration::from_secs(5), || {
        logged(&medic, "ERROR", "the state store is not writable")
    });

    // Healing goes on: the restart is made, and its record waits in memory.
    run.break_health(&web);
    wait_for("web restarted", Duration::from_secs(30), || {
        run.restarts(&web) >= 1
    });
    wait_for(
        "the unrecorded restart logged",
        Duration::from_secs(10),
        || logged(&medic, "ERROR", "restart not recorded"),
    );
    assert!(wait_health(&medic, 503, Duration::from_secs(1)).contains("not writable"));

    // The operator repairs it: a copy of the disk, writable, mounted in its place.
    let image = disk.path.parent().unwrap().join("store.img");
    let copy = disk.path.parent().unwrap().join("store-repaired.img");
    std::fs::copy(&image, &copy).unwrap();
    run_mount_over(&copy, &disk.path);
    disk.layers += 1;
    wait_health(&medic, 200, Duration::from_secs(10));
    let mail = store_mail(&medic, &rcpt, "could not be written");
    assert!(
        mail.text.to_lowercase().contains("read-only"),
        "{}",
        mail.text
    );
    assert!(mail.text.contains("recorded late"), "{}", mail.text);
    // The restart made during the fault is in the store now.
    let service = format!("{}/web", run.id);
    wait_for("the restart recorded late", Duration::from_secs(5), || {
        recorded_restarts(&data, &service) >= 1
    });
    // The CRITICAL about web, raised while the store was read-only, waited in memory and went
    // out once the store took writes again.
    wait_mails(&plain_dir(), &rcpt, Duration::from_secs(30), &medic, |m| {
        m.iter()
            .any(|m| m.subject.contains("CRITICAL") && m.subject.contains("web"))
    });
}

fn run_mount_over(image: &Path, at: &Path) {
    run(
        "mount",
        &["-o", "loop", image.to_str().unwrap(), at.to_str().unwrap()],
    );
}

#[test]
fn a_deleted_store_is_recreated_with_the_state_medic_holds() {
    let run = TestRun::new("store-deleted");
    let rcpt = unique_rcpt("store-deleted");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut vars = mail_vars(&run, &rcpt, &data);
    vars.push(("MEDIC_RESTART_COOLDOWN".into(), "1h".into()));
    let medic = Medic::start_owned(&vars);
    let web = run.healthy_web();
    // One restart, so there is budget state worth keeping.
    run.break_health(&web);
    wait_for("web restarted", Duration::from_secs(30), || {
        run.restarts(&web) >= 1
    });
    wait_for("web healthy again", Duration::from_secs(30), || {
        run.health(&web) == "healthy"
    });

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("medic.db{suffix}")));
    }
    wait_for("the ERROR line", Duration::from_secs(10), || {
        logged(&medic, "ERROR", "was deleted while medic runs")
    });
    assert!(data.join("medic.db").exists());
    wait_health(&medic, 200, Duration::from_secs(5));
    let mail = store_mail(&medic, &rcpt, "was deleted");
    assert!(mail.text.contains("fresh"), "{}", mail.text);
    // The budget medic held in memory is in the fresh store: the spent cooldown survives.
    let conn = rusqlite::Connection::open(data.join("medic.db")).unwrap();
    let state: String = conn
        .query_row(
            "SELECT state FROM service_state WHERE service = ?1",
            [format!("{}/web", run.id)],
            |r| r.get(0),
        )
        .unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["restarts_total"], 1, "{state}");
    // And medic still heals, within that state: the cooldown holds the next restart.
    let seen = medic.current_lines().len();
    run.break_health(&web);
    wait_for("held by the cooldown", Duration::from_secs(30), || {
        medic.current_lines()[seen..]
            .iter()
            .any(|l| l.contains("not restarting") && l.contains("\"hold\":\"cooldown\""))
    });
    assert_eq!(run.restarts(&web), 1);
}

#[test]
fn a_corrupt_store_is_moved_aside_and_healing_starts_anyway() {
    let run = TestRun::new("store-corrupt");
    let rcpt = unique_rcpt("store-corrupt");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let garbage = b"\x00\xffnot a database\x13\x37".repeat(1000);
    std::fs::write(data.join("medic.db"), &garbage).unwrap();

    let medic = Medic::start_owned(&mail_vars(&run, &rcpt, &data));
    assert!(logged(&medic, "ERROR", "was corrupt"), "{}", medic.dump());
    let aside: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("medic.db.corrupt-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), garbage);
    wait_health(&medic, 200, Duration::from_secs(10));
    let mail = store_mail(&medic, &rcpt, "was corrupt");
    assert!(mail.text.contains("moved aside"), "{}", mail.text);

    // Healing was not stopped by the lost history.
    let web = run.healthy_web();
    run.break_health(&web);
    wait_for("web restarted", Duration::from_secs(30), || {
        run.restarts(&web) >= 1
    });
    assert_eq!(recorded_restarts(&data, &format!("{}/web", run.id)), 1);
}

#[test]
fn a_store_turned_corrupt_while_medic_runs_is_moved_aside_and_healing_goes_on() {
    let run = TestRun::new("store-rot");
    let rcpt = unique_rcpt("store-rot");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut vars = mail_vars(&run, &rcpt, &data);
    vars.push(("MEDIC_STORE_CHECK_INTERVAL".into(), "1s".into()));
    let medic = Medic::start_owned(&vars);
    wait_health(&medic, 200, Duration::from_secs(10));
    let web = run.healthy_web();

    // As after medic has run a while, the pages live in the file, not only in its log; then
    // every byte of the file is replaced (a failing disk, a stray write) under the running
    // medic.
    let db = data.join("medic.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
        .unwrap();
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    let garbage = b"\x00\xffrotten\x13\x37".repeat(len / 10 + 1);
    std::fs::write(&db, &garbage).unwrap();

    wait_for("the corruption found", Duration::from_secs(20), || {
        logged(&medic, "ERROR", "found while medic runs")
    });
    let aside: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("medic.db.corrupt-")
                && !name.ends_with("-wal")
                && !name.ends_with("-shm")
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        std::fs::read(&aside[0])
            .unwrap()
            .starts_with(b"\x00\xffrotten"),
        "the corrupt file is kept as it was"
    );
    wait_health(&medic, 200, Duration::from_secs(10));
    let mail = store_mail(&medic, &rcpt, "found while medic runs");
    assert!(mail.text.contains("moved aside"), "{}", mail.text);

    // Healing goes on, and the fresh store records it.
    run.break_health(&web);
    wait_for("web restarted", Duration::from_secs(30), || {
        run.restarts(&web) >= 1
    });
    wait_for("the restart recorded", Duration::from_secs(10), || {
        recorded_restarts(&data, &format!("{}/web", run.id)) == 1
    });
}
