//! A scripted in-memory engine for the healing loop's unit tests: it lists what the test put
//! in it, streams the events the test sends, and writes down every call with the time of
//! tokio's (paused) clock. Acceptance tests use the real engine; this one only drives the loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::docker::{
    Container, Engine, EngineError, EngineEvent, EngineKind, EngineVersion, EventKind, Health,
    RunState, LABEL_PROJECT, LABEL_SERVICE,
};

/// The engine's script and what it was asked.
#[derive(Default)]
pub struct ScriptedEngine {
    /// What `list_labelled` and `inspect` answer.
    pub containers: Mutex<Vec<Container>>,
    /// The event stream `events` hands out (once).
    pub events: Mutex<Option<mpsc::UnboundedReceiver<EngineEvent>>>,
    /// Ids whose `inspect` fails, as a socket proxy's refusal would.
    pub inspect_fails: Mutex<Vec<String>>,
    /// When `inspect` was called, and with what id.
    pub inspected: Mutex<Vec<(String, tokio::time::Instant)>>,
    /// Restarts asked for, by container id.
    pub restarted: Mutex<Vec<String>>,
    /// When set, every restart fails with this error.
    pub restart_error: Mutex<Option<String>>,
}

impl ScriptedEngine {
    /// An engine with these containers; the returned sender feeds its event stream.
    pub fn new(containers: Vec<Container>) -> (ScriptedEngine, mpsc::UnboundedSender<EngineEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = ScriptedEngine {
            containers: Mutex::new(containers),
            events: Mutex::new(Some(rx)),
            ..Default::default()
        };
        (engine, tx)
    }
}

/// The healing policy the tests run with: threshold 3, a 10-minute cooldown, 3 restarts an
/// hour, a minute of grace, two minutes of operator hold.
pub fn healing() -> crate::config::HealingSettings {
    // The SPEC's defaults are exactly these.
    crate::config::HealingSettings::default()
}

/// A running container of service `service` in compose project `shop`.
pub fn container(service: &str) -> Container {
    Container {
        id: format!("id-{service}"),
        name: format!("shop-{service}-1"),
        labels: HashMap::from([
            (LABEL_PROJECT.to_string(), "shop".to_string()),
            (LABEL_SERVICE.to_string(), service.to_string()),
        ]),
        state: RunState::Running,
        health: Health::None,
        stop_timeout: None,
        start_period: Some(Duration::from_secs(1)),
    }
}

/// An event about `container`, as the engine sends it (labels and name in the attributes).
pub fn event(container: &Container, kind: EventKind) -> EngineEvent {
    let mut attributes = container.labels.clone();
    attributes.insert("name".into(), container.name.clone());
    EngineEvent {
        id: container.id.clone(),
        kind,
        attributes,
        time_nanos: 0,
    }
}

#[async_trait::async_trait]
impl Engine for ScriptedEngine {
    async fn version(&self) -> Result<EngineVersion, EngineError> {
        Ok(EngineVersion {
            kind: EngineKind::Docker,
            version: "scripted".into(),
            api_version: "1.41".into(),
        })
    }

    async fn list_labelled(&self, _labels: &[String]) -> Result<Vec<Container>, EngineError> {
        Ok(self.containers.lock().unwrap().clone())
    }

    async fn inspect(&self, id: &str) -> Result<Option<Container>, EngineError> {
        self.inspected
            .lock()
            .unwrap()
            .push((id.to_string(), tokio::time::Instant::now()));
        // Refused at most 50 times: a caller that retries in a tight loop then gets on, and
        // its test sees 50 calls at one instant instead of hanging.
        let calls = self.inspected.lock().unwrap().len();
        if calls <= 50 && self.inspect_fails.lock().unwrap().iter().any(|f| f == id) {
            return Err(EngineError::Api("inspect refused".into()));
        }
        let containers = self.containers.lock().unwrap();
        Ok(containers.iter().find(|c| c.id == id).cloned())
    }

    async fn restart(&self, id: &str, _stop_timeout: Duration) -> Result<(), EngineError> {
        self.restarted.lock().unwrap().push(id.to_string());
        match self.restart_error.lock().unwrap().clone() {
            Some(error) => Err(EngineError::Api(error)),
            None => Ok(()),
        }
    }

    fn events(&self) -> BoxStream<'static, Result<EngineEvent, EngineError>> {
        match self.events.lock().unwrap().take() {
            Some(rx) => futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|event| (Ok(event), rx))
            })
            .boxed(),
            None => futures_util::stream::pending().boxed(),
        }
    }
}
