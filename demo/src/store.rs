//! Uploaded documents in MongoDB, collection `documents`.
//!
//! One record per upload: the file as uploaded, its processing status and, once the worker has
//! run, the extracted text or why there is none. The driver keeps a connection pool that
//! reconnects by itself when MongoDB comes back; a short server-selection timeout makes calls
//! fail within seconds during an outage instead of hanging requests and jobs.

use anyhow::Context;
use mongodb::bson::{doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::config::{Backends, DEFAULT_MONGODB_DB};
use crate::mask::mask_uri;

/// Collection holding the uploads.
pub const COLLECTION: &str = "documents";

/// How long a call waits for a usable MongoDB before failing.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a document is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Stored and its job published; no worker has taken it yet.
    Queued,
    /// A worker took the job and is extracting the text.
    Processing,
    /// The text is extracted and stored.
    Done,
    /// The worker could not extract text; `error` says why.
    Failed,
}

/// What the API shows of a document: everything but the file's bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DocumentSummary {
    /// MongoDB id, shown to clients as a 24-digit hex string.
    #[serde(rename = "_id")]
    pub id: ObjectId,
    /// File name as the client sent it.
    pub filename: String,
    /// Content type as the client sent it, if any.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Size of the uploaded file in bytes.
    pub size: i64,
    /// Processing status.
    pub status: Status,
    /// Extracted text, once `status` is `done`.
    #[serde(default)]
    pub text: Option<String>,
    /// Why extraction failed, when `status` is `failed`.
    #[serde(default)]
    pub error: Option<String>,
    /// When the upload was stored.
    #[serde(default, deserialize_with = "lenient_date")]
    pub created_at: Option<DateTime>,
    /// When the status last changed.
    #[serde(default, deserialize_with = "lenient_date")]
    pub updated_at: Option<DateTime>,
}

/// Reads a date stored as a BSON date, or as a string: the MongoDB wire server the tests use
/// (nx-27017) hands back dates written by `$set` as `"2026-01-02 03:04:05.678000"`. A value
/// that is neither reads as `None` rather than failing the whole document.
fn lenient_date<'de, D>(deserializer: D) -> Result<Option<DateTime>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(match Bson::deserialize(deserializer)? {
        Bson::DateTime(date) => Some(date),
        Bson::String(text) => DateTime::parse_rfc3339_str(&text)
            .or_else(|_| DateTime::parse_rfc3339_str(format!("{}Z", text.replacen(' ', "T", 1))))
            .ok(),
        _ => None,
    })
}

/// A stored upload, file bytes included.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// Everything but the bytes.
    #[serde(flatten)]
    pub summary: DocumentSummary,
    /// The file as uploaded.
    pub content: Binary,
}

/// How a job ended, as stored by [`Store::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Text extracted.
    Done(String),
    /// No text: the reason.
    Failed(String),
}

/// Handle to the `documents` collection; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    /// The database, for `ping`.
    database: Database,
    /// Full records, for inserts and the worker.
    documents: Collection<DocumentRecord>,
    /// The same collection read without the file bytes, for the API.
    summaries: Collection<DocumentSummary>,
}

impl Store {
    /// Builds a client for `backends`. Does not wait for MongoDB: the pool connects lazily and
    /// reconnects by itself, so a program can start before its database does.
    pub async fn connect(backends: &Backends, app_name: &str) -> anyhow::Result<Self> {
        let mut options = ClientOptions::parse(&backends.mongodb_url)
            .await
            .with_context(|| {
                format!(
                    "MONGODB_URL {} is not a valid MongoDB URI",
                    mask_uri(&backends.mongodb_url)
                )
            })?;
        options.app_name = Some(app_name.to_owned());
        options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
        options.connect_timeout = Some(SERVER_SELECTION_TIMEOUT);
        let database_name = backends
            .mongodb_db
            .clone()
            .or_else(|| options.default_database.clone())
            .unwrap_or_else(|| DEFAULT_MONGODB_DB.to_owned());
        let client = Client::with_options(options).context("cannot create the MongoDB client")?;
        let database = client.database(&database_name);
        tracing::info!(
            mongodb = %mask_uri(&backends.mongodb_url),
            database = %database_name,
            "MongoDB client ready"
        );
        Ok(Self {
            documents: database.collection(COLLECTION),
            summaries: database.collection(COLLECTION),
            database,
        })
    }

