//! The Streamable HTTP transport (MCP 2025-03-26 and later): every message
//! is a POST to one URL with `Accept: application/json, text/event-stream`;
//! the server answers a request with one JSON message or an SSE stream of
//! messages ending with the answer, and a notification or response with 202.
//! The `Mcp-Session-Id` the server gives at `initialize` and the negotiated
//! `MCP-Protocol-Version` go with every later POST. Headers a manifest
//! names (such as `Authorization`) take their values from environment
//! variables, read when the transport is built and never recorded.

use super::{Failure, Incoming, Transport, MAX_MESSAGE_BYTES};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

/// The host of an MCP server's URL (lower case, an IPv6 address without its
/// brackets) and its port, or why the URL is not one a server may have:
/// `http` or `https` with a host.
pub fn url_host(url: &str) -> Result<(String, Option<u16>), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("url '{url}' is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("url '{url}' is not an http:// or https:// URL"));
    }
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("url '{url}' names no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_ascii_lowercase(), uri.port_u16()))
}

/// Whether a role's `hosts` let it reach `url`: they name its host, or its
/// host and port as `host:port`.
pub fn host_granted(hosts: &std::collections::BTreeSet<String>, url: &str) -> Result<bool, String> {
    let (host, port) = url_host(url)?;
    Ok(hosts.iter().any(|h| {
        let h = h.to_ascii_lowercase();
        h == host || port.is_some_and(|p| h == format!("{host}:{p}"))
    }))
}

/// How much of an HTTP error body an error shows.
const ERROR_BODY_BYTES: u64 = 500;

/// A server behind one URL.
pub struct HttpTransport {
    agent: ureq::Agent,
    url: String,
    headers: Vec<(String, String)>,
    session: Option<String>,
    version: Option<String>,
    queue: VecDeque<Incoming>,
}

impl HttpTransport {
    /// `headers` are sent with every POST; `timeout` bounds each one.
    pub fn new(url: &str, headers: Vec<(String, String)>, timeout: Duration) -> HttpTransport {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(concat!("jaros/", env!("CARGO_PKG_VERSION")))
            .build();
        HttpTransport {
            agent: ureq::Agent::new_with_config(config),
            url: url.to_string(),
            headers,
            session: None,
            version: None,
            queue: VecDeque::new(),
        }
    }
}

impl Transport for HttpTransport {
    fn send(&mut self, message: &Value, _deadline: Instant) -> Result<(), Failure> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream");
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(s) = &self.session {
            req = req.header("Mcp-Session-Id", s.as_str());
        }
        if let Some(v) = &self.version {
            req = req.header("MCP-Protocol-Version", v.as_str());
        }
        let mut resp = req
            .send(message.to_string().as_bytes())
            .map_err(|e| match e {
                ureq::Error::Timeout(_) => {
                    Failure::broken(format!("{}: no answer in time", self.url))
                }
                e => Failure::broken(format!("{}: {e}", self.url)),
            })?;
        if let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session = Some(s.to_string());
        }
        let status = resp.status().as_u16();
        if status == 202 {
            return Ok(());
        }
        if !(200..300).contains(&status) {
            let mut text = Vec::new();
            let _ = resp
                .body_mut()
                .as_reader()
                .take(ERROR_BODY_BYTES)
                .read_to_end(&mut text);
            return Err(Failure::broken(format!(
                "{} answered HTTP {status}: {}",
                self.url,
                String::from_utf8_lossy(&text).trim()
            )));
        }
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let reader = resp
            .body_mut()
            .with_config()
            .limit(MAX_MESSAGE_BYTES as u64)
            .reader();
        if sse {
            read_events(reader, &mut self.queue)
        } else {
            let mut bytes = Vec::new();
            BufReader::new(reader)
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::broken(format!("{}: reading the answer: {e}", self.url)))?;
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                self.queue.push_back(parse(&bytes));
            }
            Ok(())
        }
    }

    fn next(&mut self, _deadline: Instant) -> Result<Option<Incoming>, Failure> {
        match self.queue.pop_front() {
            Some(item) => Ok(Some(item)),
            None => Err(Failure::broken(format!(
                "{}: the server closed the answer without the response",
                self.url
            ))),
        }
    }

    fn negotiated(&mut self, version: &str) {
        // 2024-11-05 predates the header.
        if version != "2024-11-05" {
            self.version = Some(version.to_string());
        }
    }
}

fn parse(bytes: &[u8]) -> Incoming {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => Incoming::Message(v),
        Err(_) => Incoming::Garbage(String::from_utf8_lossy(bytes).trim().to_string()),
    }
}

/// Reads SSE events until one carries a response (a message with an `id`
/// and no `method`) or the stream ends.
fn read_events(reader: impl Read, queue: &mut VecDeque<Incoming>) -> Result<(), Failure> {
    let mut data = String::new();
    for line in BufReader::new(reader).lines() {
        let line = line.map_err(|e| Failure::broken(format!("reading the event stream: {e}")))?;
        if line.is_empty() {
            if !data.is_empty() {
                let item = parse(data.as_bytes());
                let is_answer = matches!(&item, Incoming::Message(m)
                    if m.get("method").is_none() && m.get("id").is_some());
                queue.push_back(item);
                data.clear();
                if is_answer {
                    return Ok(());
                }
            }
        } else if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    if !data.is_empty() {
        queue.push_back(parse(data.as_bytes()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_host_is_granted_by_name_or_by_name_and_port() {
        let hosts = |h: &[&str]| h.iter().map(|s| s.to_string()).collect();
        let url = "http://API.example.com:8080/mcp";
        assert!(host_granted(&hosts(&["api.example.com"]), url).unwrap());
        assert!(host_granted(&hosts(&["api.example.com:8080"]), url).unwrap());
        assert!(!host_granted(&hosts(&["api.example.com:9090"]), url).unwrap());
        assert!(!host_granted(&hosts(&["example.com"]), url).unwrap());
        assert!(!host_granted(&hosts(&[]), url).unwrap());
        assert!(host_granted(&hosts(&["::1"]), "http://[::1]:1/mcp").unwrap());
        assert!(url_host("file:///etc/passwd").is_err());
        assert!(url_host("not a url").is_err());
    }
}
