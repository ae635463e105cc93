//! Hostile clients: slow headers, stalled bodies, oversized heads, too many connections. Each is
//! cut off while everyone else keeps being served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TOKEN, Wafer, get, guest, http};

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
    assert_eq!(
        get(&wafer.url("/hello")).await.0,
        200,
        "others are served meanwhile"
    );
    let answer = read_until_closed(&mut slow, Duration::from_secs(30)).await;
    assert!(answer.is_some(), "the slow client was not cut off");

    // A body that stalls: the upload fails after the body timeout.
    let mut stalled = TcpStream::connect(addr(&wafer)).await.unwrap();
    let head = format!(
        "PUT /_wafer/v1/functions/stalled HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: multipart/form-data; boundary=XX\r\nContent-Length: 100000\r\n\r\n--XX\r\n"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stalled, Duration::from_secs(30)).await;
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
    let answer = read_until_closed(&mut huge, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(get(&wafer.url("/hello")).await.0, 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_others_keep_working() {
    let wafer = Wafer::start_with(&["--max-connections", "4"]);
    wafer.deploy_ok("hello", &guest("hello"), "").await;
    // Four connections take every slot. Each is proven accepted by a request answered on it
    // (a connection over the limit is closed unanswered); it then stays open, idle.
    let mut held = Vec::new();
    while held.len() < 4 {
        let mut stream = TcpStream::connect(addr(&wafer)).await.unwrap();
        let answered = async {
            stream
                .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .ok()?;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).await.ok()? == 0 {
                    return None;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })?
                .parse()
                .ok()?;
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body).await.ok()?;
            head.starts_with("HTTP/1.1 200").then_some(())
        };
        match tokio::time::timeout(Duration::from_secs(30), answered).await {
            Ok(Some(())) => held.push(stream),
            // Refused while an earlier connection (the deploy's) was still closing: try again.
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => panic!("no answer on a connection within the limit"),
        }
    }
    let mut fifth = TcpStream::connect(addr(&wafer)).await.unwrap();
    let _ = fifth
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = read_until_closed(&mut fifth, Duration::from_secs(30)).await;
    assert_eq!(
        answer.as_deref(),
        Some(""),
        "the fifth connection is closed unanswered"
    );
    // One slot frees up once the server has seen that connection close: service resumes.
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match http().get(wafer.url("/hello")).send().await {
            Ok(response) => {
                assert_eq!(response.status(), 200);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never served again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
