//! Fault drill (issue 8): 10 MB and malformed replies from every HTTP-speaking probe target.
//!
//! A hostile server of the test's own (tests/support/hostile.rs, raw TCP on 127.0.0.1) answers
//! the `http`, `ai` (each provider shape) and `upload` probes (each of its requests: the upload
//! POST, the status poll that also carries the extracted text, the DELETE) with huge, endless,
//! truncated, reset, garbled and wrongly shaped replies, and the webhook notifier with the same.
//! For each case and target the probe must fail (not pass, not hang, not panic) within its
//! timeout plus a small margin, with an error that names the step and the problem, without
//! showing any part of the spec's secrets, while medic reads at most its body cap (a body that
//! never ends must not be drained; the process's peak memory stays small). Where a reply is in
//! fact fine for a target - a DELETE answered 2xx whatever its body, a status-only `http` check
//! of a complete 200 - the table says the probe passes, and that is checked too.
//!
//! Cases run concurrently: the whole file takes a few seconds. It needs no test environment.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use medic::probe::{self, parse_yaml, ProbeContext, ProbeResult, ProbeSpec};
use serde_json::json;
use support::hostile::{peak_rss, HostileServer, Reply, TEN_MB};

/// Every probe's timeout.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What a run may take beyond its timeout (scheduling on a loaded 2-core machine).
const MARGIN: Duration = Duration::from_secs(1);
/// The bearer token of the `http` and `upload` specs: long, so that a reply quoting it is cut
/// in its middle by the error snippets.
const TOKEN: &str = "ox9yimTcfipZGnzPbDFDyFKm51zfFoWbSrHAE56yUhQqg0eyN1ygQdvpSfF5PH5nLZjMeI";
/// The `ai` specs' key, as long as OpenAI's project keys.
const KEY: &str = "sk-proj-8cFSmj83LDUL4CsJw24BikWMgISuSw8P1FGNmtjwHsGQeZ52G6SIowp6asvorcBqyt1T5AlQzhk7Q2bmXkthaYWyv1kKB5oiAKCA";
/// The most any client may have made the server write for a body that never ends: the body
/// cap plus what socket buffers hold. A reader without a cap drains gigabytes in the timeout.
const ENDLESS_BOUND: u64 = 64 << 20;

/// Where the hostile reply is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `http` with status, body and JSON checks.
    HttpChecks,
    /// `http` that checks the status only.
    HttpStatus,
    OpenAi,
    Gemini,
    OpenAiCompatible,
    /// The upload probe's POST.
    Upload,
    /// The upload probe's status poll (whose answer also carries the text `check text` reads).
    Process,
    /// The upload probe's DELETE.
    Delete,
}

use Target::*;

impl Target {
    /// The step whose error must show.
    fn step(self) -> &'static str {
        match self {
            HttpChecks | HttpStatus => "request",
            OpenAi | Gemini | OpenAiCompatible => "request",
            Upload => "upload",
            Process => "process",
            Delete => "delete",
        }
    }

    fn is_ai(self) -> bool {
        matches!(self, OpenAi | Gemini | OpenAiCompatible)
    }
}

/// What a case must produce on a target.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// A failed result; the error names this step and contains this text.
    Fails(&'static str, &'static str),
    /// A pass: the reply is fine for this target (a DELETE answered 204, a status-only check
    /// of a complete 200).
    Passes,
}

/// One hostile reply and what it must produce on each target.
struct Case {
    name: &'static str,
    reply: Reply,
    outcome: fn(Target) -> Outcome,
}

