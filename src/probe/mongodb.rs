//! The `mongodb` probe: a real write and read. It inserts a unique document into a probe
//! collection (default `medic_probe.probes`), reads it back, compares it and deletes it,
//! reporting each step's latency and which step failed.
//!
//! A fresh client per run: a probe must see the server as a new connection would, not through a
//! pool that was healthy a minute ago. Server selection and connection are bounded by the probe's
//! budget, so a stopped server fails the `connect` step instead of the whole timeout. Once the
//! document is inserted, it is deleted even when reading it back failed, using the time kept in
//! reserve for cleanup.

use std::time::Duration;

use ::mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use ::mongodb::options::ClientOptions;
use ::mongodb::Client;

use super::spec::MongodbSettings;
use super::{Failure, Recorder};

pub(crate) async fn run(s: &MongodbSettings, rec: &Recorder) -> Result<(), Failure> {
    rec.detail("database", s.database.clone());
    rec.detail("collection", s.collection.clone());
    let client = rec
        .step("connect", async {
            let mut options = ClientOptions::parse(s.uri.expose())
                .await
                .map_err(|e| format!("the URI {} is not usable: {e}", s.uri))?;
            let budget = rec.budget();
            options.server_selection_timeout = Some(budget);
            options.connect_timeout = Some(budget.min(Duration::from_secs(10)));
            options.app_name = Some("medic".into());
            options.max_pool_size = Some(2);
            let client = Client::with_options(options).map_err(|e| e.to_string())?;
            client
                .database(&s.database)
                .run_command(doc! { "ping": 1 })
                .await
                .map_err(|e| format!("no answer from {}: {e}", s.uri))?;
            Ok::<_, String>(client)
        })
        .await?;

    let collection = client
        .database(&s.database)
        .collection::<Document>(&s.collection);
    let id = ObjectId::new();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let document = doc! {
        "_id": id,
        "token": &token,
        "probe": rec.probe(),
        "created_at": DateTime::now(),
    };
    rec.step("insert", async {
        collection
            .insert_one(document)
            .await
            .map_err(|e| e.to_string())
    })
    .await?;

    let checked = async {
        let found = rec
            .step("find", async {
                collection
                    .find_one(doc! { "_id": id })
                    .await
                    .map_err(|e| e.to_string())
            })
            .await?;
        rec.step("compare", async {
            match found {
                None => Err("the inserted document is not there".to_string()),
                Some(d) if d.get_str("token").ok() == Some(token.as_str()) => Ok(()),
                Some(d) => Err(format!(
                    "read back a different document (token {:?})",
                    d.get_str("token").unwrap_or("missing")
                )),
            }
        })
        .await
    }
    .await;

    let deleted = rec
        .cleanup("delete", async {
            let outcome = collection
                .delete_one(doc! { "_id": id })
                .await
                .map_err(|e| e.to_string())?;
            if outcome.deleted_count == 1 {
                Ok(())
            } else {
                Err("the probe document was not deleted (nothing matched)".to_string())
            }
        })
        .await;
    // Close the connections now rather than when the background tasks notice the drop.
    client.shutdown().immediate(true).await;
    checked?;
    deleted?;
    Ok(())
}
