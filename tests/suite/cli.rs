//! The binary as an operator uses it: config errors, enqueue validation, `run` and SIGTERM.

use crate::support;

use std::time::{Duration, Instant};

use codearts_syncd::sim::{Fault, Route};
use serde_json::Value;
use support::{spawn_app, text};

#[tokio::test]
async fn config_with_a_bad_key_names_the_key() {
    let app = spawn_app().await;
    let path = app.dir.path().join("bad.toml");
    let good = std::fs::read_to_string(app.config_path()).unwrap();
    std::fs::write(&path, good.replace("concurrency = 8", "concurency = 8")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .args(["--config", path.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("engine.concurency"), "stderr: {stderr}");
}

#[tokio::test]
async fn config_with_a_bad_value_names_the_key_and_why() {
    let app = spawn_app().await;
    let good = std::fs::read_to_string(app.config_path()).unwrap();
    for (from, to, key) in [
        ("max_attempts = 4", "max_attempts = 0", "retry.max_attempts"),
        (
            "poll_interval = \"50ms\"\nshutdown",
            "poll_interval = \"soon\"\nshutdown",
            "engine.poll_interval",
        ),
        (
            "region = \"ap-southeast-3\"",
            "region = \"\"",
            "cloud.region",
        ),
    ] {
        let path = app.dir.path().join("bad.toml");
        assert!(good.contains(from), "fixture has {from}");
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
            .args(["--config", path.to_str().unwrap(), "config", "check"])
            .output()
            .unwrap();
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{key}: {stderr}");
        assert!(stderr.contains(key), "expected {key} in: {stderr}");
    }
}

#[tokio::test]
async fn config_check_prints_sources_not_secrets_and_reports_a_missing_one() {
    let app = spawn_app().await;
    let out = app.cli(&["config", "check"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("[engine]"));
    assert!(!stdout.contains(&app.sim_cfg.password), "password printed");
    assert!(
        !stdout.contains(support::UPSTREAM_PASSWORD),
        "password printed"
    );

    std::fs::remove_file(app.dir.path().join("upstream-password")).unwrap();
    let out = app.cli(&["config", "check"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("credentials.upstream.password"), "{stderr}");
}

#[tokio::test]
async fn environment_overrides_a_key() {
    let app = spawn_app().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("--config")
        .arg(app.config_path())
        .args(["config", "check"])
        .env("CODEARTS_SYNCD_ENGINE__CONCURRENCY", "3")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("concurrency = 3"), "{stdout}");
}

#[tokio::test]
async fn enqueue_rejects_bad_parameters_naming_them() {
    let app = spawn_app().await;
    let cases = [
        (vec!["--param", "repository_id=abc"], "repository_id"),
        (
            vec!["--param", "repository_id=1", "--param", "colour=red"],
            "colour",
        ),
        (vec!["--param", "repository_id=0"], "repository_id"),
        (vec!["--param", "repository_id=2147483648"], "repository_id"),
        (
            vec!["--param", "repository_id=1", "--param", "credential=nope"],
            "credential",
        ),
        (vec!["--param", "force_fetch=true"], "repository_id"),
    ];
    for (params, named) in &cases {
        let mut args = vec!["enqueue", "remote_mirror"];
        args.extend(params.iter().copied());
        let out = app.cli(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{params:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{params:?}: expected {named} in {stderr}"
        );
    }
    let out = app.cli(&["enqueue", "mirror_everything", "--param", "x=1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("unknown job kind \"mirror_everything\""),
        "{stderr}"
    );

    // Every rejection is recorded.
    let out = app.cli(&["jobs", "list", "--status", "rejected", "--json"]);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), cases.len() + 1);
    assert!(list
        .iter()
        .all(|j| j["error_code"] == "REJECTED" && j["error_msg"].is_string()));
}

#[tokio::test]
async fn enqueue_with_a_key_creates_one_job() {
    let app = spawn_app().await;
    let a = app.cli(&[
        "enqueue",
        "remote_mirror",
        "-p",
        "repository_id=1",
        "--key",
        "push-7f3a",
    ]);
    let b = app.cli(&[
        "enqueue",
        "remote_mirror",
        "-p",
        "repository_id=1",
        "--key",
        "push-7f3a",
    ]);
    assert!(a.status.success() && b.status.success());
    assert!(text(&b).0.contains("duplicate key"), "{:?}", text(&b));
    let out = app.cli(&["jobs", "list", "--json"]);
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["idempotency_key"], "push-7f3a");
}

#[tokio::test]
async fn jobs_show_includes_the_attempts() {
    let mut app = spawn_app().await;
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        status: Some(502),
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit(
            "remote_mirror",
            serde_json::json!({"repository_id": 2, "follow": false}),
        )
        .await;
    app.start();
    app.wait_final(id, Duration::from_secs(20)).await;
    app.stop().await;
    let out = app.cli(&["jobs", "show", &id.to_string(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let log = v["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0]["http_status"], 502);
    assert_eq!(log[0]["outcome"], "retry");
    assert_eq!(log[1]["outcome"], "succeeded");
    let human = text(&app.cli(&["jobs", "show", &id.to_string()])).0;
    assert!(
        human.contains("ATTEMPT") && human.contains("502"),
        "{human}"
    );
    let table = text(&app.cli(&["jobs", "list"])).0;
    assert!(table.contains(v["jid"].as_str().unwrap()), "{table}");
}

#[tokio::test]
async fn sigterm_during_a_slow_job_lets_it_finish_and_exits_0() {
    let app = spawn_app().await;
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        delay_ms: Some(1500),
        times: 1,
        ..Fault::default()
    });
    let id = app
        .submit(
            "remote_mirror",
            serde_json::json!({"repository_id": 4, "follow": false}),
        )
        .await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("--config")
        .arg(app.config_path())
        .arg("run")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the slow start call is in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.sim.count(Route::MirrorStart) == 0 {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.job(id).await.status, "running");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    let job = app.job(id).await;
    assert_eq!(job.status, "succeeded", "{job:?}");
    assert!(job.jid.is_some());
}

/// One command line against an edited copy of the test config, and what the operator sees.
struct Case {
    name: &'static str,
    /// Replacements in the config file (each must match).
    edit: &'static [(&'static str, &'static str)],
    append: &'static str,
    env: &'static [(&'static str, &'static str)],
    args: &'static [&'static str],
    code: i32,
    /// Each must be in stderr.
    says: &'static [&'static str],
    /// Each must be in stderr exactly once.
    once: &'static [&'static str],
    /// None may be in stderr or stdout.
    never: &'static [&'static str],
}

