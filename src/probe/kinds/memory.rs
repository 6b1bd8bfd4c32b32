//! The `memory` probe (informational): memory pressure as `MemAvailable / MemTotal` from
//! `/proc/meminfo`, the kernel's own estimate of what can be allocated without swapping.
//! Warning under `warning_percent` (10), critical under `critical_percent` (5). Inside a container
//! `/proc/meminfo` describes the host, which is what a stack's operator wants to know.

use std::path::PathBuf;

use super::{Key, Kind, Res, Resolver, Shape};
use crate::probe::size::format_size;
use crate::probe::{Failure, ProbeContext, Recorder, Severity};

/// Settings of a `memory` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySettings {
    /// The meminfo file (default `/proc/meminfo`).
    pub meminfo: PathBuf,
    /// Warning when available memory is under this percentage of the total (default 10).
    pub warning_percent: f64,
    /// Critical under this percentage (default 5).
    pub critical_percent: f64,
}

impl Kind for MemorySettings {
    const TYPE: &'static str = "memory";
    const KEYS: &'static [Key] = &[
        ("meminfo", Shape::Scalar),
        ("warning_percent", Shape::Scalar),
        ("critical_percent", Shape::Scalar),
    ];
    const INFORMATIONAL: bool = true;

    fn resolve(r: &Resolver) -> Res<MemorySettings> {
        let percent = |key: &str, default: f64| -> Res<f64> {
            let p: f64 = r
                .number(key, "a percentage between 0 and 100")?
                .unwrap_or(default);
            if !(0.0..=100.0).contains(&p) {
                return Err(r.err(Some(key), "expected a percentage between 0 and 100"));
            }
            Ok(p)
        };
        let warning_percent = percent("warning_percent", 10.0)?;
        let critical_percent = percent("critical_percent", 5.0)?;
        if critical_percent > warning_percent {
            return Err(r.err(
                Some("critical_percent"),
                "must not be larger than `warning_percent`",
            ));
        }
        Ok(MemorySettings {
            meminfo: PathBuf::from(r.text_or("meminfo", "/proc/meminfo")?),
            warning_percent,
            critical_percent,
        })
    }

    fn target(&self) -> String {
        self.meminfo.display().to_string()
    }

    async fn run(&self, _ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, rec).await
    }
}

/// `MemTotal` and `MemAvailable` in bytes.
pub(crate) fn parse_meminfo(text: &str) -> Result<(u64, u64), String> {
    let field = |name: &str| -> Result<u64, String> {
        let line = text
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(':'))
            .ok_or_else(|| format!("no {name} line"))?;
        let kb: u64 = line[name.len() + 1..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("unreadable {name} line {line:?}"))?;
        Ok(kb * 1024)
    };
    Ok((field("MemTotal")?, field("MemAvailable")?))
}

async fn run(s: &MemorySettings, rec: &Recorder) -> Result<(), Failure> {
    let (total, available) = rec
        .step("read meminfo", async {
            let text = tokio::fs::read_to_string(&s.meminfo)
                .await
                .map_err(|e| format!("cannot read {}: {e}", s.meminfo.display()))?;
            parse_meminfo(&text).map_err(|e| format!("{}: {e}", s.meminfo.display()))
        })
        .await?;
    let percent = if total == 0 {
        0.0
    } else {
        available as f64 * 100.0 / total as f64
    };
    let percent = (percent * 10.0).round() / 10.0;
    rec.note(format!(
        "{} available of {} ({percent}%)",
        format_size(available),
        format_size(total)
    ));
    rec.detail("total_bytes", total);
    rec.detail("available_bytes", available);
    rec.detail("available_percent", percent);
    let message = |level: &str, bound: f64| {
        format!(
            "only {percent}% of memory available ({} of {}; {level} under {bound}%)",
            format_size(available),
            format_size(total)
        )
    };
    if percent < s.critical_percent {
        rec.finding(Severity::Critical, message("critical", s.critical_percent));
    } else if percent < s.warning_percent {
        rec.finding(Severity::Warning, message("warning", s.warning_percent));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::kinds::from_yaml;

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text = "MemTotal:       16000 kB\nMemFree:  1 kB\nMemAvailable:    4000 kB\n";
        assert_eq!(parse_meminfo(text).unwrap(), (16000 * 1024, 4000 * 1024));
        assert!(parse_meminfo("MemTotal: 1 kB\n")
            .unwrap_err()
            .contains("MemAvailable"));
    }

    #[test]
    fn percentages_are_bounded_and_ordered() {
        let e = from_yaml("type: memory\nwarning_percent: 120").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("expected a percentage between 0 and 100"),
            "{e}"
        );
        let e = from_yaml("type: memory\nwarning_percent: 4").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("critical_percent"));
        assert_eq!(
            from_yaml("type: memory").unwrap().kind.target(),
            "/proc/meminfo"
        );
    }
}
