//! `tokenscale serve` as a process: it answers, SIGTERM lets the running answer finish and the
//! process exit cleanly, and a bad option is a one-line error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn model() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/tiny-imgque").to_string()
}

/// Sends a request with `Connection: close`; the socket, after the body is written.
fn send(addr: &str, body: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).unwrap();
    write!(socket, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    socket
}

#[test]
fn serves_and_stops_gracefully_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenscale"))
        .args(["serve", "--model", &model(), "--port", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().strip_prefix("listening on http://") {
            addr = rest.split_whitespace().next().unwrap().to_string();
            break;
        }
        line.clear();
    }
    assert!(!addr.is_empty(), "the server never said where it listens");
    let mut plain = String::new();
    send(&addr, r#"{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}"#).read_to_string(&mut plain).unwrap();
    assert!(plain.starts_with("HTTP/1.1 200") && plain.contains("chat.completion"), "{plain}");
    // A long streamed answer is running when SIGTERM comes: it still ends with [DONE].
    let mut running = send(&addr, r#"{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 300, "ignore_eos": true, "stream": true}"#);
    let mut first = [0u8; 256];
    assert!(running.read(&mut first).unwrap() > 0);
    // SAFETY: sends a signal to the child process this test started.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let mut rest = String::new();
    running.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "the running answer was cut: {rest}");
    let status = child.wait().unwrap();
    let mut tail = String::new();
    stderr.read_to_string(&mut tail).unwrap();
    assert!(status.success(), "exit {status}: {tail}");
    assert!(tail.contains("stopped"), "{tail}");
}

#[test]
fn a_bad_option_is_a_one_line_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_tokenscale")).args(["serve", "--model", &model(), "--allow-files", "/nonexistent/dir", "--port", "0"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && last.contains("/nonexistent/dir"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
