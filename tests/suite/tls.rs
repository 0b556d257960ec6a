//! HTTPS on the listener (`[server] tls`): a self-signed certificate made for each test, the
//! daemon started as an operator starts it, and a client that trusts only that certificate.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use codearts_syncd::sim::{Fault, Route};
use serde_json::{json, Value};
use support::{run_binary, spawn_app, text, with_server, TestApp};

const TLS: &str = "tls = { cert = \"cert.pem\", key = \"key.pem\" }";
const TOKEN: &str = "operator-token-tls-77c1";

/// Writes a self-signed certificate for 127.0.0.1 and its key (PKCS#8 PEM) into `dir` as
/// `cert_name` and `key_name`; returns the certificate and the key as PEM.
fn make_cert(dir: &Path, cert_name: &str, key_name: &str) -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("self-signed certificate");
    let (cert, key) = (made.cert.pem(), made.key_pair.serialize_pem());
    std::fs::write(dir.join(cert_name), &cert).unwrap();
    std::fs::write(dir.join(key_name), &key).unwrap();
    (cert, key)
}

/// A client that trusts the test certificate and nothing else.
fn client_trusting(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let resp = client.get(url).send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.unwrap_or_default()))
}

async fn wait_for(client: &reqwest::Client, url: &str, want: u16, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some((status, body)) = get(client, url).await {
            if status == want {
                return serde_json::from_str(&body).unwrap_or(Value::String(body));
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A test world with `[server] tls` (and the operator API), debug logging; returns the
/// `https://` base URL and the certificate as PEM.
async fn tls_app() -> (TestApp, String, String) {
    let mut app = spawn_app().await;
    let (cert, _) = make_cert(app.dir.path(), "cert.pem", "key.pem");
    std::fs::write(app.dir.path().join("api-token"), TOKEN).unwrap();
    let mut config = std::fs::read_to_string(app.config_path()).unwrap();
    config.push_str("\n[logging]\nlevel = \"debug\"\n");
    std::fs::write(app.config_path(), config).unwrap();
    let base = with_server(
        &mut app,
        &format!("{TLS}\napi_token = {{ file = \"api-token\" }}"),
    );
    let base = base.replacen("http://", "https://", 1);
    (app, base, cert)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_health_the_api_and_the_drain_and_refuses_plain_http() {
    let (app, base, cert) = tls_app().await;
    let https = client_trusting(&cert);
    // A start that answers after 3 s keeps the drain going (the grace is 5 s).
    app.sim.inject(Fault {
        route: Route::MirrorStart,
        delay_ms: Some(3000),
        times: 1,
        ..Fault::default()
    });
    let mut daemon = app.spawn_run("tls.log");
    let ready = wait_for(
        &https,
        &format!("{base}/readyz"),
        200,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(
        get(&https, &format!("{base}/healthz")).await,
        Some((200, "ok\n".to_string()))
    );
    let line = daemon
        .wait_log("HTTP listener ready", 1, Duration::from_secs(5))
        .await;
    assert!(line.contains("tls=true"), "{line}");

    // A client that does not trust the certificate, and plain HTTP on the TLS port, get
    // nothing; the refused handshake is logged at debug with the peer, and the listener goes on.
    let untrusted = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(untrusted
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
    let plain = base.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new()
        .get(format!("{plain}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        answer.is_err(),
        "plain HTTP on the TLS port was answered: {:?}",
        answer.map(|r| r.status())
    );
    let failed = daemon
        .wait_log("TLS handshake failed", 1, Duration::from_secs(5))
        .await;
    assert!(failed.contains("peer=127.0.0.1:"), "{failed}");

    // A client that connects and never starts its handshake holds up no one else.
    let silent = tokio::net::TcpStream::connect(base.trim_start_matches("https://"))
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        get(&https, &format!("{base}/healthz")).await.map(|a| a.0),
        Some(200)
    );
    // Served before the silent client's handshake times out (what waiting for it would take).
    assert!(
        started.elapsed() < codearts_syncd::ingress::http::tls::HANDSHAKE_TIMEOUT / 2,
        "the request waited {:?} behind a silent client",
        started.elapsed()
    );

    // The operator API end to end: a job posted over HTTPS is queued and shown.
    let posted = https
        .post(format!("{base}/jobs"))
        .bearer_auth(TOKEN)
        .body(
            json!({"kind": "remote_mirror", "params": {"repository_id": 3, "follow": false}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 202);
    let posted: Value = posted.json().await.unwrap();
    assert_eq!(posted["outcome"], "queued", "{posted}");
    let id = posted["id"].as_i64().expect("job id");
    let (status, shown) = get(&https, &format!("{base}/jobs/{id}")).await.unwrap();
    assert_eq!(status, 401, "the token is still required: {shown}");
    let shown: Value = https
        .get(format!("{base}/jobs/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["kind"], "remote_mirror", "{shown}");
    let (status, metrics) = get(&https, &format!("{base}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("# TYPE"), "{metrics}");

    // The drain answers over HTTPS too, then the listener stops.
    let job: codearts_syncd::JobId = id;
    app.wait_for(job, Duration::from_secs(10), |j| j.status == "running")
        .await;
    daemon.signal("TERM");
    let draining = wait_for(
        &https,
        &format!("{base}/readyz"),
        503,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(draining["failing"][0]["check"], "draining", "{draining}");
    let status = daemon.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        app.job(job).await.status,
        "succeeded",
        "the drain let it finish"
    );
    assert!(
        get(&https, &format!("{base}/healthz")).await.is_none(),
        "the listener stopped"
    );
    drop(silent);
    let log = daemon.log_text();
    assert!(
        log.lines().any(|l| l.contains("http request")
            && l.contains("route=/jobs")
            && l.contains("status=202")),
        "the access log works over TLS: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_a_renewed_certificate_and_keeps_it_when_the_new_key_is_broken() {
    let (app, base, old) = tls_app().await;
    let healthz = format!("{base}/healthz");
    let mut daemon = app.spawn_run("reload.log");
    wait_for(
        &client_trusting(&old),
        &healthz,
        200,
        Duration::from_secs(20),
    )
    .await;

    // Renewed at the same paths; SIGHUP puts it in force for new connections.
    let (new, _) = make_cert(app.dir.path(), "cert.pem", "key.pem");
    daemon.signal("HUP");
    daemon
        .wait_log(
            "TLS certificate read again: new connections get the new one",
            1,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        get(&client_trusting(&new), &healthz).await.map(|a| a.0),
        Some(200)
    );
    assert!(
        get(&client_trusting(&old), &healthz).await.is_none(),
        "a new connection still got the old certificate"
    );

    // A key file with no key in it: the reload is refused and the certificate in force stays.
    std::fs::write(app.dir.path().join("key.pem"), "not a key\n").unwrap();
    daemon.signal("HUP");
    let line = daemon
        .wait_log("TLS certificate not reloaded", 1, Duration::from_secs(10))
        .await;
    assert!(line.contains("server.tls.key"), "{line}");
    assert_eq!(
        get(&client_trusting(&new), &healthz).await.map(|a| a.0),
        Some(200)
    );
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn config_check_and_run_name_an_unusable_certificate_or_key() {
    let mut app = spawn_app().await;
    let dir = app.dir.path().to_path_buf();
    let (_, key) = make_cert(&dir, "cert.pem", "key.pem");
    make_cert(&dir, "other-cert.pem", "other-key.pem");
    with_server(&mut app, TLS);
    let check = |app: &TestApp| {
        let out = app.cli_env(&["config", "check"], &[], Duration::from_secs(20));
        let (stdout, stderr) = text(&out);
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(
                !stdout.contains(line) && !stderr.contains(line),
                "key material printed"
            );
        }
        (out.status.code(), stderr)
    };
    let (code, stderr) = check(&app);
    assert_eq!(code, Some(0), "{stderr}");

    let config = std::fs::read_to_string(app.config_path()).unwrap();
    let set = |cert: &str, key: &str| {
        let text = config.replace(
            TLS,
            &format!("tls = {{ cert = \"{cert}\", key = \"{key}\" }}"),
        );
        std::fs::write(app.config_path(), text).unwrap();
    };

    set("missing.pem", "key.pem");
    let (code, stderr) = check(&app);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("server.tls.cert: cannot read ") && stderr.contains("missing.pem"),
        "{stderr}"
    );
    // `run` refuses the same file before it starts anything.
    let out = run_binary(&app.config_path(), &["run"], &[], Duration::from_secs(20));
    let (_, run_stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{run_stderr}");
    assert!(run_stderr.contains("server.tls.cert"), "{run_stderr}");

    // The certificate given as the key: a key file with no key in it.
    set("cert.pem", "cert.pem");
    let (code, stderr) = check(&app);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("server.tls.key: ") && stderr.contains("cert.pem holds no private key"),
        "{stderr}"
    );

    // The key given as the certificate.
    set("key.pem", "key.pem");
    let (code, stderr) = check(&app);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("server.tls.cert: ") && stderr.contains("holds no certificate"),
        "{stderr}"
    );

    // Another certificate's key.
    set("cert.pem", "other-key.pem");
    let (code, stderr) = check(&app);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("server.tls.key: ") && stderr.contains("does not match the certificate"),
        "{stderr}"
    );

    // Keys that are not `cert` or `key` are refused by name.
    let text = config.replace(
        TLS,
        "tls = { cert = \"cert.pem\", key = \"key.pem\", ca = \"ca.pem\" }",
    );
    std::fs::write(app.config_path(), text).unwrap();
    let (code, stderr) = check(&app);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("server.tls.ca: unknown key (known here: cert, key)"),
        "{stderr}"
    );
}
