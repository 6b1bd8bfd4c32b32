//! The `exec` probe: runs a command inside a container through the Docker API (no docker CLI)
//! and passes when it exits 0. The container is named directly, or found as a running container
//! of a compose service by the `com.docker.compose.service` label (never by its name, which
//! differs between compose v1 and v2).

use std::collections::HashMap;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::ListContainersOptions;
use futures_util::StreamExt;

use super::http::snippet;
use super::spec::{ExecSettings, ExecTarget};
use super::{Failure, ProbeContext, Recorder};
use crate::docker::{endpoints, engine_error};

/// How much of the command's output is kept (its end, where errors usually are).
const MAX_OUTPUT: usize = 16 * 1024;

pub(crate) async fn run(
    s: &ExecSettings,
    ctx: &ProbeContext,
    rec: &Recorder,
) -> Result<(), Failure> {
    let docker = ctx.docker.as_ref().ok_or_else(|| {
        Failure::new("no Docker client: mount /var/run/docker.sock for exec probes")
    })?;
    let container = rec
        .step("find container", async {
            match &s.target {
                ExecTarget::Container(name) => Ok(name.clone()),
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
                    found
                        .into_iter()
                        .filter_map(|c| {
                            c.names
                                .and_then(|n| {
                                    n.first().map(|n| n.trim_start_matches('/').to_string())
                                })
                                .or(c.id)
                        })
                        .next()
                        .ok_or_else(|| format!("no running container of service {service:?}"))
                }
            }
        })
        .await?;
    rec.note(container.clone());
    rec.detail("container", container.clone());

    let (exit_code, output) = rec
        .step("exec", async {
            let created = docker
                .create_exec(
                    &container,
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
