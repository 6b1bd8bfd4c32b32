//! The `rabbitmq` probe: connects over AMQP and checks each listed queue with a passive declare,
//! which asks for the queue's counts without creating or changing it. A missing queue makes the
//! broker close the channel (404 NOT_FOUND), so every queue gets its own channel. Ready messages
//! are compared with `max_messages`, consumers with `min_consumers`. Everything it opens is
//! closed.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use super::{Key, Kind, Res, Resolver, Shape};
use crate::probe::secret::SecretUri;
use crate::probe::{Failure, ProbeContext, Recorder};

/// Settings of a `rabbitmq` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct RabbitmqSettings {
    /// AMQP URI (`amqp://user:pass@host:5672/vhost`), password masked when printed.
    pub uri: SecretUri,
    /// Queues that must exist; never declared, only checked passively.
    pub queues: Vec<String>,
    /// Most ready messages a queue may hold; `None` checks nothing.
    pub max_messages: Option<u32>,
    /// Fewest consumers a queue must have (default 1).
    pub min_consumers: u32,
}

impl Kind for RabbitmqSettings {
    const TYPE: &'static str = "rabbitmq";
    const KEYS: &'static [Key] = &[
        ("uri", Shape::Scalar),
        ("queues", Shape::List),
        ("max_messages", Shape::Scalar),
        ("min_consumers", Shape::Scalar),
    ];

    fn resolve(r: &Resolver) -> Res<RabbitmqSettings> {
        let uri = r.uri(&["amqp"], "amqp://user:pass@rabbitmq:5672/%2f")?;
        let queues = r.list("queues")?.unwrap_or_default();
        if queues.is_empty() {
            return Err(r.err(
                Some("queues"),
                "is required: the queues to check, e.g. [uploads]",
            ));
        }
        Ok(RabbitmqSettings {
            uri,
            queues,
            max_messages: r.number("max_messages", "a whole number")?,
            min_consumers: r.number("min_consumers", "a whole number")?.unwrap_or(1),
        })
    }

    fn target(&self) -> String {
        format!("{} queues {}", self.uri, self.queues.join(","))
    }

    fn secret_values(&self) -> Vec<String> {
        self.uri.password_forms()
    }

    async fn run(&self, _ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, rec).await
    }
}

async fn run(s: &RabbitmqSettings, rec: &Recorder) -> Result<(), Failure> {
    let connection = rec
        .step("connect", async {
            let properties = ConnectionProperties::default()
                .with_connection_name(format!("medic probe {}", rec.probe()).into());
            Connection::connect(s.uri.expose(), properties)
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", s.uri))
        })
        .await?;

    let mut queues = serde_json::Map::new();
    let mut first_failure = None;
    for queue in &s.queues {
        let checked = rec
            .step(
                &format!("queue {queue}"),
                check_queue(&connection, queue, s),
            )
            .await;
        match checked {
            Ok((ready, consumers)) => {
                rec.note(format!("{ready} ready, {consumers} consumers"));
                queues.insert(
                    queue.clone(),
                    serde_json::json!({ "ready": ready, "consumers": consumers }),
                );
            }
            Err(failure) => {
                queues.insert(
                    queue.clone(),
                    serde_json::json!({ "error": failure.message }),
                );
                first_failure.get_or_insert(failure);
            }
        }
    }
    rec.detail("queues", queues);

    let closed = rec
        .cleanup("close", connection.close(200, "medic probe done".into()))
        .await;
    match (first_failure, closed) {
        (Some(failure), _) => Err(failure),
        (None, Err(failure)) => Err(failure),
        (None, Ok(())) => Ok(()),
    }
}

/// Passively declares `queue` on a channel of its own; returns (ready, consumers) or why the
/// queue is not as it should be.
async fn check_queue(
    connection: &Connection,
    queue: &str,
    s: &RabbitmqSettings,
) -> Result<(u32, u32), String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("cannot open a channel: {e}"))?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    let declared = match declared {
        Ok(q) => q,
        Err(e) => {
            let text = e.to_string();
            return Err(if text.contains("NOT_FOUND") || text.contains("404") {
                format!(
                    "queue {queue:?} does not exist (checked passively: medic never creates queues)"
                )
            } else {
                format!("cannot check queue {queue:?}: {text}")
            });
        }
    };
    // The channel is still open after a successful passive declare; close it politely.
    let _ = channel.close(200, "medic probe done".into()).await;
    let ready = declared.message_count();
    let consumers = declared.consumer_count();
    if let Some(max) = s.max_messages {
        if ready > max {
            return Err(format!(
                "queue {queue:?} has {ready} messages ready, more than max_messages {max}"
            ));
        }
    }
    if consumers < s.min_consumers {
        return Err(format!(
            "queue {queue:?} has {consumers} consumers, fewer than min_consumers {}",
            s.min_consumers
        ));
    }
    Ok((ready, consumers))
}

#[cfg(test)]
mod tests {
    use crate::probe::kinds::from_yaml;
    use crate::probe::kinds::ProbeKind;

    #[test]
    fn queues_are_required_and_one_consumer_is_the_default() {
        let e = from_yaml("type: rabbitmq\nuri: amqp://mq").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("queues"));
        let spec = from_yaml("type: rabbitmq\nuri: amqp://u:pw@mq\nqueues: a, b").unwrap();
        let ProbeKind::Rabbitmq(r) = &spec.kind else {
            panic!()
        };
        assert_eq!(
            (r.queues.len(), r.min_consumers, r.max_messages),
            (2, 1, None)
        );
        assert!(
            spec.kind.target().ends_with("queues a,b"),
            "{}",
            spec.kind.target()
        );
        assert!(!spec.kind.target().contains("pw"));
        let e = from_yaml("type: rabbitmq\nuri: http://mq\nqueues: a").unwrap_err();
        assert!(e.to_string().contains("is not a amqp URI"), "{e}");
    }
}