    /// Name of the database in use.
    pub fn database_name(&self) -> &str {
        self.database.name()
    }

    /// Round trip to the server: proves MongoDB answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.database
            .run_command(doc! { "ping": 1 })
            .await
            .context("MongoDB ping failed")?;
        Ok(())
    }

    /// Stores a new upload with status `queued` and returns its id.
    pub async fn insert_queued(
        &self,
        filename: &str,
        content_type: Option<&str>,
        content: Vec<u8>,
    ) -> anyhow::Result<ObjectId> {
        let now = DateTime::now();
        let id = ObjectId::new();
        let record = DocumentRecord {
            summary: DocumentSummary {
                id,
                filename: filename.to_owned(),
                content_type: content_type.map(str::to_owned),
                size: content.len() as i64,
                status: Status::Queued,
                text: None,
                error: None,
                created_at: Some(now),
                updated_at: Some(now),
            },
            content: Binary {
                subtype: BinarySubtype::Generic,
                bytes: content,
            },
        };
        self.documents
            .insert_one(&record)
            .await
            .context("cannot store the upload in MongoDB")?;
        Ok(id)
    }

    /// The document without its bytes, or `None` if there is no such document.
    pub async fn summary(&self, id: ObjectId) -> anyhow::Result<Option<DocumentSummary>> {
        self.summaries
            .find_one(doc! { "_id": id })
            .projection(doc! { "content": 0 })
            .await
            .context("cannot read the document from MongoDB")
    }

    /// The whole document, or `None` if there is no such document.
    pub async fn record(&self, id: ObjectId) -> anyhow::Result<Option<DocumentRecord>> {
        self.documents
            .find_one(doc! { "_id": id })
            .await
            .context("cannot read the document from MongoDB")
    }

    /// Deletes a document; `false` if there was none.
    pub async fn delete(&self, id: ObjectId) -> anyhow::Result<bool> {
        let result = self
            .documents
            .delete_one(doc! { "_id": id })
            .await
            .context("cannot delete the document from MongoDB")?;
        Ok(result.deleted_count > 0)
    }

    /// Marks a document as being processed; `false` if it no longer exists.
    pub async fn mark_processing(&self, id: ObjectId) -> anyhow::Result<bool> {
        self.update(
            id,
            doc! { "$set": { "status": "processing", "updated_at": DateTime::now() } },
        )
        .await
    }

    /// Stores how a job ended; `false` if the document was deleted meanwhile.
    pub async fn finish(&self, id: ObjectId, outcome: &Outcome) -> anyhow::Result<bool> {
        let now = DateTime::now();
        let update = match outcome {
            Outcome::Done(text) => doc! {
                "$set": { "status": "done", "text": text, "updated_at": now },
                "$unset": { "error": "" },
            },
            Outcome::Failed(reason) => doc! {
                "$set": { "status": "failed", "error": reason, "updated_at": now },
                "$unset": { "text": "" },
            },
        };
        self.update(id, update).await
    }

    async fn update(&self, id: ObjectId, update: mongodb::bson::Document) -> anyhow::Result<bool> {
        let result = self
            .documents
            .update_one(doc! { "_id": id }, update)
            .await
            .context("cannot update the document in MongoDB")?;
        Ok(result.matched_count > 0)
    }

    /// Drops the whole database: for tests that made their own.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        self.database
            .drop()
            .await
            .context("cannot drop the MongoDB database")
    }
}
