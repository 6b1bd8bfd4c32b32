//! The worker's fault switches: ways to break it that Docker cannot see.
//!
//! Real workers fail while their process keeps running: they lose their consumer, or get stuck
//! on one job. Those are the failures medic exists to catch, so drills need them on demand.

use std::fmt;
use std::str::FromStr;

/// Position of the worker's fault switch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Healthy: consume and process jobs.
    #[default]
    None,
    /// Cancel the queue consumer but stay up and connected: jobs pile up in the queue while the
    /// container keeps running and its healthcheck keeps passing.
    StopConsuming,
    /// Take the next job and never finish it (until the switch goes back to `none`): the
    /// consumer still exists, but nothing gets done.
    Hang,
    /// Exit at once with a non-zero status, like a crash.
    Crash,
}

/// Exit status of the `crash` fault: EX_SOFTWARE, "internal software error".
pub const CRASH_EXIT_CODE: i32 = 70;

impl Fault {
    /// Every switch position, in the spelling the admin API and `WORKER_FAULT` take.
    pub const ALL: [Fault; 4] = [Fault::None, Fault::StopConsuming, Fault::Hang, Fault::Crash];

    /// The position's name: `none`, `stop-consuming`, `hang` or `crash`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::StopConsuming => "stop-consuming",
            Fault::Hang => "hang",
            Fault::Crash => "crash",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let normalized = value.trim().to_ascii_lowercase().replace('_', "-");
        Fault::ALL
            .into_iter()
            .find(|fault| fault.as_str() == normalized)
            .ok_or_else(|| {
                format!(
                    "unknown fault {value:?}; expected one of: none, stop-consuming, hang, crash"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Fault;

    #[test]
    fn parses_its_own_names_and_forgiving_spellings() {
        for fault in Fault::ALL {
            assert_eq!(fault.as_str().parse::<Fault>(), Ok(fault));
        }
        assert_eq!("STOP_CONSUMING".parse::<Fault>(), Ok(Fault::StopConsuming));
        assert!("explode"
            .parse::<Fault>()
            .unwrap_err()
            .contains("stop-consuming"));
    }
}
