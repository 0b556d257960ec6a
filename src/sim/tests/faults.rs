//! Queued faults: statuses with documented bodies, `Retry-After`, delays, dropped connections,
//! malformed bodies, and faults limited to one repository.

use super::*;

#[tokio::test]
async fn fault_with_times_two_and_status_500_then_normal() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorStart,
        status: Some(500),
        times: 2,
        ..Fault::default()
    });
    for _ in 0..2 {
        let resp = start_mirror(&client, &base, Some(&token), "1", &json!({})).await;
        assert_eq!(resp.status(), 500);
        assert!(resp.headers().get("retry-after").is_none());
        assert_eq!(
            json_of(resp).await,
            json!({ "error_code": "CH.00500", "error_msg": "Internal Server Error" })
        );
    }
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "1", &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!(sim.count(Route::MirrorStart), 3);
    assert_eq!(sim.mirror_starts(1), 1);
    let statuses: Vec<u16> = sim
        .calls()
        .iter()
        .filter(|c| c.route == Route::MirrorStart)
        .map(|c| c.status)
        .collect();
    assert_eq!(statuses, vec![500, 500, 200]);
}

#[tokio::test]
async fn fault_is_applied_before_auth_and_uses_documented_bodies() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    sim.inject(Fault {
        route: Route::MirrorShow,
        status: Some(503),
        error_code: Some("CH.00503".to_string()),
        error_msg: Some("Service busy".to_string()),
        times: 1,
        ..Fault::default()
    });
    sim.inject(Fault {
        route: Route::MirrorShow,
        status: Some(404),
        times: 1,
        ..Fault::default()
    });
    let resp = show_mirror(&client, &base, None, "1").await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        json_of(resp).await,
        json!({ "error_code": "CH.00503", "error_msg": "Service busy" })
    );
    let resp = show_mirror(&client, &base, None, "1").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        json_of(resp).await,
        json!({ "error_code": "CH.004404", "error_msg": "Repository Not Found" })
    );
    // Faults used up: the real check answers.
    assert_eq!(show_mirror(&client, &base, None, "1").await.status(), 401);
}

#[tokio::test]
async fn fault_retry_after_sets_header() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    sim.inject(Fault {
        route: Route::IamToken,
        status: Some(429),
        retry_after: Some(7),
        times: 1,
        ..Fault::default()
    });
    let resp = post_token(&client, &base, &default_token_request()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(
        json_of(resp).await,
        json!({ "error_code": "CH.00429", "error_msg": "Too Many Requests" })
    );
    assert_eq!(
        post_token(&client, &base, &default_token_request())
            .await
            .status(),
        201
    );
    assert_eq!(sim.count(Route::IamToken), 2);
    assert_eq!(sim.issued_tokens().len(), 1);
}

#[tokio::test]
async fn fault_with_only_delay_serves_real_response_late() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorShow,
        delay_ms: Some(500),
        times: 1,
        ..Fault::default()
    });
    let t0 = Instant::now();
    let resp = show_mirror(&client, &base, Some(&token), "1").await;
    assert!(t0.elapsed() >= Duration::from_millis(500));
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(resp).await["repository_id"], 1);
    let t0 = Instant::now();
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "1")
            .await
            .status(),
        200
    );
    assert!(t0.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn fault_reset_gives_client_error_not_response() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorStart,
        reset: true,
        times: 1,
        ..Fault::default()
    });
    let result = client
        .post(format!("{base}/v4/repositories/1/remote-mirror"))
        .header("x-auth-token", &token)
        .json(&json!({}))
        .send()
        .await;
    let err = result.expect_err("a reset must not produce a response");
    assert!(!err.is_status(), "{err:?}");
    // The same client recovers on a new connection.
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "1", &json!({}))
            .await
            .status(),
        200
    );
    let starts: Vec<u16> = sim
        .calls()
        .iter()
        .filter(|c| c.route == Route::MirrorStart)
        .map(|c| c.status)
        .collect();
    assert_eq!(starts, vec![0, 200]);
    assert_eq!(sim.mirror_starts(1), 1);
}

