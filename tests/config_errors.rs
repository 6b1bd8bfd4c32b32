//! Configuration mistakes a careless user makes, through the real binary: each is exit code 2
//! with a message naming the cause, never a panic (exit 101) and never a silent default.
//! Duplicate probe names across labels use the real engine (containers the test starts).

mod support;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::Output;

use support::{medic_with_only as medic, TestRun};

/// What the command printed: `medic check` reports on stdout (its table), the others on stderr.
fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout)
}

/// Asserts exit 2 and that stderr holds every one of `expected`.
fn assert_invalid(out: &Output, expected: &[&str]) {
    let text = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for e in expected {
        assert!(text.contains(e), "{e:?} missing in:\n{text}");
    }
}

fn s(text: &str) -> &OsStr {
    OsStr::new(text)
}

#[test]
fn an_unknown_top_level_key_is_named_with_the_closest_known_one() {
    let (_dir, path) =
        support::medic_config("prob:\n  web:\n    type: tcp\n    host: 127.0.0.1\n    port: 1\n");
    let config = path.to_str().unwrap();
    for command in ["probe", "check"] {
        let out = medic(
            &[command],
            &[
                ("MEDIC_CONFIG", s(config)),
                ("DOCKER_HOST", s("unix:///nonexistent")),
            ],
        );
        assert_invalid(
            &out,
            &[
                &format!("{config}:1: unknown top-level key `prob`"),
                "did you mean `probes`?",
            ],
        );
    }
    // The daemon refuses to start with it rather than run with no probes.
    let data = tempfile::tempdir().unwrap();
    let out = medic(
        &["run"],
        &[
            ("MEDIC_CONFIG", s(config)),
            ("MEDIC_DATA_DIR", data.path().as_os_str()),
            ("MEDIC_LISTEN", s("127.0.0.1:0")),
        ],
    );
    assert_invalid(&out, &["unknown top-level key `prob`"]);
    // Keys starting with x- are free, for YAML anchors.
    let (_dir, path) = support::medic_config(
        "x-common: &common\n  timeout: 5s\nprobes:\n  space:\n    type: disk\n    path: /tmp\n",
    );
    let out = medic(
        &["probe", "space"],
        &[
            ("MEDIC_CONFIG", path.as_os_str()),
            ("DOCKER_HOST", s("unix:///nonexistent")),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_probe_name_used_twice_in_the_file_is_an_error() {
    let (_dir, path) = support::medic_config(
        "probes:\n  web:\n    type: tcp\n    host: 127.0.0.1\n    port: 1\n  web:\n    type: disk\n    path: /tmp\n",
    );
    let out = medic(
        &["probe"],
        &[
            ("MEDIC_CONFIG", path.as_os_str()),
            ("DOCKER_HOST", s("unix:///nonexistent")),
        ],
    );
    assert_invalid(
        &out,
        &[&format!(
            "{}:6:3: probe `web` is declared twice in this file, on lines 2 and 6; rename one",
            path.display()
        )],
    );
}

/// One name declared on two services, and in the file and on a service: each is an error that
/// names both places.
#[test]
fn a_probe_name_used_twice_across_labels_and_the_file_names_both_places() {
    let run = TestRun::new("configdup");
    let api = run.service(
        "api",
        &[
            ("medic.probe.ping.type", "tcp"),
            ("medic.probe.ping.port", "1"),
            ("medic.probe.space.type", "disk"),
        ],
    );
    let worker = run.service(
        "worker",
        &[
            ("medic.probe.ping.type", "tcp"),
            ("medic.probe.ping.port", "2"),
        ],
    );
    let (_dir, path) = support::medic_config("probes:\n  space:\n    type: disk\n    path: /tmp\n");
    let out = medic(
        &["probe"],
        &[
            ("MEDIC_PROJECT", s(&run.id)),
            ("MEDIC_CONFIG", path.as_os_str()),
        ],
    );
    assert_invalid(
        &out,
        &[
            &format!(
                "probe `ping` is declared twice: in container {api} and in container {worker}"
            ),
            &format!(
                "probe `space` is declared twice: in {} and in container {api}",
                path.display()
            ),
        ],
    );
}

#[test]
fn a_blank_token_is_an_error() {
    let empty = tempfile::NamedTempFile::new().unwrap();
    let cases: [(&str, &OsStr, &str); 4] = [
        ("MEDIC_API_TOKEN", s(""), "is set but blank"),
        ("MEDIC_API_TOKEN", s("   "), "is set but blank"),
        (
            "MEDIC_API_TOKEN_FILE",
            empty.path().as_os_str(),
            "the file is empty",
        ),
        ("MEDIC_API_TOKEN_FILE", s(" "), "is set but blank"),
    ];
    for (var, value, expected) in cases {
        for command in ["check", "run"] {
            let out = medic(&[command], &[(var, value)]);
            assert_invalid(&out, &[var, expected]);
        }
    }
}

/// `std::env::vars()` panics on such a variable (exit 101, so even the image's HEALTHCHECK
/// fails without a word); medic names it instead, and never shows its value.
#[test]
fn a_non_utf8_variable_is_named_not_a_panic() {
    let value = OsStr::from_bytes(b"secret-\xff-bytes");
    for command in ["probe", "check", "healthcheck", "run"] {
        let out = medic(&[command], &[("MAIL_PASSWORD", value)]);
        assert_invalid(&out, &["MAIL_PASSWORD", "not UTF-8"]);
        assert!(!stderr(&out).contains("secret-"), "{}", stderr(&out));
    }
}

#[test]
fn intervals_below_the_minimum_are_errors() {
    let out = medic(&["check"], &[("MEDIC_RECONCILE_INTERVAL", s("1ns"))]);
    assert_invalid(&out, &["MEDIC_RECONCILE_INTERVAL", "the shortest is 1s"]);
    for (key, value) in [("interval", "1ns"), ("timeout", "100ms")] {
        let (_dir, path) = support::medic_config(&format!(
            "probes:\n  space:\n    type: disk\n    path: /tmp\n    {key}: {value}\n"
        ));
        let out = medic(
            &["probe"],
            &[
                ("MEDIC_CONFIG", path.as_os_str()),
                ("DOCKER_HOST", s("unix:///nonexistent")),
            ],
        );
        assert_invalid(
            &out,
            &[&format!("probe `space`, key `{key}`"), "the shortest is 1s"],
        );
    }
}

#[test]
fn a_bad_label_allow_list_is_an_error() {
    for value in ["*", "API-HOST", "${APP_TOKEN}"] {
        let out = medic(&["check"], &[("MEDIC_LABEL_VARIABLES", s(value))]);
        assert_invalid(&out, &["MEDIC_LABEL_VARIABLES", "not a variable name"]);
    }
}
