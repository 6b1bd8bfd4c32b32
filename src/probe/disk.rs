//! The `disk` probe (informational): free space of the filesystem holding a path, as an
//! unprivileged user sees it (`f_bavail`, like `df`). Warning under `warning` (1 GiB), critical
//! under `critical` (512 MiB). It never restarts anything.

use super::spec::{format_size, DiskSettings};
use super::{Failure, Recorder, Severity};

pub(crate) async fn run(s: &DiskSettings, rec: &Recorder) -> Result<(), Failure> {
    let path = s.path.clone();
    // statvfs can block on a dead network mount: keep it off the async threads.
    let (free, total) = rec
        .step("statvfs", async move {
            tokio::task::spawn_blocking(move || {
                rustix::fs::statvfs(&path)
                    .map(|st| (st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize))
                    .map_err(|e| format!("cannot read free space of {}: {e}", path.display()))
            })
            .await
            .map_err(|e| format!("the measurement crashed: {e}"))?
        })
        .await?;
    rec.note(format!(
        "{} free of {}",
        format_size(free),
        format_size(total)
    ));
    rec.detail("path", s.path.display().to_string());
    rec.detail("free_bytes", free);
    rec.detail("total_bytes", total);
    if free < s.critical_bytes {
        rec.finding(
            Severity::Critical,
            format!(
                "only {} free on {} (critical under {})",
                format_size(free),
                s.path.display(),
                format_size(s.critical_bytes)
            ),
        );
    } else if free < s.warning_bytes {
        rec.finding(
            Severity::Warning,
            format!(
                "only {} free on {} (warning under {})",
                format_size(free),
                s.path.display(),
                format_size(s.warning_bytes)
            ),
        );
    }
    Ok(())
}
