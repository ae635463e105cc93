//! Hostile clients: slow headers, stalled bodies, oversized heads, too many connections. Each is
//! cut off while everyone else keeps being served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TOKEN, Wafer, get, guest};

fn addr(wafer: &Wafer) -> String {
    wafer.url.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `limit` passes); returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_and_oversized_requests_are_cut_off() {
    let wafer = Wafer::start_with(&["--header-timeout", "1s", "--body-timeout", "1s"]);
    wafer.deploy_ok("hello", &guest("hello"), "").await;

    // Headers that never finish: the connection is closed after the header timeout.
    let mut slow = TcpStream::connect(addr(&wafer)).await.unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        get(&wafer.url("/hello")).await.0,
        200,
        "others are served meanwhile"
    );
    let answer = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(answer.is_some(), "the slow client was not cut off");
    assert!(started.elapsed() < Duration::from_secs(4));

    // A body that stalls: the upload fails after the body timeout.
    let mut stalled = TcpStream::connect(addr(&wafer)).await.unwrap();
    let head = format!(
        "PUT /_wafer/v1/functions/stalled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: 100000\r\n\r\n--XX\r\n"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    let answer = answer.expect("the stalled upload was not cut off");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("sent nothing"), "{answer}");

    // A request head over 64 KiB is refused.
    let mut huge = TcpStream::connect(addr(&wafer)).await.unwrap();
    let request = format!(
        "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let _ = huge.write_all(request.as_bytes()).await;
    let answer = read_until_closed(&mut huge, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_others_keep_working() {
    let wafer = Wafer::start_with(&["--max-connections", "4"]);
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    // Four idle connections take every slot. The deploy's own connection may still be closing
    // on a busy machine, so a held connection that was refused (closed at once) is replaced.
    let mut held = Vec::new();
    while held.len() < 4 {
        let mut stream = TcpStream::connect(addr(&wafer)).await.unwrap();
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await {
            Err(_elapsed) => held.push(stream),
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut fifth = TcpStream::connect(addr(&wafer)).await.unwrap();
    let _ = fifth
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut fifth, Duration::from_secs(3)).await;
    assert_eq!(
        answer.as_deref(),
        Some(""),
        "the fifth connection is closed unanswered"
    );
    // One slot frees up: service resumes.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
}