/// Fails at the target's own step, with this text in the error.
fn at_step(target: Target, text: &'static str) -> Outcome {
    Outcome::Fails(target.step(), text)
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "10 MB with Content-Length",
            reply: Reply::HugeWithLength,
            outcome: |t| match t {
                Delete => Outcome::Passes,
                HttpChecks | HttpStatus => Outcome::Fails("read body", "larger than 1.0 MiB"),
                t => at_step(t, "larger than 1.0 MiB"),
            },
        },
        Case {
            name: "10 MB until close",
            reply: Reply::HugeUntilClose,
            outcome: |t| match t {
                Delete => Outcome::Passes,
                HttpChecks | HttpStatus => Outcome::Fails("read body", "larger than 1.0 MiB"),
                t => at_step(t, "larger than 1.0 MiB"),
            },
        },
        Case {
            name: "10 MB chunked",
            reply: Reply::HugeChunked,
            outcome: |t| match t {
                Delete => Outcome::Passes,
                HttpChecks | HttpStatus => Outcome::Fails("read body", "larger than 1.0 MiB"),
                t => at_step(t, "larger than 1.0 MiB"),
            },
        },
        Case {
            name: "endless body",
            reply: Reply::Endless,
            outcome: |t| match t {
                Delete => Outcome::Passes,
                HttpChecks | HttpStatus => Outcome::Fails("read body", "larger than 1.0 MiB"),
                t => at_step(t, "larger than 1.0 MiB"),
            },
        },
        Case {
            name: "endless body on a 500",
            reply: Reply::ErrorEndless,
            outcome: |t| match t {
                HttpChecks | HttpStatus => Outcome::Fails("check", "expected HTTP 200, got 500"),
                OpenAi | Gemini | OpenAiCompatible => at_step(t, "the provider failed (HTTP 500)"),
                t => at_step(t, "HTTP 500"),
            },
        },
        Case {
            name: "endless body trickled",
            reply: Reply::Trickle,
            outcome: |t| match t {
                Delete => Outcome::Passes,
                HttpChecks | HttpStatus => Outcome::Fails("read body", "no answer within"),
                Process => at_step(t, "timed out reading the reply body"),
                t => at_step(t, "no answer within"),
            },
        },
        Case {
            name: "stall after headers",
            reply: Reply::StallAfterHeaders,
            outcome: |t| match t {
                Delete => Outcome::Passes,
                HttpChecks | HttpStatus => Outcome::Fails("read body", "no answer within"),
                Process => at_step(t, "timed out reading the reply body"),
                t => at_step(t, "no answer within"),
            },
        },
        Case {
            name: "10 MB header line",
            reply: Reply::HugeHeader,
            outcome: |t| at_step(t, "headers are too large"),
        },
        Case {
            name: "100 000 headers",
            reply: Reply::ManyHeaders(100_000),
            outcome: |t| at_step(t, "headers are too large"),
        },
        Case {
            name: "150 small headers",
            reply: Reply::ManyHeaders(150),
            outcome: |t| at_step(t, "headers are too large"),
        },
        Case {
            name: "random bytes",
            reply: Reply::RandomBytes,
            outcome: |t| at_step(t, "not HTTP"),
        },
        Case {
            name: "HELLO",
            reply: Reply::Hello,
            outcome: |t| at_step(t, "not HTTP"),
        },
        Case {
            name: "empty reply",
            reply: Reply::Empty,
            outcome: |t| at_step(t, "closed the connection before"),
        },
        Case {
            name: "reset",
            reply: Reply::Reset,
            outcome: |t| at_step(t, "reset"),
        },
        Case {
            name: "status line only",
            reply: Reply::StatusLineOnly,
            outcome: |t| at_step(t, "closed the connection before"),
        },
        Case {
            name: "truncated body",
            reply: Reply::Truncated,
            outcome: |t| match t {
                Delete => Outcome::Passes,
                HttpChecks | HttpStatus => {
                    Outcome::Fails("read body", "closed the connection before the body ended")
                }
                t => at_step(t, "closed the connection before the body ended"),
            },
        },
        Case {
            name: "broken chunked encoding",
            reply: Reply::BrokenChunked,
            outcome: |t| match t {
                Delete => Outcome::Passes,
                HttpChecks | HttpStatus => Outcome::Fails("read body", "chunk"),
                t => at_step(t, "chunk"),
            },
        },
        Case {
            name: "invalid UTF-8",
            reply: Reply::bytes(200, b"\xff\xfe\xc3\x28 ok \xa0\xa1".to_vec()),
            outcome: |t| match t {
                Delete | HttpStatus => Outcome::Passes,
                HttpChecks => Outcome::Fails("check", "not JSON"),
                t if t.is_ai() => Outcome::Fails("parse reply", "not JSON"),
                t => at_step(t, "not JSON"),
            },
        },
        Case {
            name: "JSON of the wrong shape",
            reply: Reply::json(200, &json!({"unexpected": [1, 2, 3], "ok": "ok"})),
            outcome: |t| match t {
                Delete | HttpStatus => Outcome::Passes,
                HttpChecks => Outcome::Fails("check", "no value at /status"),
                OpenAi | OpenAiCompatible => Outcome::Fails("parse reply", "no choices"),
                Gemini => Outcome::Fails("parse reply", "no candidates"),
                Upload => at_step(t, "no id at /id"),
                Process => at_step(t, "no status at /status"),
            },
        },
        Case {
            name: "100 000 nested arrays",
            reply: Reply::bytes(200, "[".repeat(100_000)),
            outcome: |t| match t {
                Delete | HttpStatus => Outcome::Passes,
                // The text check comes first.
                HttpChecks => Outcome::Fails("check", "does not contain \"ok\""),
                t if t.is_ai() => Outcome::Fails("parse reply", "recursion limit"),
                t => at_step(t, "recursion limit"),
            },
        },
        Case {
            name: "redirect loop",
            reply: Reply::RedirectLoop,
            outcome: |t| at_step(t, "too many redirects"),
        },
        Case {
            name: "100 Continue only",
            reply: Reply::InformationalOnly,
            outcome: |t| at_step(t, "closed the connection before"),
        },
        Case {
            name: "204 where a body is expected",
            reply: Reply::NoContent,
            outcome: |t| match t {
                Delete => Outcome::Passes,
                HttpChecks | HttpStatus => Outcome::Fails("check", "expected HTTP 200, got 204"),
                t if t.is_ai() => Outcome::Fails("parse reply", "the reply is empty"),
                t => at_step(t, "answer is empty"),
            },
        },
        Case {
            name: "304 where a body is expected",
            reply: Reply::NotModified,
            outcome: |t| match t {
                HttpChecks | HttpStatus => Outcome::Fails("check", "expected HTTP 200, got 304"),
                t => at_step(t, "HTTP 304"),
            },
        },
        Case {
            name: "401 quoting the credentials",
            reply: Reply::EchoCredentials(401),
            outcome: |t| match t {
                HttpChecks | HttpStatus => Outcome::Fails("check", "expected HTTP 200, got 401"),
                t => at_step(t, "401"),
            },
        },
        Case {
            name: "200 quoting the credentials",
            reply: Reply::EchoCredentials(200),
            outcome: |t| match t {
                Delete | HttpStatus => Outcome::Passes,
                HttpChecks => Outcome::Fails("check", "does not contain \"ok\""),
                t if t.is_ai() => Outcome::Fails("parse reply", "not JSON"),
                t => at_step(t, "not JSON"),
            },
        },
    ]
}