const NO_STORE: (&str, &str) = ("path = \"jobs.db\"", "path = \"missing/jobs.db\"");

const CASES: &[Case] = &[
    Case {
        name: "a literal secret in the file",
        edit: &[(
            "password = { file = \"password\" }",
            "password = \"hunter2-literal\"",
        )],
        append: "",
        env: &[],
        args: &["config", "check"],
        code: 2,
        says: &["cloud.auth.password: a secret is a source, not a value: write { env = \"NAME\" } or { file = \"/path\" }"],
        once: &[],
        never: &["hunter2"],
    },
    Case {
        name: "a literal secret from the environment",
        edit: &[],
        append: "",
        env: &[("CODEARTS_SYNCD_CREDENTIALS__UPSTREAM__PASSWORD", "hunter2-env")],
        args: &["run"],
        code: 2,
        says: &["credentials.upstream.password (from the environment variable CODEARTS_SYNCD_CREDENTIALS__UPSTREAM__PASSWORD): a secret is a source"],
        once: &[],
        never: &["hunter2"],
    },
    Case {
        name: "run with a secret whose variable is unset",
        edit: &[(
            "password = { file = \"password\" }",
            "password = { env = \"CODEARTS_TEST_UNSET_PASSWORD_VAR\" }",
        )],
        append: "",
        env: &[],
        args: &["run"],
        code: 2,
        says: &["cloud.auth.password", "CODEARTS_TEST_UNSET_PASSWORD_VAR is not set"],
        once: &[],
        // Nothing was started: no log line, only the error.
        never: &["INFO", "WARN", "schedule registered"],
    },
    Case {
        name: "follow_timeout above its maximum",
        edit: &[("follow_timeout = \"20s\"", "follow_timeout = \"99999999d\"")],
        append: "",
        env: &[],
        args: &["config", "check"],
        code: 2,
        says: &["remote_mirror.follow_timeout: 99999999d is above the maximum of 7d"],
        once: &[],
        never: &[],
    },
    Case {
        name: "a cron expression that never fires",
        edit: &[],
        append: "[[schedules]]\nname = \"never\"\ncron = \"0 0 0 30 2 *\"\nkind = \"storage_snapshot\"\n",
        env: &[],
        args: &["run"],
        code: 2,
        says: &["schedules.never.cron: \"0 0 0 30 2 *\" never fires (no occurrence in the next 5 years)"],
        once: &[],
        never: &[],
    },
    Case {
        name: "jobs list on a missing store",
        edit: &[NO_STORE],
        append: "",
        env: &[],
        args: &["jobs", "list"],
        code: 2,
        says: &["no store at ", "missing/jobs.db"],
        once: &[],
        never: &[],
    },
    Case {
        name: "jobs show on a missing store",
        edit: &[NO_STORE],
        append: "",
        env: &[],
        args: &["jobs", "show", "1"],
        code: 2,
        says: &["no store at ", "missing/jobs.db"],
        once: &[],
        never: &[],
    },
    Case {
        name: "audit verify on a missing store",
        edit: &[NO_STORE],
        append: "",
        env: &[],
        args: &["audit", "verify"],
        code: 2,
        says: &["no store at ", "missing/jobs.db"],
        once: &[],
        never: &["intact"],
    },
    Case {
        name: "audit export on a missing store",
        edit: &[NO_STORE],
        append: "",
        env: &[],
        args: &["audit", "export", "--format", "jsonl"],
        code: 2,
        says: &["no store at ", "missing/jobs.db"],
        once: &[],
        never: &["exported"],
    },
    Case {
        name: "storage report on a missing store",
        edit: &[NO_STORE],
        append: "",
        env: &[],
        args: &["storage", "report"],
        code: 2,
        says: &["no store at ", "missing/jobs.db"],
        once: &[],
        never: &[],
    },
    Case {
        name: "audit verify with nothing archived",
        edit: &[],
        append: "",
        env: &[],
        args: &["audit", "verify"],
        code: 1,
        says: &["no audit records archived yet in ", "jobs.db; nothing to verify"],
        once: &[],
        never: &["intact"],
    },
    Case {
        name: "jobs list with an unknown status",
        edit: &[],
        append: "",
        env: &[],
        args: &["jobs", "list", "--status", "bogus"],
        code: 2,
        says: &["'bogus'", "queued", "skipped"],
        once: &[],
        never: &[],
    },
    Case {
        name: "jobs list with an unknown kind",
        edit: &[],
        append: "",
        env: &[],
        args: &["jobs", "list", "--kind", "mirror_everything"],
        code: 2,
        says: &["'mirror_everything'", "remote_mirror", "audit_mirror"],
        once: &[],
        never: &[],
    },
    Case {
        name: "an unknown key in the file",
        edit: &[("concurrency = 8", "concurency = 8")],
        append: "",
        env: &[],
        args: &["config", "check"],
        code: 2,
        says: &["engine.concurency: unknown key"],
        once: &["concurency"],
        never: &[],
    },
    Case {
        name: "an unknown key from the environment",
        edit: &[],
        append: "",
        env: &[("CODEARTS_SYNCD_ENGINE__CONCURENCY", "3")],
        args: &["config", "check"],
        code: 2,
        says: &[
            "engine.concurency (from the environment variable CODEARTS_SYNCD_ENGINE__CONCURENCY): unknown key",
        ],
        once: &["engine.concurency"],
        never: &[],
    },
    Case {
        name: "a store that cannot be created names its cause once",
        // `password` is a file, so no directory can be made under it.
        edit: &[("path = \"jobs.db\"", "path = \"password/jobs.db\"")],
        append: "",
        env: &[],
        args: &["enqueue", "storage_snapshot"],
        code: 1,
        says: &["cannot open store ", "password/jobs.db"],
        once: &["unable to open database file"],
        never: &[],
    },
    Case {
        name: "a store that is not a database",
        edit: &[("path = \"jobs.db\"", "path = \"not-a-db.db\"")],
        append: "",
        env: &[],
        args: &["jobs", "list"],
        code: 3,
        says: &["not-a-db.db is damaged or not a SQLite database"],
        once: &[],
        never: &[],
    },
];

