//! `wharfctl simulate` against a server that cannot take its requests: a clear error after the
//! retry time (nobody listening), at once for a 4xx that retrying cannot change, never a silent
//! retry loop.

use std::process::Command;
use std::time::{Duration, Instant};

use wharf_testkit::LocalPg;

fn simulate(pg: &LocalPg, url: &str) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_wharfctl"))
        .args(["simulate", "--url", url, "--targetConn", &pg.url("postgres"), "--seconds", "1", "--retryFor", "2s"])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text, started.elapsed())
}

#[test]
fn nobody_listening_fails_after_the_retry_time_with_the_last_error() {
    let pg = LocalPg::start().unwrap();
    let port = wharf_testkit::free_port().unwrap();
    let (ok, text, took) = simulate(&pg, &format!("http://127.0.0.1:{port}"));
    assert!(!ok, "{text}");
    assert!(text.contains(&format!("retrying http://127.0.0.1:{port}/postgres/wharf_sim (for up to 2s)")), "{text}");
    assert!(text.contains("no 2xx from") && text.contains("Connection refused"), "{text}");
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_refusal_that_retrying_cannot_change_ends_the_run_at_once() {
    let pg = LocalPg::start().unwrap();
    // A plain HTTP server that answers every request 401, as an ingest with no key does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::Write;
            let mut stream = stream;
            // The whole request is read first: closing a socket with unread bytes sends a reset,
            // which the client would see instead of the 401.
            if read_request(&mut stream).is_err() {
                continue;
            }
            let body = "missing or invalid access token\n";
            let _ = write!(
                stream,
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let (ok, text, _) = simulate(&pg, &format!("http://127.0.0.1:{port}"));
    assert!(!ok, "{text}");
    assert!(text.contains("answered 401: missing or invalid access token"), "{text}");
    assert!(!text.contains("retrying"), "{text}");
}

/// Reads one HTTP/1.1 request with a `content-length` body (what the simulator sends).
fn read_request(stream: &mut std::net::TcpStream) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read};
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(|_| std::io::ErrorKind::InvalidData)?;
        }
    }
    reader.read_exact(&mut vec![0u8; length])
}