/// One probe from the lines under `probes:`, with the test's secrets in its environment.
fn spec(yaml: &str) -> ProbeSpec {
    let env = |name: &str| match name {
        "TOKEN" => Some(TOKEN.to_string()),
        "KEY" => Some(KEY.to_string()),
        _ => None,
    };
    let text = format!("probes:\n{yaml}");
    parse_yaml(&text, "hostile.yaml", &env)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .remove(0)
}

fn spec_for(target: Target, base: &str) -> ProbeSpec {
    let timeout = format!("{}s", TIMEOUT.as_secs());
    match target {
        HttpChecks | HttpStatus => {
            let checks = if target == HttpChecks {
                "    expect_body: ok\n    expect_json_pointer: /status\n    expect_json_value: ok\n"
            } else {
                ""
            };
            spec(&format!(
                "  web:\n    type: http\n    url: {base}/health\n    timeout: {timeout}\n    headers:\n      Authorization: Bearer ${{TOKEN}}\n{checks}"
            ))
        }
        OpenAi | Gemini | OpenAiCompatible => {
            let provider = match target {
                OpenAi => "openai",
                Gemini => "gemini",
                _ => "openai-compatible",
            };
            spec(&format!(
                "  model:\n    type: ai\n    provider: {provider}\n    base_url: {base}\n    model: m\n    api_key: ${{KEY}}\n    timeout: {timeout}\n"
            ))
        }
        Upload | Process | Delete => spec(&format!(
            "  pipeline:\n    type: upload\n    url: {base}/api/upload\n    status_url: /api/documents/{{id}}\n    poll_interval: 100ms\n    timeout: {timeout}\n    headers:\n      Authorization: Bearer ${{TOKEN}}\n"
        )),
    }
}