#[tokio::test]
async fn operator_mistakes_exit_with_their_code_and_name_what_is_wrong() {
    let app = spawn_app().await;
    let base = std::fs::read_to_string(app.config_path()).unwrap();
    std::fs::write(
        app.dir.path().join("not-a-db.db"),
        "this is a text file, not a database\n".repeat(200),
    )
    .unwrap();
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        // Cases about the SQLite file (missing, not a database, unreadable): the SQLite run's.
        if support::postgres() && case.edit.iter().any(|(from, _)| from.contains("jobs.db")) {
            continue;
        }
        let mut config = base.clone();
        for (from, to) in case.edit {
            assert!(
                config.contains(from),
                "{}: the config has {from:?}",
                case.name
            );
            config = config.replacen(from, to, 1);
        }
        config.push_str(case.append);
        let path = app.dir.path().join(format!("case-{i}.toml"));
        std::fs::write(&path, config).unwrap();
        let out = support::run_binary(&path, case.args, case.env, Duration::from_secs(30));
        let (stdout, stderr) = text(&out);
        let mut wrong = Vec::new();
        if out.status.code() != Some(case.code) {
            wrong.push(format!(
                "exit {:?}, expected {}",
                out.status.code(),
                case.code
            ));
        }
        for s in case.says {
            if !stderr.contains(s) {
                wrong.push(format!("stderr lacks {s:?}"));
            }
        }
        for s in case.once {
            let n = stderr.matches(s).count();
            if n != 1 {
                wrong.push(format!("stderr has {s:?} {n} times"));
            }
        }
        for s in case.never {
            if stderr.contains(s) || stdout.contains(s) {
                wrong.push(format!("output has {s:?}"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {stderr}",
                case.name,
                wrong.join("; ")
            ));
        }
        assert!(
            !app.dir.path().join("missing").exists(),
            "{}: a read-only command created the store's directory",
            case.name
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Runs the binary in an empty directory with a `--config` that does not exist, as an install
/// script would before any configuration is written; returns the output and the directory.
fn without_config(args: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codearts-syncd"))
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("CODEARTS_SYNCD_CONFIG")
        .output()
        .expect("binary runs");
    (out, dir)
}

/// What the directory holds after the command: nothing, when it read no config and opened no store.
fn left_behind(dir: &tempfile::TempDir) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn bash_completions_define_the_function_and_name_the_commands() {
    let (out, dir) = without_config(&["completions", "bash"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains("complete -F _codearts__syncd"), "{stdout}");
    assert!(stdout.contains("_codearts__syncd()"), "{stdout}");
    for name in ["enqueue", "jobs", "completions", "manpage"] {
        assert!(stdout.contains(name), "{name} missing from: {stdout}");
    }
    assert!(left_behind(&dir).is_empty(), "{:?}", left_behind(&dir));
}

#[test]
fn every_other_shell_gets_completions_naming_the_commands() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (out, dir) = without_config(&["completions", shell]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{shell}: {stderr}");
        assert!(stdout.contains("enqueue"), "{shell}: {stdout}");
        assert!(
            left_behind(&dir).is_empty(),
            "{shell}: {:?}",
            left_behind(&dir)
        );
    }
}

#[test]
fn completions_for_an_unknown_shell_is_a_usage_error() {
    let (out, _dir) = without_config(&["completions", "nonsense"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("bash"),
        "the possible values are named: {stderr}"
    );
}

#[test]
fn completions_help_says_where_the_script_goes() {
    let (out, _dir) = without_config(&["completions", "--help"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("codearts-syncd completions bash > /etc/bash_completion.d/"),
        "{stdout}"
    );
    let (out, _dir) = without_config(&["manpage", "--help"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("codearts-syncd manpage > codearts-syncd.1"),
        "{stdout}"
    );
}

#[test]
fn manpage_is_roff_naming_every_command_and_the_exit_codes() {
    let (out, dir) = without_config(&["manpage"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let th = stdout.lines().position(|l| l.starts_with(".TH "));
    let first_text = stdout.lines().position(|l| !l.starts_with('.'));
    assert!(
        th.is_some() && th < first_text,
        "no .TH header first: {stdout}"
    );
    assert_eq!(stdout.matches(".TH ").count(), 1, "one page: {stdout}");
    for command in [
        "codearts\\-syncd run",
        "codearts\\-syncd enqueue",
        "codearts\\-syncd jobs list",
        "codearts\\-syncd jobs show",
        "codearts\\-syncd audit export",
        "codearts\\-syncd completions",
        "codearts\\-syncd manpage",
    ] {
        assert!(stdout.contains(command), "{command} missing from: {stdout}");
    }
    // Commands live on this one page: no reference to per-command pages that are not installed.
    assert!(!stdout.contains("syncd\\-jobs(1)"), "{stdout}");
    assert!(stdout.contains(".SH \"EXIT STATUS\""), "{stdout}");
    assert!(left_behind(&dir).is_empty(), "{:?}", left_behind(&dir));
}

/// What bash offers for `words` (the last one being completed) with the generated script loaded,
/// or `None` when there is no bash to ask.
fn bash_completes(script: &str, words: &[&str]) -> Option<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let probe = format!(
        "{script}\nCOMP_WORDS=({words}); COMP_CWORD={cword}\n\
         _codearts__syncd codearts-syncd \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         echo \"${{COMPREPLY[*]}}\"\n",
        words = quoted.join(" "),
        cword = words.len() - 1,
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .ok()?;
    assert!(out.status.success(), "bash: {}", text(&out).1);
    Some(text(&out).0.trim().to_string())
}

#[test]
fn bash_completes_past_the_first_word() {
    let (out, _dir) = without_config(&["completions", "bash"]);
    let (script, _) = text(&out);
    let Some(top) = bash_completes(&script, &["codearts-syncd", "jo"]) else {
        eprintln!("no bash here: skipped");
        return;
    };
    assert_eq!(top, "jobs");
    let jobs = bash_completes(&script, &["codearts-syncd", "jobs", ""]).unwrap();
    assert!(jobs.split(' ').any(|w| w == "list"), "jobs: {jobs}");
    let list = bash_completes(&script, &["codearts-syncd", "jobs", "list", "--st"]).unwrap();
    assert_eq!(list, "--status");
    let status = bash_completes(
        &script,
        &["codearts-syncd", "jobs", "list", "--status", "fa"],
    )
    .unwrap();
    assert_eq!(status, "failed");
    let shells = bash_completes(&script, &["codearts-syncd", "completions", "z"]).unwrap();
    assert_eq!(shells, "zsh");
}
