//! Headless Chromium for the tests that look at what medic renders (status page, report,
//! emails), and the folder their screenshots go to.

use std::path::PathBuf;
use std::process::Command;

/// Where test artifacts (screenshots) are kept: `artifacts/` at the repo root (gitignored).
pub fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium (as root it needs --no-sandbox); returns stdout.
pub fn chromium(args: &[&str]) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .args(args)
        .output()
        .expect("chromium must be installed: scripts/testenv.sh up installs Debian's");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
