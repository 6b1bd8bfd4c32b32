//! The durable side of alerting: the outbox of messages to deliver, the inbox of alerts not yet
//! turned into messages, and the rate limiter's state per component.
//!
//! Every email and webhook is written here *before* anything tries to send it, and marked sent
//! as soon as the server accepted it, so a message survives a SIGKILL of medic at any moment.
//! Delivery is at least once: a kill between the server's acceptance and that mark sends the
//! message again, with the same Message-ID ([`Store::outbox_identity`]).
//!
//! An alert the supervisor raised is written to the inbox the moment the notifier receives it; a
//! round of alerts leaves the inbox in the same transaction that puts its messages into the
//! outbox and saves the rate limits, so nothing is lost or doubled between the two either.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::Store;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at      TEXT NOT NULL,
    channel         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    subject         TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    sent_at         TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS alert_inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT NOT NULL,
    alert       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_limits (
    component TEXT PRIMARY KEY,
    state     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// Creates the outbox tables; called by [`Store::open`].
pub(super) fn create_tables(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// A timestamp as stored: UTC, fixed width, so text order is time order.
pub(crate) fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_stamp(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// Where a message goes: the id of one channel of [`crate::notify::channels::REGISTRY`]
/// (`email`, `webhook`), as stored in the `channel` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChannelId(&'static str);

impl ChannelId {
    /// The id a channel's file declares; the registry's test checks they are unique.
    pub(crate) const fn new(id: &'static str) -> ChannelId {
        ChannelId(id)
    }

    /// The name stored in the table.
    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The registry's channel stored as `text`. A name this medic does not know (written by a
    /// newer medic, or by hand) is an error, never a guess: the row stays where it is.
    pub fn parse(text: &str) -> Result<ChannelId, UnknownChannel> {
        crate::notify::channels::known(text).ok_or_else(|| UnknownChannel(text.to_string()))
    }
}

/// An outbox row names a channel this medic does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the outbox holds a message for the channel \"{0}\", which this medic does not know; \
     it is kept, not sent"
)]
pub struct UnknownChannel(pub String);

/// A message to put into the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Where it goes.
    pub channel: ChannelId,
    /// What it is: `alert`, `reminder`, `report` or `test`.
    pub kind: String,
    /// The subject (email) or a one-line summary (webhook), for logs and listings.
    pub subject: String,
    /// The message itself as JSON: an [`crate::notify::Email`]-shaped object, or the webhook body.
    pub payload: String,
}

/// A message waiting in (or delivered from) the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Row id, the message's identity.
    pub id: i64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Where it goes.
    pub channel: ChannelId,
    /// `alert`, `reminder`, `report` or `test`.
    pub kind: String,
    /// Subject or summary.
    pub subject: String,
    /// The message as JSON.
    pub payload: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it may be tried next.
    pub next_attempt_at: DateTime<Utc>,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    /// The last delivery error.
    pub last_error: Option<String>,
}

/// How many messages of one channel are waiting, and how many failed for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxDepth {
    /// Waiting to be sent (including those waiting for a retry).
    pub pending: u64,
    /// Given up on after a permanent error.
    pub failed: u64,
    /// Delivered.
    pub sent: u64,
}

/// Everything one round of alerts changes, committed together.
#[derive(Debug, Clone, Default)]
pub struct RoundCommit {
    /// Inbox rows the round consumed.
    pub inbox_ids: Vec<i64>,
    /// Rate-limit state per component, as JSON.
    pub limits: Vec<(String, String)>,
    /// Messages to deliver.
    pub messages: Vec<NewMessage>,
    /// History lines: (component, kind, message).
    pub history: Vec<(String, String, String)>,
}

