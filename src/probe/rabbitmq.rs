//! The `rabbitmq` probe: connects over AMQP and checks each listed queue with a passive declare,
//! which asks for the queue's counts without creating or changing it. A missing queue makes the
//! broker close the channel (404 NOT_FOUND), so every queue gets its own channel. Ready messages
//! are compared with `max_messages`, consumers with `min_consumers`. Everything it opens is
//! closed.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

use super::spec::RabbitmqSettings;
use super::{Failure, Recorder};

pub(crate) async fn run(s: &RabbitmqSettings, rec: &Recorder) -> Result<(), Failure> {
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
