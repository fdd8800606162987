//! Resource probes against a real `modelrouter gateway` process: anonymous
//! clients sending large bodies must not grow its memory, and slow clients
//! must not hold connections past the configured timeouts. The bounds are
//! loose (this machine is shared); the figures go to the README.

use std::time::{Duration, Instant};

use test_support::deployment::{url_in, Deployment, KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_modelrouter");

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends a 32 MiB chat body without a key; the status line it got.
async fn anonymous_upload(addr: String) -> String {
    let Ok(mut stream) = TcpStream::connect(&addr).await else {
        return String::new();
    };
    let body_len = 32usize << 20;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let chunk = vec![b'a'; 1 << 20];
    let (mut reader, mut writer) = stream.into_split();
    let sender = tokio::spawn(async move {
        for _ in 0..32 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut answer))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    sender.abort();
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn anonymous_large_bodies_and_slow_clients_are_bounded() {
    let deployment = Deployment::new(BIN, "", "");
    let config = deployment.dir.0.join("probe.toml");
    std::fs::write(
        &config,
        "[server]\nheader_read_timeout_ms = 1000\nbody_read_timeout_ms = 2000\n",
    )
    .unwrap();
    let mut command = deployment.command(&["gateway"], "gw");
    command
        .env_remove("MODELROUTER_EVENT_LOG")
        .env_remove("MODELROUTER_DATABASE_URL")
        .env("MODELROUTER_CONFIG", &config)
        .env("MODELROUTER_LISTEN", "127.0.0.1:0")
        .env("MODELROUTER_BOOTSTRAP_KEY", KEY)
        .env("OPENAI_API_KEY", "unused");
    let (mut gateway, line) = deployment.start(command, "listening").await;
    let url = url_in(&line);
    let addr = url.trim_start_matches("http://").to_owned();
    let pid = gateway.id().expect("pid");
    let before = memory_kib(pid, "VmRSS");

    let uploads: Vec<_> = (0..48)
        .map(|_| tokio::spawn(anonymous_upload(addr.clone())))
        .collect();
    let mut statuses = Vec::new();
    for upload in uploads {
        statuses.push(upload.await.unwrap());
    }
    let peak = memory_kib(pid, "VmHWM");
    eprintln!(
        "48 anonymous 32 MiB uploads: RSS before {} MiB, peak {} MiB; answers: {:?}",
        before / 1024,
        peak / 1024,
        statuses.iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        statuses.iter().all(|s| s.starts_with("HTTP/1.1 401")),
        "{statuses:?}"
    );
    assert!(
        peak < before + 150 * 1024,
        "peak {peak} KiB from {before} KiB"
    );

    // Half-sent headers, an idle connection, and a key-holder's body sent
    // slowly: each cut off at its timeout (1 s, 1 s, 2 s), not held.
    let started = Instant::now();
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 1000\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let held = |mut stream: TcpStream| async move {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf)).await;
        (
            started.elapsed(),
            String::from_utf8_lossy(&buf).into_owned(),
        )
    };
    let ((half_for, _), (slow_for, slow_answer)) = tokio::join!(held(half), held(slow));
    eprintln!("half-sent headers held {half_for:?}; slow body held {slow_for:?}");
    assert!(half_for < Duration::from_secs(5), "{half_for:?}");
    assert!(slow_for < Duration::from_secs(6), "{slow_for:?}");
    assert!(slow_answer.starts_with("HTTP/1.1 408"), "{slow_answer}");
    let _ = gateway.start_kill();
    let _ = gateway.wait().await;
}
