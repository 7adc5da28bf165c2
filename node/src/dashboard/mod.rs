//! The node's HTTP side: the dashboard (a web page, its JSON API) and the
//! Prometheus text, on `--dashboard-addr`; Prometheus alone on
//! `--metrics-export-port`.
//!
//! - `GET /`, `/app.js`, `/style.css`: the page, built into the binary
//!   (no CDN: it works offline).
//! - `GET /api/nodes|tasks|actors|objects|events|jobs`: `{"rows",
//!   "missing"}`, the whole cluster's, from the core (which asks the other
//!   nodes for the kinds that live on each node).
//! - `GET /metrics`: the node's gauges and its clients' metrics.
//!
//! On a loopback address anyone on this machine may read it, as the client
//! socket. On any other address, the API and metrics need the token
//! derived from the cluster key (`raynode dashboard-token`), as the cookie
//! `raynode_token` or an `Authorization: Bearer` header; the page itself
//! shows a login form until then.

use crate::core::Event;
use raynode_proto::InfoKind;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// Longest request head read.
const MAX_REQUEST_BYTES: usize = 8192;
/// Requests served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;
/// Longest a request may take to arrive, and its answer to leave.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the core may take to answer (a cluster query waits up to
/// `core::state::PEER_TIMEOUT` for each other node, all at once).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server offers.
#[derive(Clone)]
pub struct Site {
    /// The page and its API (else only `/metrics`).
    pub ui: bool,
    /// The token requests must carry (on a non-loopback address).
    pub token: Option<String>,
}

/// Serves `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, core: mpsc::Sender<Event>, site: Site) {
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!("dashboard: accept failed: {e}");
                continue;
            }
        };
        let (core, site) = (core.clone(), site.clone());
        tokio::spawn(async move {
            let _permit = permit;
            answer(stream, &core, &site).await;
        });
    }
}

struct Response {
    status: &'static str,
    kind: &'static str,
    body: String,
}

impl Response {
    fn ok(kind: &'static str, body: impl Into<String>) -> Response {
        Response {
            status: "200 OK",
            kind,
            body: body.into(),
        }
    }

    fn error(status: &'static str, message: &str) -> Response {
        Response {
            status,
            kind: "application/json",
            body: serde_json::json!({ "error": message }).to_string(),
        }
    }
}

async fn answer(mut stream: TcpStream, core: &mpsc::Sender<Event>, site: &Site) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(IO_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() || head.is_empty() {
        return;
    }
    let head = String::from_utf8_lossy(&head);
    let response = route(&head, core, site).await;
    let Some(response) = response else { return };
    let reply = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nDate: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n{}",
        response.status,
        response.kind,
        response.body.len(),
        http_date(std::time::SystemTime::now()),
        response.body
    );
    let _ = tokio::time::timeout(IO_TIMEOUT, stream.write_all(reply.as_bytes())).await;
}

/// The answer to one request; `None` when the core is gone.
async fn route(head: &str, core: &mpsc::Sender<Event>, site: &Site) -> Option<Response> {
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or("/"),
    );
    let path = target.split('?').next().unwrap_or("/");
    if method != "GET" {
        return Some(Response::error(
            "405 Method Not Allowed",
            "only GET is served",
        ));
    }
    let page = match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "/app.js" => Some(("text/javascript; charset=utf-8", APP_JS)),
        "/style.css" => Some(("text/css; charset=utf-8", STYLE_CSS)),
        _ => None,
    };
    if let Some((kind, body)) = page.filter(|_| site.ui) {
        return Some(Response::ok(kind, body));
    }
    if let Some(token) = &site.token {
        if !carries_token(head, token) {
            return Some(Response::error(
                "401 Unauthorized",
                "this dashboard needs the token `raynode dashboard-token` prints",
            ));
        }
    }
    if path == "/metrics" {
        let (tx, rx) = oneshot::channel();
        core.send(Event::Scrape(tx)).await.ok()?;
        let text = tokio::time::timeout(ANSWER_TIMEOUT, rx).await.ok()?.ok()?;
        return Some(Response::ok("text/plain; version=0.0.4", text));
    }
    let what = path
        .strip_prefix("/api/")
        .filter(|_| site.ui)
        .and_then(|name| match name {
            "nodes" => Some(InfoKind::NodeStats),
            "tasks" => Some(InfoKind::Tasks),
            "actors" => Some(InfoKind::Actors),
            "objects" => Some(InfoKind::Objects),
            "events" => Some(InfoKind::Events),
            "jobs" => Some(InfoKind::Jobs),
            _ => None,
        });
    let Some(what) = what else {
        let hint = if site.ui {
            "not found: the page is at /, its API at /api/nodes|tasks|actors|objects|events|jobs, metrics at /metrics"
        } else {
            "not found: try GET /metrics"
        };
        return Some(Response::error("404 Not Found", hint));
    };
    let (tx, rx) = oneshot::channel();
    core.send(Event::Query { what, reply: tx }).await.ok()?;
    let json = tokio::time::timeout(ANSWER_TIMEOUT, rx).await.ok()?.ok()?;
    // Kinds answered from this node's replica come as bare rows.
    let json = if matches!(what, InfoKind::Events | InfoKind::Jobs) {
        format!("{{\"rows\":{json},\"missing\":[]}}")
    } else {
        json
    };
    Some(Response::ok("application/json", json))
}

/// Whether the request carries `token`, as the `raynode_token` cookie or a
/// bearer token (compared in constant time).
fn carries_token(head: &str, token: &str) -> bool {
    let same = |given: &str| {
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    };
    head.lines().skip(1).any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("cookie") {
            value
                .split(';')
                .any(|c| c.trim().strip_prefix("raynode_token=").is_some_and(&same))
        } else if name.eq_ignore_ascii_case("authorization") {
            value
                .strip_prefix("Bearer ")
                .is_some_and(|v| same(v.trim()))
        } else {
            false
        }
    })
}

/// A time (ms since the epoch) as `YYYY-MM-DD HH:MM:SS.mmm`, in UTC.
pub fn iso_time_ms(ms: u64) -> String {
    let (year, month, day, h, m, s) = civil(ms / 1000);
    format!(
        "{year}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{:03}",
        ms % 1000
    )
}

/// An HTTP date (RFC 9110's IMF-fixdate), in UTC.
fn http_date(time: std::time::SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (year, month, day, h, m, s) = civil(secs);
    format!(
        "{}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        DAYS[(secs / 86_400 % 7) as usize],
        MONTHS[(month - 1) as usize]
    )
}

/// Seconds since the epoch as (year, month, day, hour, minute, second), UTC.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    // Days to a civil date (Howard Hinnant's algorithm), from 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, h, m, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_imf_fixdates() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_795_694_400);
        assert_eq!(http_date(t), "Thu, 26 Nov 2026 12:00:00 GMT");
        assert_eq!(
            http_date(std::time::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(iso_time_ms(1_795_694_400_123), "2026-11-26 12:00:00.123");
    }

    #[test]
    fn the_token_comes_as_a_cookie_or_a_bearer() {
        let token = "abc123";
        let ask = |header: &str| {
            carries_token(
                &format!("GET /api/nodes HTTP/1.1\r\n{header}\r\n\r\n"),
                token,
            )
        };
        assert!(ask("Cookie: theme=dark; raynode_token=abc123"));
        assert!(ask("authorization: Bearer abc123"));
        assert!(!ask("Cookie: raynode_token=abc124"));
        assert!(!ask("Cookie: raynode_token=abc1234"));
        assert!(!ask("X-Token: abc123"));
    }
}
