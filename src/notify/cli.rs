//! `medic test-email` and `medic report [--send]`: one-shot commands that use the same settings,
//! rendering and store as the daemon, and answer with a message for the terminal.

use std::collections::HashMap;
use std::path::Path;

use super::email::{Email, Mailer};
use super::settings::NotifySettings;
use crate::report;
use crate::store::Store;

/// The stack's name outside the daemon: `MEDIC_STACK_NAME`, else `MEDIC_PROJECT`, else `medic`.
pub fn stack_name(settings: &NotifySettings, vars: &HashMap<String, String>) -> String {
    settings
        .stack_name
        .clone()
        .or_else(|| {
            vars.get("MEDIC_PROJECT")
                .filter(|v| !v.trim().is_empty())
                .cloned()
        })
        .unwrap_or_else(|| "medic".to_string())
}

/// Why a command failed: bad configuration (exit 2, like every command) or the work itself
/// (exit 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// A variable is invalid; the text names it.
    Config(String),
    /// Not sent, not readable, not configured: the text says why.
    Failed(String),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Config(e) => write!(f, "invalid configuration: {e}"),
            CliError::Failed(e) => f.write_str(e),
        }
    }
}

impl From<String> for CliError {
    fn from(e: String) -> CliError {
        CliError::Failed(e)
    }
}

fn settings(vars: &HashMap<String, String>) -> Result<NotifySettings, CliError> {
    NotifySettings::from_vars(vars).map_err(|e| CliError::Config(e.to_string()))
}

fn mailer(settings: &NotifySettings) -> Result<Mailer, String> {
    let mail = settings.mail.as_ref().ok_or_else(|| {
        "email is not configured: set MAIL_SERVER and ADMIN_EMAIL (see docs/email.md)".to_string()
    })?;
    Mailer::new(mail).map_err(|e| format!("invalid configuration: {e}"))
}

/// Sends one test email to the recipients. `Ok` says where it went.
pub async fn test_email(vars: &HashMap<String, String>) -> Result<String, CliError> {
    let settings = settings(vars)?;
    let mailer = mailer(&settings)?;
    let stack = stack_name(&settings, vars);
    let now = chrono::Utc::now();
    let email = Email {
        subject: format!("medic test email - {stack}"),
        text: format!(
            "This is a test email from medic for the stack {stack}, sent at {}.\n\
             If you can read it, medic's alerts and daily reports will reach you.\n",
            super::render::local_time(now, settings.tz)
        ),
        html: None,
    };
    let to: Vec<String> = mailer
        .settings()
        .recipients
        .iter()
        .map(|m| m.email.to_string())
        .collect();
    mailer
        .send(&email)
        .await
        .map_err(|e| format!("the test email was not sent: {e}"))?;
    Ok(format!(
        "test email sent through {} to {}",
        mailer.server(),
        to.join(", ")
    ))
}

/// What `medic report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutput {
    /// The plain-text part.
    Text,
    /// The HTML part.
    Html,
}

/// Renders the report from the store in `data_dir`; with `send`, emails it now (directly, not
/// through the outbox, so the answer says whether it arrived). Returns what to print.
pub async fn report(
    vars: &HashMap<String, String>,
    data_dir: &Path,
    send: bool,
    output: ReportOutput,
) -> Result<String, CliError> {
    let settings = settings(vars)?;
    let store = Store::open(data_dir).map_err(|e| format!("{e:#}"))?;
    let stack = stack_name(&settings, vars);
    let built = report::report_from_store(&store, &stack, chrono::Utc::now(), &[])
        .map_err(|e| format!("cannot read the history: {e:#}"))?;
    let email = report::report_email(&built, settings.tz, settings.public_url.as_deref());
    if send {
        let mailer = mailer(&settings)?;
        mailer
            .send(&email)
            .await
            .map_err(|e| format!("the report was not sent: {e}"))?;
        return Ok(format!(
            "report \"{}\" sent through {}",
            email.subject,
            mailer.server()
        ));
    }
    Ok(match output {
        ReportOutput::Text => email.text,
        ReportOutput::Html => email.html.unwrap_or(email.text),
    })
}
