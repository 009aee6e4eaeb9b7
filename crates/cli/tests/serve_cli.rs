//! `tokenscale serve` as a process: it answers, SIGTERM lets the running answer finish and the
//! process exit cleanly, a budget the model was not trained with is warned about once (not once
//! per request), and a bad option is a one-line error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};

fn model() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/tiny-imgque").to_string()
}

/// Sends a request with `Connection: close`; the socket, after the body is written.
fn send(addr: &str, body: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).unwrap();
    write!(socket, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    socket
}

/// The whole answer to a request.
fn answer(addr: &str, body: &str) -> String {
    let mut text = String::new();
    send(addr, body).read_to_string(&mut text).unwrap();
    text
}

/// Starts `tokenscale serve` on a free port; the process, its standard error (read up to the
/// line saying where it listens) and that address.
// The caller owns the child and kills and waits for it (clippy cannot see that across the return).
#[allow(clippy::zombie_processes)]
fn spawn_server(extra: &[&str]) -> (Child, BufReader<ChildStderr>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenscale"))
        .args(["serve", "--model", &model(), "--port", "0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().strip_prefix("listening on http://") {
            let addr = rest.split_whitespace().next().unwrap().to_string();
            return (child, stderr, addr);
        }
        line.clear();
    }
    panic!("the server never said where it listens");
}

/// Asks the server to stop (it finishes the running requests first).
fn sigterm(child: &Child) {
    // SAFETY: sends a signal to the child process this test started.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
}

/// The exit status and the rest of standard error, once the process has ended.
fn finish(
    mut child: Child,
    mut stderr: BufReader<ChildStderr>,
) -> (std::process::ExitStatus, String) {
    let status = child.wait().unwrap();
    let mut tail = String::new();
    stderr.read_to_string(&mut tail).unwrap();
    (status, tail)
}

#[test]
fn serves_and_stops_gracefully_on_sigterm() {
    let (child, stderr, addr) = spawn_server(&[]);
    let plain =
        answer(&addr, r#"{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}"#);
    assert!(plain.starts_with("HTTP/1.1 200") && plain.contains("chat.completion"), "{plain}");
    // A long streamed answer is running when SIGTERM comes: it still ends with [DONE].
    let mut running = send(
        &addr,
        r#"{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 300, "ignore_eos": true, "stream": true}"#,
    );
    let mut first = [0u8; 256];
    assert!(running.read(&mut first).unwrap() > 0);
    sigterm(&child);
    let mut rest = String::new();
    running.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "the running answer was cut: {rest}");
    let (status, tail) = finish(child, stderr);
    assert!(status.success(), "exit {status}: {tail}");
    assert!(tail.contains("stopped"), "{tail}");
}

#[test]
fn an_untrained_budget_is_warned_about_once_per_distinct_value() {
    let images = concat!(env!("CARGO_MANIFEST_DIR"), "/../model/tests/fixtures/imgque");
    let (child, stderr, addr) = spawn_server(&["--allow-files", images]);
    let request = |vision_tokens: Option<u64>| {
        let mut body = serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("{images}/small.png")}}, {"type": "text", "text": "What is it?"}]}],
            "max_tokens": 2, "temperature": 0});
        if let Some(n) = vision_tokens {
            body["vision_tokens"] = n.into();
        }
        body.to_string()
    };
    // The checkpoint was trained with n_l = n_s = 64: 16 twice, 32 once, the trained budget once.
    for n in [Some(16), Some(16), Some(32), None, Some(16)] {
        let text = answer(&addr, &request(n));
        assert!(text.starts_with("HTTP/1.1 200"), "vision_tokens {n:?}: {text}");
    }
    let mut metrics = String::new();
    let mut socket = TcpStream::connect(&addr).unwrap();
    write!(socket, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    socket.read_to_string(&mut metrics).unwrap();
    assert!(metrics.contains("tokenscale_untrained_budget_requests_total 4"), "{metrics}");
    sigterm(&child);
    let (status, log) = finish(child, stderr);
    assert!(status.success(), "exit {status}: {log}");
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("trained with")).collect();
    assert_eq!(warnings.len(), 2, "one warning per distinct budget:\n{log}");
    assert!(warnings[0].contains("running with n_l = 16, n_s = 16"), "{log}");
    assert!(warnings[1].contains("running with n_l = 32, n_s = 32"), "{log}");
}

#[test]
fn a_bad_option_is_a_one_line_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_tokenscale"))
        .args(["serve", "--model", &model(), "--allow-files", "/nonexistent/dir", "--port", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error: ") && last.contains("/nonexistent/dir"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