/// A server that answers `hostile` where `target` is, and properly everywhere else (the upload
/// pipeline's other steps, with the token the upload carried).
async fn server_for(target: Target, hostile: Reply) -> HostileServer {
    let token = Arc::new(Mutex::new(String::new()));
    HostileServer::start(move |request| {
        let step = match (request.method.as_str(), request.path.as_str()) {
            ("POST", "/api/upload") => Upload,
            ("GET", "/api/documents/doc-1") => Process,
            ("DELETE", "/api/documents/doc-1") => Delete,
            _ => target,
        };
        if step == target {
            return hostile.clone();
        }
        match step {
            Upload => {
                let body = String::from_utf8_lossy(&request.body);
                let found = body
                    .split_whitespace()
                    .find(|w| w.starts_with("medic-probe-"))
                    .unwrap_or_default();
                *token.lock().unwrap() = found.to_string();
                Reply::json(200, &json!({"id": "doc-1", "status": "queued"}))
            }
            Process => {
                let text = format!("the file says: {}", token.lock().unwrap());
                Reply::json(200, &json!({"status": "done", "text": text}))
            }
            _ => Reply::json(200, &json!({"deleted": "doc-1"})),
        }
    })
    .await
}

/// Everything a result could show: Debug, the error and the JSON.
fn all_output(result: &ProbeResult) -> String {
    format!(
        "{result:?}\n{}\n{}",
        result.error.clone().unwrap_or_default(),
        serde_json::to_string(result).unwrap()
    )
}

/// The first 8-character piece of a secret that shows in `text` (a secret cut in the middle by
/// a snippet leaks its first part), skipping the public `sk-proj-` prefix.
fn leaked_piece(text: &str, secret: &str) -> Option<String> {
    let secret = secret.strip_prefix("sk-proj-").unwrap_or(secret);
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .map(|w| w.iter().collect::<String>())
        .find(|piece| text.contains(piece.as_str()))
}

/// What one run did.
struct Run {
    case: &'static str,
    target: Target,
    expected: Outcome,
    result: ProbeResult,
    elapsed: Duration,
    sent: u64,
    endless: bool,
}

/// Checks one run; returns what is wrong with it.
fn problems(run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    let error = run.result.error.clone().unwrap_or_default();
    match run.expected {
        Outcome::Passes => {
            if !run.result.ok {
                out.push(format!("should pass, failed: {error}"));
            }
        }
        Outcome::Fails(step, text) => {
            if run.result.ok {
                out.push("passed".to_string());
            } else if !error.starts_with(&format!("step `{step}` failed")) {
                out.push(format!("does not name step `{step}`: {error}"));
            } else if !error.contains(text) {
                out.push(format!("does not say {text:?}: {error}"));
            }
        }
    }
    if run.elapsed > TIMEOUT + MARGIN {
        out.push(format!("took {:?}", run.elapsed));
    }
    if error.contains("crashed") {
        out.push(format!("panicked: {error}"));
    }
    let output = all_output(&run.result);
    for secret in [TOKEN, KEY] {
        if let Some(piece) = leaked_piece(&output, secret) {
            out.push(format!("shows {piece:?} of a secret: {error}"));
        }
    }
    if run.endless && run.sent > ENDLESS_BOUND {
        out.push(format!(
            "read {} MiB of a body that never ends",
            run.sent >> 20
        ));
    }
    out
}

async fn run_case(case: &'static str, reply: Reply, target: Target, expected: Outcome) -> Run {
    let endless = matches!(reply, Reply::Endless | Reply::ErrorEndless);
    let server = server_for(target, reply).await;
    let spec = spec_for(target, &server.base);
    let ctx = ProbeContext::new();
    let started = Instant::now();
    let result = probe::run(&spec, &ctx).await;
    let elapsed = started.elapsed();
    Run {
        case,
        target,
        expected,
        result,
        elapsed,
        sent: server.bytes_sent(),
        endless,
    }
}

