//! When the daily report goes out: sleeps until `MEDIC_REPORT_CRON` fires in `TZ`, then
//! writes the report to the outbox as an email (also at once, on `POST /api/v1/report/send`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::notify::channels::email;
use crate::notify::service::{until, Shared};
use crate::store::outbox::NewMessage;

/// Schedules and builds the daily report.
pub(crate) struct ReportTask {
    /// Settings, store, status, clock.
    pub(crate) shared: Shared,
}

impl ReportTask {
    pub(crate) async fn run(
        self,
        mut requests: mpsc::Receiver<oneshot::Sender<Result<String, String>>>,
        shutdown: CancellationToken,
    ) {
        let settings = self.shared.settings.clone();
        let next_after = |t: DateTime<Utc>| {
            settings
                .report_cron
                .as_ref()
                .and_then(|c| super::next_report_after(t, c, settings.tz))
        };
        let mut due = next_after(self.shared.clock.now());
        loop {
            self.shared.status.set_next_report(due);
            // Wake at least every minute: wall time can jump (a suspended host, NTP).
            let wait = due.map(|d| until(self.shared.clock.now(), d).min(Duration::from_secs(60)));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                request = requests.recv() => match request {
                    Some(reply) => { let _ = reply.send(self.enqueue("report")); }
                    None => return,
                },
                _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {
                    let now = self.shared.clock.now();
                    if let Some(d) = due.filter(|d| now >= *d) {
                        match self.enqueue("report") {
                            Ok(subject) => info!(%subject, "daily report written to the outbox"),
                            Err(e) => warn!("daily report not sent: {e}"),
                        }
                        due = next_after(d.max(now));
                    }
                }
            }
        }
    }

    /// Builds the report now and writes it to the outbox.
    pub(crate) fn enqueue(&self, kind: &str) -> Result<String, String> {
        if self.shared.settings.mail.is_none() {
            return Err("email is not configured: set MAIL_SERVER and ADMIN_EMAIL".into());
        }
        let now = self.shared.clock.now();
        let built = super::report_from_store(
            &self.shared.store,
            &(self.shared.stack)(),
            now,
            &(self.shared.components)(),
        )
        .map_err(|e| format!("cannot read the history for the report: {e:#}"))?;
        let email = super::report_email(
            &built,
            self.shared.settings.tz,
            self.shared.settings.public_url.as_deref(),
        );
        let message = NewMessage {
            channel: email::ID,
            kind: kind.into(),
            subject: email.subject.clone(),
            payload: serde_json::to_string(&email).map_err(|e| e.to_string())?,
        };
        self.shared
            .store
            .outbox_enqueue(now, &message)
            .map_err(|e| format!("cannot write the report to the outbox: {e:#}"))?;
        self.shared.wake.notify_one();
        Ok(email.subject)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;

    use super::*;
    use crate::notify::service::test_support::{settings, shared};
    use crate::notify::TokioClock;
    use crate::store::Store;

    /// The report is written to the outbox when the cron fires in TZ, on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn the_report_goes_out_at_eight_in_berlin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        // 06:58 UTC in winter is 07:58 in Berlin: due at 07:00 UTC.
        let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 6, 58, 0).unwrap();
        let clock = Arc::new(TokioClock::starting_at(t0));
        let task = ReportTask {
            shared: shared(
                store.clone(),
                settings(&[("TZ", "Europe/Berlin")]),
                clock.clone(),
            ),
        };
        let status = task.shared.status.clone();
        let (_req_tx, req_rx) = mpsc::channel(1);
        let stop = CancellationToken::new();
        let handle = tokio::spawn(task.run(req_rx, stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            status.snapshot().next_report_at,
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap())
        );
        tokio::time::sleep(Duration::from_secs(110)).await;
        assert!(
            store.outbox_recent(10).unwrap().is_empty(),
            "not before 08:00 Berlin"
        );
        tokio::time::sleep(Duration::from_secs(15)).await;
        let sent = store.outbox_recent(10).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].subject, "✅ Daily Health Report - shop");
        assert_eq!(
            sent[0].created_at,
            Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap()
        );
        // The next one is a day later; nothing more meanwhile.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(store.outbox_recent(10).unwrap().len(), 1);
        assert_eq!(
            status.snapshot().next_report_at,
            Some(Utc.with_ymd_and_hms(2026, 11, 24, 7, 0, 0).unwrap())
        );
        stop.cancel();
        handle.await.unwrap();
    }
}
