//! The one-shot commands: `medic probe` and `medic check`.
//!
//! Both load the probes the daemon would run (the configuration file, plus labels on the
//! watched containers when Docker answers), run them once, and print what they found: a table
//! for people, or JSON for scripts.

use std::process::ExitCode;

use serde::Serialize;

use crate::config::probes::{label_probes, merge};
use crate::config::Settings;
use crate::docker::scope::{discover, Scope};
use crate::docker::{Engine, EngineVersion};
use crate::probe::{ProbeContext, ProbeResult, ProbeSpec, Severity};

/// Exit code: something was unreachable or failed.
const FAILED: u8 = 1;
/// Exit code: the configuration is invalid.
const INVALID: u8 = 2;

/// The edge where the commands' output leaves: every secret medic knows is masked, in the
/// table, the JSON and the error lines alike (a probe's error may quote a server's echo).
fn scrub(text: &str) -> String {
    crate::redact::scrub(text)
}

/// What loading found: the probes, the configuration errors, and Docker as far as reached.
struct Loaded {
    probes: Vec<ProbeSpec>,
    errors: Vec<String>,
    docker: Result<(EngineVersion, Scope), String>,
    ctx: ProbeContext,
}

async fn load(settings: &Settings) -> Loaded {
    let mut errors = Vec::new();
    let file = settings.file_probes().unwrap_or_else(|e| {
        errors.push(e);
        Vec::new()
    });
    let mut ctx = ProbeContext::new();
    let docker = async {
        let engine = settings.engine().map_err(|e| e.to_string())?;
        let version = engine.version().await.map_err(|e| e.to_string())?;
        let scope = discover(&engine, settings.project.clone())
            .await
            .map_err(|e| e.to_string())?;
        let containers = engine
            .list_labelled(&scope.label_filters())
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((version, scope, containers))
    }
    .await;
    let (probes, docker) = match docker {
        Ok((version, scope, containers)) => {
            let (labelled, label_errors) =
                label_probes(&containers, &scope, &settings.label_variables);
            errors.extend(label_errors.iter().map(ToString::to_string));
            if let Ok(client) = ProbeContext::connect_docker(settings.docker_host.as_deref()).await
            {
                ctx = ctx.with_docker(client);
            }
            ctx = ctx.with_scope(scope.clone());
            let (all, merge_errors) = merge(&file, labelled);
            errors.extend(merge_errors);
            (all, Ok((version, scope)))
        }
        Err(e) => (file, Err(e)),
    };
    Loaded {
        probes,
        errors,
        docker,
        ctx,
    }
}

