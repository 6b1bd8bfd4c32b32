//! The `exec` probe: runs a command inside a container through the Docker API (no docker CLI)
//! and passes when it exits 0. The container is named directly, or found as a running container
//! of a compose service by the `com.docker.compose.service` label (never by its name, which
//! differs between compose v1 and v2).
//!
//! Either way the container must be in medic's scope ([`crate::docker::scope::Scope`]): a
//! container of another project, one without a label, or medic's own container is refused
//! with a failure naming it and why, before any command is created. Every `exec` run (labels,
//! the file, the admin API, `medic probe`) goes through [`run`], so this is the one check.

use std::collections::HashMap;
use std::fmt;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptions};
use futures_util::StreamExt;

use super::{Key, Kind, Res, Resolver, Shape};
use crate::docker::{endpoints, engine_error};
use crate::probe::raw::Command;
use crate::probe::reply::snippet;
use crate::probe::{Failure, ProbeContext, Recorder};

/// How much of the command's output is kept (its end, where errors usually are).
const MAX_OUTPUT: usize = 16 * 1024;

/// Which container an `exec` probe runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecTarget {
    /// A container name or id.
    Container(String),
    /// A running container of a compose service, in `project` or else the watched project.
    Service {
        /// The compose service.
        service: String,
        /// The compose project, when it must be pinned.
        project: Option<String>,
    },
}

impl fmt::Display for ExecTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecTarget::Container(name) => write!(f, "container {name}"),
            ExecTarget::Service { service, .. } => write!(f, "service {service}"),
        }
    }
}

/// Settings of an `exec` probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecSettings {
    /// Where the command runs.
    pub target: ExecTarget,
    /// The command: a YAML list runs as is; a string runs through `/bin/sh -c`.
    pub command: Vec<String>,
}

impl Kind for ExecSettings {
    const TYPE: &'static str = "exec";
    const KEYS: &'static [Key] = &[
        ("container", Shape::Scalar),
        ("service", Shape::Scalar),
        ("project", Shape::Scalar),
        ("command", Shape::Command),
    ];

    /// A label probe runs in its own container when neither `container` nor `service` is set,
    /// and a `service` it names is looked for in its own compose project.
    fn resolve(r: &Resolver) -> Res<ExecSettings> {
        let container = r.text("container")?;
        let service = r.text("service")?;
        let project = r.text("project")?;
        let target = match (container, service, r.labels()) {
            (Some(_), Some(_), _) => {
                return Err(r.err(Some("service"), "set either container or service, not both"))
            }
            (Some(c), None, _) => ExecTarget::Container(c),
            (None, Some(s), _) => ExecTarget::Service {
                service: s,
                project: project.or_else(|| r.label_project().map(str::to_string)),
            },
            (None, None, Some((container, _))) => ExecTarget::Container(container.to_string()),
            (None, None, None) => {
                return Err(r.err(
                    Some("service"),
                    "is required: the compose service (or `container`) to run the command in",
                ))
            }
        };
        let command = match r.command("command") {
            None => Vec::new(),
            Some(Command::Shell(s)) => {
                vec!["/bin/sh".into(), "-c".into(), r.subst("command", s)?.value]
            }
            Some(Command::Argv(args)) => args
                .into_iter()
                .map(|a| r.subst("command", a).map(|s| s.value))
                .collect::<Res<Vec<_>>>()?,
        };
        if command.is_empty() || command.iter().all(|c| c.trim().is_empty()) {
            return Err(r.err(
                Some("command"),
                "is required: the command to run, e.g. [pg_isready] or \"test -f /tmp/ok\"",
            ));
        }
        Ok(ExecSettings { target, command })
    }

    fn target(&self) -> String {
        format!("{} `{}`", self.target, self.command.join(" "))
    }

    async fn run(&self, ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
        run(self, ctx, rec).await
    }
}