/// Reads one HTTP/1.1 response with a Content-Length body; `None` on EOF or error.
async fn read_response(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&buf[..end + 4 + len]).to_string());
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn keep_alive_connection_serves_many_requests_until_a_reset_fault() {
    let (sim, base) = start(fast_config()).await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /v4/repositories/1/remote-mirror HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\r\n"
    );
    for _ in 0..3 {
        stream.write_all(request.as_bytes()).await.expect("write");
        let resp = read_response(&mut stream).await.expect("a response");
        assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
        assert!(resp.contains("DEV.00000003"));
    }
    sim.inject(Fault {
        route: Route::MirrorShow,
        reset: true,
        times: 1,
        ..Fault::default()
    });
    stream.write_all(request.as_bytes()).await.expect("write");
    // Not a single byte of a response: EOF or a reset.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
        .await
        .expect("the server closes the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(sim.count(Route::MirrorShow), 4);
}

#[tokio::test]
async fn fault_malformed_body_is_not_valid_json() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorStart,
        malformed: true,
        times: 1,
        ..Fault::default()
    });
    let resp = start_mirror(&client, &base, Some(&token), "1", &json!({})).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("complete body");
    assert!(!text.is_empty());
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    // A malformed token answer carries a token that does not work.
    sim.inject(Fault {
        route: Route::IamToken,
        malformed: true,
        times: 1,
        ..Fault::default()
    });
    let resp = post_token(&client, &base, &default_token_request()).await;
    assert_eq!(resp.status(), 201);
    let bogus = resp.headers()["x-subject-token"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(serde_json::from_str::<Value>(&resp.text().await.expect("body")).is_err());
    assert_eq!(
        show_mirror(&client, &base, Some(&bogus), "1")
            .await
            .status(),
        401
    );
    assert!(sim.issued_tokens().contains(&bogus));
}

#[tokio::test]
async fn fault_repository_id_filter_applies_only_to_that_repository() {
    let (sim, base) = start(fast_config()).await;
    let client = reqwest::Client::new();
    let token = get_token(&client, &base).await;
    sim.inject(Fault {
        route: Route::MirrorStart,
        repository_id: Some(5),
        status: Some(502),
        times: 0,
        ..Fault::default()
    });
    for _ in 0..3 {
        assert_eq!(
            start_mirror(&client, &base, Some(&token), "5", &json!({}))
                .await
                .status(),
            502
        );
        assert_eq!(
            start_mirror(&client, &base, Some(&token), "6", &json!({}))
                .await
                .status(),
            200
        );
    }
    // Other routes on the same repository are untouched.
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "5")
            .await
            .status(),
        200
    );
    sim.clear_faults();
    assert_eq!(
        start_mirror(&client, &base, Some(&token), "5", &json!({}))
            .await
            .status(),
        200
    );
    assert_eq!((sim.mirror_starts(5), sim.mirror_starts(6)), (1, 3));
}

#[tokio::test]
async fn latency_delays_every_answer_and_can_change_while_running() {
    let (_sim, base) = start(SimConfig {
        latency: Duration::from_millis(300),
        ..fast_config()
    })
    .await;
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    let token = get_token(&client, &base).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "the token call too"
    );
    let t0 = Instant::now();
    let resp = show_mirror(&client, &base, Some(&token), "1").await;
    assert_eq!(resp.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let set = client
        .put(format!("{base}/__sim/latency"))
        .body(r#"{"ms": 0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    let t0 = Instant::now();
    assert_eq!(
        show_mirror(&client, &base, Some(&token), "1")
            .await
            .status(),
        200
    );
    assert!(t0.elapsed() < Duration::from_millis(300));
    let bad = client
        .put(format!("{base}/__sim/latency"))
        .body(r#"{"ms": 99999999}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}