/// `medic probe [NAME...] [--json]`: runs the probes once; exit 1 if any failed.
pub async fn probe(settings: &Settings, names: &[String], json: bool) -> ExitCode {
    let loaded = load(settings).await;
    if !loaded.errors.is_empty() {
        for e in &loaded.errors {
            eprintln!("medic: invalid probe configuration: {}", scrub(e));
        }
        return ExitCode::from(INVALID);
    }
    if let Err(e) = &loaded.docker {
        eprintln!(
            "medic: Docker is not reachable ({}); only the configuration file's probes run",
            scrub(e)
        );
    }
    let mut selected = Vec::new();
    for name in names {
        match loaded.probes.iter().find(|p| &p.name == name) {
            Some(p) => selected.push(p.clone()),
            None => {
                let known: Vec<&str> = loaded.probes.iter().map(|p| p.name.as_str()).collect();
                eprintln!(
                    "medic: no probe named {name:?}; known probes: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
                return ExitCode::from(INVALID);
            }
        }
    }
    if names.is_empty() {
        selected = loaded.probes.clone();
    }
    if selected.is_empty() {
        eprintln!("medic: no probes are configured (MEDIC_CONFIG or medic.probe.* labels)");
    }
    let results = crate::probe::run_all(&selected, &loaded.ctx).await;
    if json {
        println!(
            "{}",
            scrub(&serde_json::to_string_pretty(&results).unwrap_or_default())
        );
    } else {
        let rows: Vec<Row> = selected
            .iter()
            .zip(&results)
            .map(|(spec, r)| Row::from_result(spec, r))
            .collect();
        print!("{}", scrub(&table(&rows)));
    }
    if results.iter().any(|r| r.severity == Severity::Critical) {
        ExitCode::from(FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// `medic check`: validates everything and reaches every target once.
pub async fn check(settings: &Settings, json: bool) -> ExitCode {
    let loaded = load(settings).await;
    let mut rows = Vec::new();
    let mut invalid = !loaded.errors.is_empty();
    rows.push(Row {
        check: "configuration".into(),
        kind: "config".into(),
        target: settings
            .config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "environment only".into()),
        status: if invalid { "INVALID" } else { "ok" }.into(),
        latency_ms: None,
        detail: if invalid {
            loaded.errors.join("; ")
        } else {
            format!("{} probes", loaded.probes.len())
        },
    });
    let engine = settings
        .docker_host
        .clone()
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    rows.push(match &loaded.docker {
        Ok((version, scope)) => Row::plain(
            "docker",
            "engine",
            &engine,
            "ok",
            format!(
                "{} {} (API {}); watching {}",
                version.kind,
                version.version,
                version.api_version,
                match &scope.project {
                    Some(p) => format!("project {p} and medic.enable=true containers"),
                    None => "medic.enable=true containers".into(),
                }
            ),
        ),
        Err(e) => Row::plain("docker", "engine", &engine, "FAIL", e.clone()),
    });
    // The mail settings were validated with the rest before the command started.
    rows.push(match &settings.notify.mail {
        None => Row::plain(
            "smtp",
            "email",
            "",
            "ok",
            "not configured (MAIL_SERVER unset): alerts are logged only".into(),
        ),
        Some(mail) => match crate::notify::Mailer::new(mail) {
            Err(e) => {
                invalid = true;
                Row::plain("smtp", "email", "", "INVALID", e.to_string())
            }
            Ok(mailer) => {
                let started = std::time::Instant::now();
                let result = mailer.test_connection().await;
                let mut row = Row::plain(
                    "smtp",
                    "email",
                    mailer.server(),
                    if result.is_ok() { "ok" } else { "FAIL" },
                    result.err().map(|e| e.to_string()).unwrap_or_default(),
                );
                row.latency_ms = Some(started.elapsed().as_millis() as u64);
                row
            }
        },
    });
    let results = crate::probe::run_all(&loaded.probes, &loaded.ctx).await;
    rows.extend(
        loaded
            .probes
            .iter()
            .zip(&results)
            .map(|(spec, r)| Row::from_result(spec, r)),
    );
    if json {
        println!(
            "{}",
            scrub(&serde_json::to_string_pretty(&rows).unwrap_or_default())
        );
    } else {
        print!("{}", scrub(&table(&rows)));
    }
    if invalid {
        ExitCode::from(INVALID)
    } else if rows.iter().any(|r| r.status == "FAIL") {
        ExitCode::from(FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

/// One line of the output.
#[derive(Debug, Serialize)]
struct Row {
    /// What was checked (a probe's name, `docker`, `smtp`, `configuration`).
    check: String,
    /// Its type.
    #[serde(rename = "type")]
    kind: String,
    /// What it talked to (secrets masked).
    target: String,
    /// `ok`, `WARN`, `FAIL` or `INVALID`.
    status: String,
    /// How long it took.
    latency_ms: Option<u64>,
    /// The error, or what was found.
    detail: String,
}

impl Row {
    fn plain(check: &str, kind: &str, target: &str, status: &str, detail: String) -> Row {
        Row {
            check: check.into(),
            kind: kind.into(),
            target: target.into(),
            status: status.into(),
            latency_ms: None,
            detail,
        }
    }

    fn from_result(spec: &ProbeSpec, r: &ProbeResult) -> Row {
        Row {
            check: r.name.clone(),
            kind: r.kind.into(),
            target: spec.kind.target(),
            status: match r.severity {
                Severity::Ok => "ok",
                Severity::Warning => "WARN",
                Severity::Critical => "FAIL",
            }
            .into(),
            latency_ms: Some(r.latency.as_millis() as u64),
            detail: r.error.clone().unwrap_or_default(),
        }
    }
}

/// A plain-text table with padded columns.
fn table(rows: &[Row]) -> String {
    let header = ["CHECK", "TYPE", "TARGET", "STATUS", "LATENCY", "DETAIL"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.check.clone(),
                r.kind.clone(),
                r.target.clone(),
                r.status.clone(),
                r.latency_ms
                    .map(|ms| format!("{ms}ms"))
                    .unwrap_or_else(|| "-".into()),
                r.detail.replace('\n', " "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (i, cell) in row.iter().enumerate().take(5) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cols: [&str; 6], out: &mut String| {
        for (i, col) in cols.iter().enumerate() {
            if i < 5 {
                out.push_str(&format!("{col:<w$}  ", w = widths[i]));
            } else {
                out.push_str(col);
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(header, &mut out);
    for row in &cells {
        line(
            [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]],
            &mut out,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_pads_columns() {
        let rows = vec![
            Row::plain(
                "docker",
                "engine",
                "/var/run/docker.sock",
                "ok",
                "engine 20.10".into(),
            ),
            Row::plain(
                "upload",
                "upload",
                "worker",
                "FAIL",
                "step `process` failed".into(),
            ),
        ];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("CHECK   TYPE    TARGET"), "{text}");
        assert!(lines[2].contains("FAIL"));
        assert!(lines[2].ends_with("step `process` failed"));
        let status_col = lines[0].find("STATUS").unwrap();
        assert_eq!(&lines[1][status_col..status_col + 2], "ok");
    }
}
