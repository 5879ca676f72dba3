//! Raw-socket requests: bytes written as given (an HTTP client would normalise the path, merge
//! headers or refuse to send what these tests send) and the answer parsed by hand.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed answer.
#[derive(Debug)]
pub struct RawResp {
    pub status: u16,
    /// Lower-case names; repeated fields joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// Everything received, for failure messages.
    pub text: String,
}

impl RawResp {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

/// Writes `request` on a new connection and reads until the peer closes (at most 10 s).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    parse(&buf)
}

/// Parses one response (head plus the rest as its body; chunked bodies are decoded).
pub fn parse(buf: &[u8]) -> RawResp {
    let text = String::from_utf8_lossy(buf).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers
                .entry(k.trim().to_ascii_lowercase())
                .and_modify(|e| {
                    e.push_str(", ");
                    e.push_str(v.trim());
                })
                .or_insert_with(|| v.trim().to_string());
        }
    }
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.contains("chunked"))
    {
        dechunk(rest)
    } else {
        match headers
            .get("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            Some(n) if n <= rest.len() => rest[..n].to_string(),
            _ => rest.to_string(),
        }
    };
    RawResp {
        status,
        headers,
        body,
        text: text.clone(),
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}
