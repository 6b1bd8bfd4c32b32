//! The `disk` probe (informational): free space of the filesystem holding a path, as an
//! unprivileged user sees it (`f_bavail`, like `df`). Warning under `warning` (1 GiB), critical
//! under `critical` (512 MiB). It never restarts anything.

use std::path::PathBuf;

use super::{Key, Kind, Res, Resolver, Shape};
use crate::probe::size::{format_size, parse_size};
use crate::probe::{Failure, ProbeContext, Recorder, Severity};

/// Settings of a `disk` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSettings {
    /// A path on the filesystem to measure (default `/`).
    pub path: PathBuf,
    /// Warning under this many free bytes (default 1 GiB).
    pub warning_bytes: u64,
    /// Critical under this many free bytes (default 512 MiB).
    pub critical_bytes: u64,
}

impl Kind for DiskSettings {
    const TYPE: &'static str = "disk";
    const KEYS: &'static [Key] = &[
        ("path", Shape::Scalar),
        ("warning", Shape::Scalar),
        ("critical", Shape::Scalar),
    ];
    const INFORMATIONAL: bool = true;

    fn resolve(r: &Resolver) -> Res<DiskSettings> {
        let size = |key: &str, default: u64| -> Res<u64> {
            match r.text(key)? {
                None => Ok(default),
                Some(t) => parse_size(&t)
                    .map_err(|e| r.err(Some(key), format!("{key}={t:?} is invalid: {e}"))),
            }
        };
        let warning_bytes = size("warning", 1 << 30)?;
        let critical_bytes = size("critical", 512 << 20)?;
        if critical_bytes > warning_bytes {
            return Err(r.err(Some("critical"), "must not be larger than `warning`"));
        }
        Ok(DiskSettings {
            path: PathBuf::from(r.text_or("path", "/")?),
            warning_bytes,
            critical_bytes,
        })
    }

    fn target(&self) -> String {
        self.path.display().to_string()
    }

    async fn run(&self, _ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, rec).await
    }
}

async fn run(s: &DiskSettings, rec: &Recorder) -> Result<(), Failure> {
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

#[cfg(test)]
mod tests {
    use crate::probe::kinds::from_yaml;

    #[test]
    fn critical_may_not_exceed_warning() {
        let e = from_yaml("type: disk\nwarning: 1GB\ncritical: 2GB").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("critical"));
        let e = from_yaml("type: disk\nwarning: lots").unwrap_err();
        assert!(e.to_string().contains("warning=\"lots\" is invalid"), "{e}");
        let spec = from_yaml("type: disk").unwrap();
        assert!(spec.is_informational() && spec.restart.is_empty());
        assert_eq!(spec.kind.target(), "/");
        let e = from_yaml("type: disk\nrestart: [app]").unwrap_err();
        assert!(e.to_string().contains("informational"), "{e}");
    }
}