const MESSAGE_COLUMNS: &str = "id, created_at, channel, kind, subject, payload, attempts, \
                               next_attempt_at, state, last_error";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxMessage> {
    Ok(OutboxMessage {
        id: r.get(0)?,
        created_at: parse_stamp(&r.get::<_, String>(1)?),
        channel: ChannelId::parse(&r.get::<_, String>(2)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
        })?,
        kind: r.get(3)?,
        subject: r.get(4)?,
        payload: r.get(5)?,
        attempts: r.get(6)?,
        next_attempt_at: parse_stamp(&r.get::<_, String>(7)?),
        state: r.get(8)?,
        last_error: r.get(9)?,
    })
}

impl Store {
    /// Keeps an alert until its round is committed; returns its inbox id.
    pub fn inbox_push(&self, at: DateTime<Utc>, alert_json: &str) -> anyhow::Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO alert_inbox (received_at, alert) VALUES (?1, ?2)",
            params![stamp(at), alert_json],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Alerts received but not yet committed in a round (left by a crash), oldest first.
    pub fn inbox_pending(&self) -> anyhow::Result<Vec<(i64, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, alert FROM alert_inbox ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every component's rate-limit state, as JSON.
    pub fn load_alert_limits(&self) -> anyhow::Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT component, state FROM alert_limits")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Commits one round: consumes its inbox rows, saves the limits, writes the messages and
    /// history, all or nothing. Returns the new outbox ids.
    pub fn commit_round(&self, at: DateTime<Utc>, round: &RoundCommit) -> anyhow::Result<Vec<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in &round.inbox_ids {
            tx.execute("DELETE FROM alert_inbox WHERE id = ?1", params![id])?;
        }
        for (component, state) in &round.limits {
            tx.execute(
                "INSERT INTO alert_limits (component, state) VALUES (?1, ?2)
                 ON CONFLICT(component) DO UPDATE SET state = excluded.state",
                params![component, state],
            )?;
        }
        let mut ids = Vec::new();
        for m in &round.messages {
            // Refused at the door too: a message no medic could deliver is not written.
            ChannelId::parse(m.channel.as_str())?;
            tx.execute(
                "INSERT INTO outbox (created_at, channel, kind, subject, payload, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?1)",
                params![stamp(at), m.channel.as_str(), m.kind, m.subject, m.payload],
            )?;
            ids.push(tx.last_insert_rowid());
        }
        for (component, kind, message) in &round.history {
            tx.execute(
                "INSERT INTO history (at, component, kind, message) VALUES (?1, ?2, ?3, ?4)",
                params![at.to_rfc3339(), component, kind, message],
            )?;
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Writes one message to the outbox, due now; returns its id.
    pub fn outbox_enqueue(&self, at: DateTime<Utc>, message: &NewMessage) -> anyhow::Result<i64> {
        let round = RoundCommit {
            messages: vec![message.clone()],
            ..Default::default()
        };
        Ok(self.commit_round(at, &round)?[0])
    }

    /// The pending message of these channels that is due first (maybe in the future).
    pub fn outbox_next(&self, channels: &[ChannelId]) -> anyhow::Result<Option<OutboxMessage>> {
        if channels.is_empty() {
            return Ok(None);
        }
        let list = channels
            .iter()
            .map(|c| format!("'{}'", c.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM outbox
                     WHERE state = 'pending' AND channel IN ({list})
                     ORDER BY next_attempt_at, id LIMIT 1"
                ),
                [],
                message_row,
            )
            .optional()?)
    }

    /// One message by id.
    pub fn outbox_get(&self, id: i64) -> anyhow::Result<Option<OutboxMessage>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                &format!("SELECT {MESSAGE_COLUMNS} FROM outbox WHERE id = ?1"),
                params![id],
                message_row,
            )
            .optional()?)
    }

    /// The most recent messages, newest first (for tests and listings).
    pub fn outbox_recent(&self, limit: u32) -> anyhow::Result<Vec<OutboxMessage>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM outbox ORDER BY id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map(params![limit], message_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The server accepted the message.
    pub fn outbox_mark_sent(&self, id: i64, at: DateTime<Utc>) -> anyhow::Result<()> {
        self.conn().execute(
            "UPDATE outbox SET state = 'sent', sent_at = ?1 WHERE id = ?2",
            params![stamp(at), id],
        )?;
        Ok(())
    }

    /// A transient failure: try again at `next`.
    pub fn outbox_retry_at(
        &self,
        id: i64,
        attempts: u32,
        next: DateTime<Utc>,
        error: &str,
    ) -> anyhow::Result<()> {
        self.conn().execute(
            "UPDATE outbox SET attempts = ?1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?4",
            params![attempts, stamp(next), error, id],
        )?;
        Ok(())
    }

    /// A permanent failure: kept, with the error, and not tried again.
    pub fn outbox_mark_failed(&self, id: i64, attempts: u32, error: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "UPDATE outbox SET state = 'failed', attempts = ?1, last_error = ?2 WHERE id = ?3",
            params![attempts, error, id],
        )?;
        Ok(())
    }

    /// Gives messages of these channels that failed permanently since `since` one more chance,
    /// due now (at start: the setting at fault may have been fixed). Returns how many.
    pub fn outbox_requeue_failed(
        &self,
        channels: &[ChannelId],
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        let conn = self.conn();
        let mut n = 0;
        for channel in channels {
            n += conn.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?1
                 WHERE state = 'failed' AND channel = ?2 AND created_at >= ?3",
                params![stamp(now), channel.as_str(), stamp(since)],
            )?;
        }
        Ok(n)
    }

    /// Forgets delivered messages older than `before`; failed and pending ones stay.
    pub fn outbox_prune_sent(&self, before: DateTime<Utc>) -> anyhow::Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM outbox WHERE state = 'sent' AND created_at < ?1",
            params![stamp(before)],
        )?)
    }

    /// Messages per state of one channel.
    pub fn outbox_depth(&self, channel: ChannelId) -> anyhow::Result<OutboxDepth> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT state, COUNT(*) FROM outbox WHERE channel = ?1 GROUP BY state")?;
        let rows = stmt.query_map(params![channel.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut depth = OutboxDepth::default();
        for row in rows {
            let (state, n) = row?;
            match state.as_str() {
                "pending" => depth.pending = n as u64,
                "failed" => depth.failed = n as u64,
                "sent" => depth.sent = n as u64,
                _ => {}
            }
        }
        Ok(depth)
    }

    /// Channels named by pending messages that this medic does not know (a newer medic wrote
    /// them), with how many each: such messages are kept, never sent, and said at start.
    pub fn outbox_unknown_channels(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT channel, COUNT(*) FROM outbox WHERE state = 'pending' GROUP BY channel",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut unknown = Vec::new();
        for row in rows {
            let (channel, n) = row?;
            if ChannelId::parse(&channel).is_err() {
                unknown.push((channel, n as u64));
            }
        }
        Ok(unknown)
    }

    /// A small value the notifier keeps (e.g. the last daily report's time).
    pub fn notify_meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT value FROM notify_meta WHERE key = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A random name of this database, made on first use and kept: with an outbox id it makes
    /// a Message-ID that stays the same however often the message is sent, so a copy sent again
    /// after a SIGKILL (the server accepted it, medic died before noting that) carries the
    /// Message-ID of the first, and mail clients and servers can tell it is the same message.
    pub fn outbox_identity(&self) -> anyhow::Result<String> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO notify_meta (key, value) VALUES ('outbox_identity', ?1)",
            params![uuid::Uuid::new_v4().simple().to_string()],
        )?;
        Ok(conn.query_row(
            "SELECT value FROM notify_meta WHERE key = 'outbox_identity'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Sets a value of [`Store::notify_meta`].
    pub fn set_notify_meta(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.conn().execute(
            "INSERT INTO notify_meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::channels::{email::ID as EMAIL, webhook::ID as WEBHOOK};

    fn message(subject: &str) -> NewMessage {
        NewMessage {
            channel: EMAIL,
            kind: "alert".into(),
            subject: subject.into(),
            payload: "{}".into(),
        }
    }

    #[test]
    fn a_round_moves_alerts_from_inbox_to_outbox_atomically_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let a = store.inbox_push(t, "{\"a\":1}").unwrap();
            let _b = store.inbox_push(t, "{\"b\":1}").unwrap();
            store
                .commit_round(
                    t,
                    &RoundCommit {
                        inbox_ids: vec![a],
                        limits: vec![("web".into(), "{}".into())],
                        messages: vec![message("one")],
                        history: vec![("web".into(), "alert_held".into(), "x".into())],
                    },
                )
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.inbox_pending().unwrap().len(), 1);
        assert_eq!(store.load_alert_limits().unwrap().len(), 1);
        let next = store.outbox_next(&[EMAIL]).unwrap().unwrap();
        assert_eq!(next.subject, "one");
        assert!(store.outbox_next(&[WEBHOOK]).unwrap().is_none());
        store
            .outbox_retry_at(next.id, 1, t + chrono::Duration::seconds(5), "down")
            .unwrap();
        let again = store.outbox_next(&[EMAIL]).unwrap().unwrap();
        assert_eq!(again.attempts, 1);
        assert_eq!(again.next_attempt_at, t + chrono::Duration::seconds(5));
        store.outbox_mark_sent(next.id, t).unwrap();
        assert!(store.outbox_next(&[EMAIL]).unwrap().is_none());
        let depth = store.outbox_depth(EMAIL).unwrap();
        assert_eq!((depth.pending, depth.sent, depth.failed), (0, 1, 0));
        assert_eq!(store.outbox_prune_sent(t).unwrap(), 0);
        assert_eq!(
            store
                .outbox_prune_sent(t + chrono::Duration::days(31))
                .unwrap(),
            1
        );
        let id = store.outbox_enqueue(t, &message("two")).unwrap();
        store.outbox_mark_failed(id, 1, "535 bad password").unwrap();
        let depth = store.outbox_depth(EMAIL).unwrap();
        assert_eq!(depth.failed, 1);
        assert_eq!(
            store
                .outbox_requeue_failed(&[EMAIL], t - chrono::Duration::days(1), t)
                .unwrap(),
            1
        );
        assert_eq!(store.outbox_next(&[EMAIL]).unwrap().unwrap().id, id);
        store.set_notify_meta("k", "v").unwrap();
        assert_eq!(store.notify_meta("k").unwrap().as_deref(), Some("v"));
    }

    #[test]
    fn the_outbox_identity_is_made_once_and_kept_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap().outbox_identity().unwrap();
        assert_eq!(first.len(), 32, "{first}");
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()), "{first}");
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.outbox_identity().unwrap(), first);
        assert_eq!(store.outbox_identity().unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        let elsewhere = Store::open(other.path()).unwrap();
        assert_ne!(elsewhere.outbox_identity().unwrap(), first);
    }

    /// A row naming a channel this medic does not know (a newer medic wrote it) is refused
    /// with an error naming the channel, kept in the table, and never sent as an email.
    #[test]
    fn a_row_of_an_unknown_channel_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO outbox (created_at, channel, kind, subject, payload, next_attempt_at)
                 VALUES (?1, 'pager', 'alert', 'x', '{}', ?1)",
                params![stamp(t)],
            )
            .unwrap();
        let id = store.conn().last_insert_rowid();
        let err = store.outbox_get(id).unwrap_err();
        assert!(format!("{err:#}").contains("\"pager\""), "{err:#}");
        assert!(store.outbox_next(&[EMAIL, WEBHOOK]).unwrap().is_none());
        let kept: i64 = store
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE channel = 'pager'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, 1);
        assert_eq!(
            store.outbox_unknown_channels().unwrap(),
            vec![("pager".to_string(), 1)]
        );
        assert!(ChannelId::parse("pager").is_err());
        assert_eq!(ChannelId::parse("email"), Ok(EMAIL));
    }
}
