//! Clients that try to tie the gateway up: bodies sent without a key, bodies
//! and headers sent slowly, more body bytes at once than the gateway keeps
//! memory for. Each is refused or cut off, quickly and with a clear answer.

use std::time::{Duration, Instant};

use gateway::server::ServerConfig;
use gateway::GatewayConfig;
use test_support::{Harness, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(h: &Harness) -> TcpStream {
    TcpStream::connect(h.url.trim_start_matches("http://"))
        .await
        .expect("gateway reachable")
}

/// Reads until the peer closes or `within` passes; what arrived.
async fn read_for(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
        if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn head(key: Option<&str>, length: usize) -> String {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n{auth}Content-Length: {length}\r\n\r\n"
    )
}

async fn harness(server: ServerConfig, gateway: GatewayConfig) -> Harness {
    Harness::start_with(Options {
        server,
        gateway,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_body_without_a_valid_key_is_refused_before_it_is_read() {
    let h = Harness::start().await;
    for key in [None, Some("mr_sk_wrongwrongwrongwrongwrongwrongwrongwrong")] {
        let mut stream = connect(&h).await;
        // Declares 32 MiB and sends none of it: the answer must not wait for it.
        stream
            .write_all(head(key, 32 << 20).as_bytes())
            .await
            .unwrap();
        let started = Instant::now();
        let answer = read_for(&mut stream, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("invalid_api_key"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let h = harness(
        ServerConfig {
            body_read_timeout_ms: 300,
            ..Default::default()
        },
        GatewayConfig::default(),
    )
    .await;
    let mut stream = connect(&h).await;
    stream
        .write_all(head(Some(&h.key), 100).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"model\": \"econ").await.unwrap();
    let answer = read_for(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test]
async fn half_sent_headers_and_idle_connections_are_closed() {
    let h = harness(
        ServerConfig {
            header_read_timeout_ms: 300,
            ..Default::default()
        },
        GatewayConfig::default(),
    )
    .await;
    let mut half = connect(&h).await;
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gat")
        .await
        .unwrap();
    let mut idle = connect(&h).await;
    let started = Instant::now();
    read_for(&mut half, Duration::from_secs(5)).await;
    read_for(&mut idle, Duration::from_secs(5)).await;
    let held = started.elapsed();
    assert!(held < Duration::from_secs(3), "held for {held:?}");
    // Closed: the next write or read fails or ends.
    let mut buf = [0u8; 1];
    let closed = match half.write_all(b"x: y\r\n\r\n").await {
        Err(_) => true,
        Ok(()) => matches!(half.read(&mut buf).await, Ok(0) | Err(_)),
    };
    assert!(closed);
}

#[tokio::test]
async fn bodies_beyond_the_memory_for_them_get_503_until_it_frees() {
    let h = harness(
        ServerConfig::default(),
        GatewayConfig {
            body_memory_bytes: 1 << 20,
            ..Default::default()
        },
    )
    .await;
    // One slow request holds 700 KB of the 1 MiB.
    let mut slow = connect(&h).await;
    slow.write_all(head(Some(&h.key), 700_000).as_bytes())
        .await
        .unwrap();
    slow.write_all(b"{\"model\": ").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let busy = h
        .http
        .post(format!("{}/v1/chat/completions", h.url))
        .bearer_auth(&h.key)
        .body(format!(
            "{{\"model\": \"economy\", \"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}",
            "x".repeat(500_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(crate::header(&busy, "retry-after"), "1");
    let body: serde_json::Value = busy.json().await.unwrap();
    assert_eq!(body["error"]["code"], "server_busy");
    // The slow client leaves; its share comes back.
    drop(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let small = h.chat(&crate::ask("economy", "hello")).await;
    assert_eq!(small.status(), 200);
}
