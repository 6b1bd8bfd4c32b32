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

use super::{Key, Kind, Res, Resolver, Shape};
use crate::probe::secret::SecretUri;
use crate::probe::{Failure, ProbeContext, Recorder};

/// Settings of a `mongodb` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct MongodbSettings {
    /// Connection string (`mongodb://…`), password masked when printed.
    pub uri: SecretUri,
    /// Database of the probe collection (default `medic_probe`).
    pub database: String,
    /// Probe collection (default `probes`).
    pub collection: String,
}

impl Kind for MongodbSettings {
    const TYPE: &'static str = "mongodb";
    const KEYS: &'static [Key] = &[
        ("uri", Shape::Scalar),
        ("database", Shape::Scalar),
        ("collection", Shape::Scalar),
    ];

    fn resolve(r: &Resolver) -> Res<MongodbSettings> {
        Ok(MongodbSettings {
            uri: r.uri(
                &["mongodb", "mongodb+srv"],
                "mongodb://user:pass@mongo:27017",
            )?,
            database: r.text_or("database", "medic_probe")?,
            collection: r.text_or("collection", "probes")?,
        })
    }

    fn target(&self) -> String {
        format!("{} {}.{}", self.uri, self.database, self.collection)
    }

    fn secret_values(&self) -> Vec<String> {
        self.uri.password_forms()
    }

    async fn run(&self, _ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, rec).await
    }
}

async fn run(s: &MongodbSettings, rec: &Recorder) -> Result<(), Failure> {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::probe::parse::parse_labels;
    use crate::probe::vars::LabelVariables;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn a_changed_secret_makes_a_different_probe_though_it_prints_the_same() {
        // The scheduler restarts a probe whose spec changed; a new password in a label (the
        // container recreated with it) must count as a change though both print masked.
        let spec = |password: &str| {
            let labels = HashMap::from([
                ("medic.probe.db.type".to_string(), "mongodb".to_string()),
                (
                    "medic.probe.db.uri".to_string(),
                    format!("mongodb://medic:{password}@db:27017/shop"),
                ),
            ]);
            parse_labels(
                "shop-db-1",
                "db",
                &labels,
                &no_env,
                &LabelVariables::default(),
            )
            .unwrap()
            .remove(0)
        };
        let (old, new) = (spec("first-secret"), spec("second-secret"));
        assert_eq!(format!("{old:?}"), format!("{new:?}"));
        assert!(!format!("{old:?}").contains("secret"));
        assert_ne!(old, new);
        assert_eq!(old, spec("first-secret"));
    }
}
