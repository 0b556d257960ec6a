//! Unit tests of the configuration on its own: loading, unknown and missing keys, secrets that
//! are never echoed, duration bounds, region defaults, and that nothing here imports a layer
//! above. Schedules' cron, kind and params are tested with their checks, in
//! `crate::daemon::checks`.

use std::path::Path;

use super::checks::DURATION_KEYS;
use super::load::describe_figment_error;
use super::*;

const MINIMAL: &str = r#"
[cloud]
region = "ap-southeast-3"
iam_project_id = "p1"
[cloud.auth]
method = "password"
domain_name = "acct"
user_name = "u"
password = { env = "SOME_VAR" }
"#;

#[test]
fn minimal_config_loads_with_defaults() {
    let cfg = Config::from_toml_str(MINIMAL, Path::new(".")).expect("valid");
    assert_eq!(cfg.engine.concurrency, 8);
    assert_eq!(
        cfg.endpoints().artifact,
        "https://artifact.ap-southeast-3.myhuaweicloud.com"
    );
}

#[test]
fn unknown_key_is_named_once_with_its_path() {
    let text = format!("{MINIMAL}\n[engine]\nconcurency = 3\n");
    let err = Config::from_toml_str(&text, Path::new(".")).unwrap_err();
    let msg = err.to_string();
    assert_eq!(msg.matches("concurency").count(), 1, "got: {msg}");
    assert!(msg.contains("engine.concurency: unknown key"), "got: {msg}");
    assert!(msg.contains("concurrency"), "lists the known keys: {msg}");

    let text = format!("{MINIMAL}\n[nonsense]\nx = 1\n");
    let msg = Config::from_toml_str(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert_eq!(msg.matches("nonsense").count(), 1, "got: {msg}");
}

#[test]
fn a_missing_key_is_named_with_its_path() {
    let text = MINIMAL.replace("user_name = \"u\"\n", "");
    let text = text.replace("method = \"password\"\n", "");
    let msg = Config::from_toml_str(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("cloud.auth.method: missing key"), "got: {msg}");
}

#[test]
fn a_literal_secret_is_refused_by_key_without_its_value() {
    let aksk = MINIMAL
        .replace("method = \"password\"", "method = \"aksk\"")
        .replace("domain_name = \"acct\"\nuser_name = \"u\"\n", "")
        .replace(
            "password = { env = \"SOME_VAR\" }",
            "access_key = { env = \"AK\" }\nsecret_key = { env = \"SK\" }",
        );
    let amqp = "\n[amqp]\npassword = { env = \"AMQP_PW\" }\n";
    let creds = "\n[credentials.gh]\nusername = { env = \"U\" }\npassword = { env = \"P\" }\n";
    let cases: Vec<(String, &str, &str)> = [
        (
            MINIMAL.to_string(),
            "password = { env = \"SOME_VAR\" }",
            "cloud.auth.password",
        ),
        (
            aksk.clone(),
            "access_key = { env = \"AK\" }",
            "cloud.auth.access_key",
        ),
        (
            aksk.clone(),
            "secret_key = { env = \"SK\" }",
            "cloud.auth.secret_key",
        ),
        (
            format!("{MINIMAL}{amqp}"),
            "password = { env = \"AMQP_PW\" }",
            "amqp.password",
        ),
        (
            format!("{MINIMAL}{creds}"),
            "username = { env = \"U\" }",
            "credentials.gh.username",
        ),
        (
            format!("{MINIMAL}{creds}"),
            "password = { env = \"P\" }",
            "credentials.gh.password",
        ),
    ]
    .into_iter()
    .collect();
    for (text, line, key) in &cases {
        Config::from_toml_str(text, Path::new(".")).expect("the source form is valid");
        let name = line.split(" = ").next().unwrap();
        for literal in [
            "\"hunter2-s3cret\"".to_string(),
            "73572811".to_string(),
            "[\"hunter2-s3cret\"]".to_string(),
            "'hunter2-s3cret'".to_string(),
        ] {
            let bad = text.replacen(line, &format!("{name} = {literal}"), 1);
            assert_ne!(&bad, text, "{key}: the case replaced something");
            let msg = Config::from_toml_str(&bad, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains(&format!("{key}: {SECRET_IS_A_SOURCE}")),
                "{key} = {literal}: {msg}"
            );
            assert!(
                !msg.contains("hunter2") && !msg.contains("73572811"),
                "{key} = {literal}: the value is echoed: {msg}"
            );
        }
    }
}

#[test]
fn no_error_under_a_secret_key_quotes_its_value() {
    // Defence in depth: whatever figment reports at or under a secret key.
    let err = figment::Error::from(figment::error::Kind::InvalidType(
        figment::error::Actual::Str("hunter2".into()),
        "a table".into(),
    ))
    .with_path("credentials.gh.password");
    let msg = describe_figment_error(err).to_string();
    assert_eq!(
        msg,
        format!("invalid configuration: credentials.gh.password: {SECRET_IS_A_SOURCE}")
    );
}

#[test]
fn durations_above_their_maximum_are_refused_by_key() {
    let text = format!("{MINIMAL}\n[remote_mirror]\nfollow_timeout = \"99999999d\"\n");
    let msg = Config::from_toml_str(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(
        msg.ends_with("remote_mirror.follow_timeout: 99999999d is above the maximum of 7d"),
        "got: {msg}"
    );
    for (section, key, value, max) in [
        ("retry", "max_interval", "25h", "1d"),
        ("retry", "max_retry_after", "2d", "1d"),
        ("engine", "shutdown_grace", "61m", "1h"),
        ("http", "request_timeout", "3601s", "1h"),
        ("amqp", "batch_wait", "11s", "10s"),
    ] {
        let text = format!("{MINIMAL}\n[{section}]\n{key} = \"{value}\"\n");
        let msg = Config::from_toml_str(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&format!("{section}.{key}: "))
                && msg.contains(&format!("maximum of {max}")),
            "{section}.{key} = {value}: {msg}"
        );
    }
    let text = format!("{MINIMAL}\n[remote_mirror]\nfollow_timeout = \"7d\"\n");
    Config::from_toml_str(&text, Path::new(".")).expect("the maximum itself is allowed");
}

#[test]
fn every_duration_key_has_bounds() {
    // Every value of the full configuration that reads as a duration must be in
    // DURATION_KEYS, so that a new duration key cannot be left unbounded.
    let text = format!("{MINIMAL}\n[amqp]\n[server]\nlisten = \"127.0.0.1:8625\"\n");
    let cfg = Config::from_toml_str(&text, Path::new(".")).unwrap();
    let value = toml::Value::try_from(&cfg).unwrap();
    fn walk(prefix: &str, v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            toml::Value::String(s) if humantime::parse_duration(s).is_ok() => {
                out.push(prefix.to_string())
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk("", &value, &mut found);
    assert!(found.len() >= 10, "found {found:?}");
    for key in found {
        assert!(
            DURATION_KEYS.iter().any(|d| d.key == key),
            "{key} is a duration without bounds: add it to DURATION_KEYS"
        );
    }
    for d in DURATION_KEYS {
        assert!((d.get)(&cfg).is_some(), "{} is read", d.key);
        assert!(
            (d.get)(&cfg).unwrap() <= d.max,
            "{}'s default is within bounds",
            d.key
        );
    }
}

#[test]
fn check_all_also_resolves_the_secrets() {
    let text = MINIMAL.replace("SOME_VAR", "CODEARTS_SYNCD_TEST_SURELY_UNSET_VAR");
    let cfg = Config::from_toml_str(&text, Path::new(".")).expect("valid shape");
    let msg = cfg.check_all().unwrap_err().to_string();
    assert!(
        msg.contains("cloud.auth.password")
            && msg.contains("CODEARTS_SYNCD_TEST_SURELY_UNSET_VAR is not set"),
        "got: {msg}"
    );
}

#[test]
fn secrets_must_name_exactly_one_source() {
    let text = MINIMAL.replace(
        r#"password = { env = "SOME_VAR" }"#,
        r#"password = { env = "A", file = "b" }"#,
    );
    let err = Config::from_toml_str(&text, Path::new(".")).unwrap_err();
    assert!(err.to_string().contains("cloud.auth.password"), "{err}");
    let text = MINIMAL.replace(r#"{ env = "SOME_VAR" }"#, r#""hunter2""#);
    let err = Config::from_toml_str(&text, Path::new(".")).unwrap_err();
    assert!(err.to_string().contains("cloud.auth.password"), "{err}");
}

#[test]
fn region_defaults_follow_the_sdk_region_files() {
    assert_eq!(
        default_endpoints("cn-north-4").artifact,
        "https://cloudartifacts-ext.cn-north-4.myhuaweicloud.com"
    );
    assert_eq!(
        default_endpoints("tr-west-1").repo,
        "https://codeartsrepo-ext.tr-west-1.myhuaweicloud.com"
    );
    assert_eq!(
        default_endpoints("eu-west-101").iam,
        "https://iam.eu-west-101.myhuaweicloud.eu"
    );
    assert_eq!(
        default_endpoints("cn-south-1").swr,
        "https://swr-api.cn-south-1.myhuaweicloud.com"
    );
    assert_eq!(
        default_endpoints("eu-west-101").swr,
        "https://swr-api.eu-west-101.myhuaweicloud.eu"
    );
}

#[test]
fn a_schedule_misfire_setting_that_cannot_apply_is_named() {
    let schedule = |extra: &str| {
        format!(
            "{MINIMAL}\n[[schedules]]\nname = \"s\"\ncron = \"0 * * * * *\"\nkind = \"storage_snapshot\"\n{extra}\n"
        )
    };
    for (extra, expected) in [
        (
            "max_catch_up = 3",
            "schedules.s.max_catch_up: only applies with misfire = \"catch_up\"",
        ),
        (
            "misfire = \"catch_up\"\nmax_catch_up = 0",
            "schedules.s.max_catch_up: must be at least 1",
        ),
        (
            "misfire_grace = \"8d\"",
            "schedules.s.misfire_grace: 8d is above the maximum of 7d",
        ),
        (
            "misfire = \"later\"",
            "schedules.0.misfire: unknown variant: found `later`",
        ),
    ] {
        let err = Config::from_toml_str(&schedule(extra), Path::new("."))
            .and_then(|c| c.validate().map(|()| c))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{extra}: {err}");
    }
    let ok = Config::from_toml_str(
        &schedule("misfire = \"catch_up\"\nmax_catch_up = 5\nmisfire_grace = \"2m\""),
        Path::new("."),
    )
    .unwrap();
    ok.validate().unwrap();
    assert_eq!(ok.schedules[0].makeup_limit(), 5);
}

#[test]
fn swr_sync_regions_must_be_region_ids_named_by_key() {
    let ok = format!(
        "{MINIMAL}\n[swr]\nsync_regions = [\"ap-southeast-1\", \"cn-north-4\", \"la-north-2\"]\n"
    );
    let cfg = Config::from_toml_str(&ok, Path::new(".")).expect("valid");
    assert_eq!(cfg.swr.sync_regions.len(), 3);
    for bad in [
        "AP-1",
        "ap_southeast_1",
        "apsoutheast",
        "ap--1",
        "1ap-x",
        "ap-",
    ] {
        let text = format!("{MINIMAL}\n[swr]\nsync_regions = [\"{bad}\"]\n");
        let msg = Config::from_toml_str(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("swr.sync_regions") && msg.contains(bad),
            "{bad}: {msg}"
        );
    }
    let text = format!("{MINIMAL}\n[swr]\npoll_interval = \"0s\"\n");
    let msg = Config::from_toml_str(&text, Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("swr.poll_interval"), "{msg}");
}
