//! Plain HTTP for tests: GET from the agent's listener, read one request's body.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

/// One HTTP request's body, read until Content-Length is complete (empty when the request
/// never completes within the read timeout).
pub fn read_body(stream: &mut TcpStream) -> String {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut request = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .and_then(|v| v.trim().parse::<usize>().ok())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return body.to_string();
            }
        }
    }
    String::new()
}

/// GET `path` from `address` (HTTP/1.1, connection closed); the body of a 200 response.
pub fn get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the agent");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}