/// Runs every case on these targets at once and fails listing every run that went wrong.
async fn drill(targets: &[Target]) {
    let started = Instant::now();
    let mut runs = Vec::new();
    for case in cases() {
        for &target in targets {
            runs.push(run_case(
                case.name,
                case.reply.clone(),
                target,
                (case.outcome)(target),
            ));
        }
    }
    let count = runs.len();
    let runs = join_all(runs).await;
    let mut report = Vec::new();
    for run in &runs {
        eprintln!(
            "{:<32} {:<18} {:>5}ms {}",
            run.case,
            format!("{:?}", run.target),
            run.elapsed.as_millis(),
            run.result.error.as_deref().unwrap_or("ok")
        );
        for problem in problems(run) {
            report.push(format!("{} on {:?}: {problem}", run.case, run.target));
        }
    }
    eprintln!("{count} runs in {:?}", started.elapsed());
    assert!(
        report.is_empty(),
        "{} of {count} runs went wrong:\n{}",
        report.len(),
        report.join("\n")
    );
    assert!(
        peak_rss() < 512 << 20,
        "peak memory {} MiB",
        peak_rss() >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_probes_fail_cleanly_on_hostile_replies() {
    drill(&[HttpChecks, HttpStatus]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_probes_fail_cleanly_on_hostile_replies_in_every_provider_shape() {
    drill(&[OpenAi, Gemini, OpenAiCompatible]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_probes_fail_cleanly_on_hostile_replies_at_every_step() {
    drill(&[Upload, Process, Delete]).await;
}

/// `check text` reads the text from the status answer that says done: text of the wrong type,
/// missing, or without the token each fail that step, and the document is still deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_check_text_fails_cleanly_on_hostile_text() {
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "text is a number",
            json!({"status": "done", "text": 42}),
            "no text at /text",
        ),
        (
            "text is missing",
            json!({"status": "done"}),
            "no text at /text",
        ),
        (
            "text is nested",
            json!({"status": "done", "text": [[["x"]]]}),
            "no text at /text",
        ),
        (
            "text quotes the credentials",
            json!({"status": "done", "text": format!("Bearer {TOKEN} ").repeat(3)}),
            "does not contain the token",
        ),
        (
            "text is a megabyte",
            json!({"status": "done", "text": "x".repeat(900 * 1024)}),
            "does not contain the token",
        ),
    ];
    let runs = cases
        .into_iter()
        .map(|(name, document, expected)| async move {
            let deleted = Arc::new(Mutex::new(false));
            let flag = deleted.clone();
            let server = HostileServer::start(move |request| match request.method.as_str() {
                "POST" => Reply::json(200, &json!({"id": "doc-1"})),
                "GET" => Reply::json(200, &document),
                _ => {
                    *flag.lock().unwrap() = true;
                    Reply::NoContent
                }
            })
            .await;
            let spec = spec_for(Process, &server.base);
            let started = Instant::now();
            let result = probe::run(&spec, &ProbeContext::new()).await;
            let elapsed = started.elapsed();
            let error = result.error.clone().unwrap_or_default();
            assert!(!result.ok, "{name}: passed");
            assert!(
                error.starts_with("step `check text` failed") && error.contains(expected),
                "{name}: {error}"
            );
            assert!(elapsed < TIMEOUT + MARGIN, "{name}: took {elapsed:?}");
            assert!(*deleted.lock().unwrap(), "{name}: not deleted");
            let output = all_output(&result);
            assert_eq!(leaked_piece(&output, TOKEN), None, "{name}: {output}");
        });
    join_all(runs).await;
}

/// The webhook notifier posts alerts to a receiver that may be just as hostile: it must come
/// back quickly with a delivery error that says what happened (or with success, for a 2xx whose
/// body it need not read), never read an endless body, never show the URL's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_notifier_survives_hostile_receivers() {
    use medic::notify::settings::{WebhookFormat, WebhookSettings};
    use medic::notify::webhook;

    // (case, reply, delivered, what the error must say)
    let cases: Vec<(&str, Reply, bool, &str)> = vec![
        ("10 MB with Content-Length", Reply::HugeWithLength, true, ""),
        ("10 MB until close", Reply::HugeUntilClose, true, ""),
        ("10 MB chunked", Reply::HugeChunked, true, ""),
        ("endless body", Reply::Endless, true, ""),
        (
            "endless body on a 500",
            Reply::ErrorEndless,
            false,
            "answered 500",
        ),
        ("endless body trickled", Reply::Trickle, true, ""),
        ("stall after headers", Reply::StallAfterHeaders, true, ""),
        (
            "10 MB header line",
            Reply::HugeHeader,
            false,
            "headers are too large",
        ),
        (
            "100 000 headers",
            Reply::ManyHeaders(100_000),
            false,
            "headers are too large",
        ),
        ("random bytes", Reply::RandomBytes, false, "not HTTP"),
        ("HELLO", Reply::Hello, false, "not HTTP"),
        (
            "empty reply",
            Reply::Empty,
            false,
            "closed the connection before",
        ),
        ("reset", Reply::Reset, false, "reset"),
        (
            "status line only",
            Reply::StatusLineOnly,
            false,
            "closed the connection before",
        ),
        ("truncated body", Reply::Truncated, true, ""),
        ("broken chunked encoding", Reply::BrokenChunked, true, ""),
        (
            "invalid UTF-8 on a 502",
            Reply::bytes(502, b"\xff\xfe oops".to_vec()),
            false,
            "answered 502",
        ),
        (
            "10 MB on a 503",
            Reply::bytes(503, vec![b'x'; TEN_MB]),
            false,
            "answered 503",
        ),
        (
            "deep JSON on a 400",
            Reply::bytes(400, "[".repeat(100_000)),
            false,
            "answered 400",
        ),
        (
            "redirect loop",
            Reply::RedirectLoop,
            false,
            "too many redirects",
        ),
        (
            "100 Continue only",
            Reply::InformationalOnly,
            false,
            "closed the connection before",
        ),
        ("304", Reply::NotModified, false, "answered 304"),
        (
            "404 quoting the path",
            Reply::EchoPath(404),
            false,
            "answered 404",
        ),
    ];
    let client = reqwest::Client::new();
    let runs = cases.into_iter().map(|(name, reply, delivered, expected)| {
        let client = client.clone();
        async move {
            let endless = matches!(reply, Reply::Endless | Reply::ErrorEndless);
            let server = HostileServer::always(reply).await;
            let settings = WebhookSettings {
                url: format!("{}/services/T000/B000/{TOKEN}", server.base)
                    .parse()
                    .unwrap(),
                format: WebhookFormat::Json,
            };
            let started = Instant::now();
            let outcome = tokio::time::timeout(
                Duration::from_secs(10),
                webhook::post(&client, &settings, r#"{"alerts":[]}"#, None),
            )
            .await;
            let elapsed = started.elapsed();
            let mut problems = Vec::new();
            match &outcome {
                Err(_) => problems.push("hung for 10s".to_string()),
                Ok(Ok(())) if !delivered => problems.push("counted as delivered".to_string()),
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let text = e.to_string();
                    if delivered {
                        problems.push(format!("not delivered: {text}"));
                    } else if !text.contains(expected) {
                        problems.push(format!("does not say {expected:?}: {text}"));
                    }
                    if let Some(piece) = leaked_piece(&text, TOKEN) {
                        problems.push(format!("shows {piece:?} of the URL's token: {text}"));
                    }
                }
            }
            if elapsed > Duration::from_secs(3) {
                problems.push(format!("took {elapsed:?}"));
            }
            if endless && server.bytes_sent() > ENDLESS_BOUND {
                problems.push(format!(
                    "read {} MiB of a body that never ends",
                    server.bytes_sent() >> 20
                ));
            }
            eprintln!("{name:<28} {:>5}ms {outcome:?}", elapsed.as_millis());
            problems
                .into_iter()
                .map(|p| format!("{name}: {p}"))
                .collect::<Vec<_>>()
        }
    });
    let problems: Vec<String> = join_all(runs).await.into_iter().flatten().collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