async fn run(s: &ExecSettings, ctx: &ProbeContext, rec: &Recorder) -> Result<(), Failure> {
    let docker = ctx.docker.as_ref().ok_or_else(|| {
        Failure::new("no Docker client: mount /var/run/docker.sock for exec probes")
    })?;
    let scope = ctx.scope.as_ref().ok_or_else(|| {
        Failure::new(
            "medic's scope is not known yet (the watched project and its own container), and \
             exec probes run only inside it",
        )
    })?;
    let (container, id) = rec
        .step("find container", async {
            match &s.target {
                ExecTarget::Container(name) => {
                    let found = docker
                        .inspect_container(name, None::<InspectContainerOptions>)
                        .await
                        .map_err(|e| match e {
                            bollard::errors::Error::DockerResponseServerError {
                                status_code: 404,
                                ..
                            } => format!("no container named {name:?}"),
                            e => format!("cannot inspect container {name:?}: {e}"),
                        })?;
                    let id = found.id.unwrap_or_default();
                    let labels = found.config.and_then(|c| c.labels).unwrap_or_default();
                    if let Some(why) = scope.why_not(&id, &labels) {
                        return Err(out_of_scope(name, &why));
                    }
                    Ok((name.clone(), id))
                }
                ExecTarget::Service { service, project } => {
                    let mut labels = vec![format!("com.docker.compose.service={service}")];
                    if let Some(project) = project.as_ref().or(ctx.project.as_ref()) {
                        labels.push(format!("com.docker.compose.project={project}"));
                    }
                    let filters = HashMap::from([
                        ("label".to_string(), labels),
                        ("status".to_string(), vec!["running".to_string()]),
                    ]);
                    let options = ListContainersOptions {
                        all: false,
                        filters: Some(filters),
                        ..Default::default()
                    };
                    let found = docker.list_containers(Some(options)).await.map_err(|e| {
                        let e = engine_error(e, &endpoints::LIST_CONTAINERS, docker.timeout());
                        format!("cannot list containers: {e}")
                    })?;
                    let mut refused = None;
                    for c in found {
                        let id = c.id.unwrap_or_default();
                        let name = c
                            .names
                            .and_then(|n| n.first().map(|n| n.trim_start_matches('/').to_string()))
                            .unwrap_or_else(|| id.clone());
                        match scope.why_not(&id, &c.labels.unwrap_or_default()) {
                            None => return Ok((name, id)),
                            Some(why) => {
                                refused.get_or_insert((name, why));
                            }
                        }
                    }
                    Err(match refused {
                        Some((name, why)) => out_of_scope(&name, &why),
                        None => format!("no running container of service {service:?}"),
                    })
                }
            }
        })
        .await?;
    rec.note(container.clone());
    rec.detail("container", container.clone());

    let (exit_code, output) = rec
        .step("exec", async {
            // By id, not name: a container created under the same name after the scope check
            // must not receive the command.
            let created = docker
                .create_exec(
                    &id,
                    CreateExecOptions {
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        cmd: Some(s.command.clone()),
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| {
                    let e = engine_error(e, &endpoints::CREATE_EXEC, docker.timeout());
                    format!("cannot exec in {container}: {e}")
                })?;
            let mut output: Vec<u8> = Vec::new();
            match docker.start_exec(&created.id, None).await {
                Ok(StartExecResults::Attached {
                    output: mut stream, ..
                }) => {
                    while let Some(item) = stream.next().await {
                        let chunk = item.map_err(|e| format!("reading the output failed: {e}"))?;
                        output.extend_from_slice(&chunk.into_bytes());
                        if output.len() > MAX_OUTPUT {
                            output.drain(..output.len() - MAX_OUTPUT);
                        }
                    }
                }
                Ok(StartExecResults::Detached) => {}
                Err(e) => {
                    let e = engine_error(e, &endpoints::START_EXEC, docker.timeout());
                    return Err(format!("cannot start the command: {e}"));
                }
            }
            let inspected = docker.inspect_exec(&created.id).await.map_err(|e| {
                let e = engine_error(e, &endpoints::INSPECT_EXEC, docker.timeout());
                format!("cannot read the exit code: {e}")
            })?;
            let code = inspected.exit_code.unwrap_or(-1);
            let tail = snippet(&output[output.len().saturating_sub(500)..], 500);
            if code == 0 {
                Ok((code, tail))
            } else {
                Err(format!(
                    "`{}` exited with {code}: {tail}",
                    s.command.join(" ")
                ))
            }
        })
        .await?;
    rec.note(format!("exit {exit_code}"));
    rec.detail("exit_code", exit_code);
    rec.detail("output", output);
    Ok(())
}

/// The failure for a target outside medic's scope: names the container and why.
fn out_of_scope(container: &str, why: &str) -> String {
    format!(
        "refused to run the command in container {container:?}: it is outside medic's scope: {why}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::kinds::ProbeKind;
    use crate::probe::parse::tests::label_map;
    use crate::probe::parse::{parse_labels, parse_yaml};
    use crate::probe::vars::LabelVariables;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn label_probes_belong_to_their_containers_project() {
        let l = label_map(&[
            ("com.docker.compose.project", "shop"),
            ("medic.probe.ping.type", "exec"),
            ("medic.probe.ping.service", "db"),
            ("medic.probe.ping.command", "true"),
        ]);
        let spec = parse_labels("shop-web-1", "web", &l, &no_env, &LabelVariables::default())
            .unwrap()
            .remove(0);
        assert_eq!(spec.project.as_deref(), Some("shop"));
        let ProbeKind::Exec(e) = &spec.kind else {
            panic!()
        };
        assert_eq!(
            e.target,
            ExecTarget::Service {
                service: "db".into(),
                project: Some("shop".into())
            }
        );
        let text = "probes:\n  ping:\n    type: exec\n    service: db\n    command: \"true\"\n";
        assert_eq!(
            parse_yaml(text, "m.yaml", &no_env).unwrap()[0].project,
            None
        );
    }
}
