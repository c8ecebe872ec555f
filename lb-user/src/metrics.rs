//! The Prometheus endpoint (`daemon.metrics`): the text exposition format
//! (version 0.0.4) over a minimal HTTP/1.1 server, one response per
//! connection. Every scrape asks the main loop, which reads the maps.

use std::{fmt::Write as _, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};

use crate::{config::Config, control::StatusReport, layout::Layout, loader::Dataplane, sessions};

/// The longest request head read.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A client that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {address}: {source}")]
pub struct BindError {
    address: SocketAddr,
    source: std::io::Error,
}

pub struct Endpoint {
    listener: TcpListener,
}

impl Endpoint {
    pub async fn bind(address: SocketAddr) -> Result<Endpoint, BindError> {
        let listener = TcpListener::bind(address).await.map_err(|source| BindError { address, source })?;
        Ok(Endpoint { listener })
    }

    /// Answers scrapes until the daemon stops; each page comes from the main
    /// loop through `scrapes`.
    pub async fn serve(&self, scrapes: mpsc::Sender<oneshot::Sender<String>>) {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let scrapes = scrapes.clone();
            tokio::spawn(async move {
                if let Err(e) = respond(stream, scrapes).await {
                    tracing::debug!(error = %e, "metrics client");
                }
            });
        }
    }
}

async fn respond(mut stream: TcpStream, scrapes: mpsc::Sender<oneshot::Sender<String>>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
            Ok(read) => read?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST_HEAD {
            return reply(&mut stream, "431 Request Header Fields Too Large", "text/plain", "request head too long\n")
                .await;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return reply(&mut stream, "405 Method Not Allowed", "text/plain", "GET /metrics\n").await;
    }
    if path != "/metrics" && !path.starts_with("/metrics?") {
        return reply(&mut stream, "404 Not Found", "text/plain", "the metrics are at /metrics\n").await;
    }
    let (tx, rx) = oneshot::channel();
    let page = if scrapes.send(tx).await.is_ok() { rx.await.ok() } else { None };
    match page {
        Some(page) => reply(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &page).await,
        None => reply(&mut stream, "503 Service Unavailable", "text/plain", "the daemon is shutting down\n").await,
    }
}

async fn reply(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The page: packet counters by reason, backends (health, state, active and
/// new connections), persistence per farm and kind, the session table.
pub fn render(status: &StatusReport, dataplane: &Dataplane, config: &Config, layout: &Layout) -> String {
    let mut page = Page::default();
    page.family("tether_packets_total", "counter", "Packets the XDP program handled, by the reason it gives.");
    for (reason, packets) in &status.counters {
        page.sample("tether_packets_total", &[("reason", reason)], *packets as f64);
    }
    page.family("tether_flow_table_entries", "gauge", "Flow-table entries (two per connection).");
    page.sample("tether_flow_table_entries", &[], status.flow_entries as f64);

    page.family("tether_backend_up", "gauge", "1 if the backend's health checks pass (always 1 without checks).");
    for (farm, b) in backends(status) {
        page.sample("tether_backend_up", &[("farm", farm), ("backend", &b.name)], (b.health == "up") as u8 as f64);
    }
    page.family("tether_backend_state", "gauge", "The backend's operator state: 1 for the state it is in.");
    for (farm, b) in backends(status) {
        for state in ["active", "draining", "disabled"] {
            let labels = [("farm", farm), ("backend", b.name.as_str()), ("state", state)];
            page.sample("tether_backend_state", &labels, (b.state == state) as u8 as f64);
        }
    }
    page.family("tether_backend_active_connections", "gauge", "Connections to the backend at the last flow sweep.");
    for (farm, b) in backends(status) {
        page.sample(
            "tether_backend_active_connections",
            &[("farm", farm), ("backend", &b.name)],
            b.active_flows as f64,
        );
    }
    page.family(
        "tether_backend_connections_total",
        "counter",
        "Connections bound to the backend since the data path was loaded.",
    );
    for (farm, b) in backends(status) {
        page.sample("tether_backend_connections_total", &[("farm", farm), ("backend", &b.name)], b.new_flows as f64);
    }
    persistence(&mut page, dataplane, config, layout);
    page.text
}

fn backends(status: &StatusReport) -> impl Iterator<Item = (&str, &crate::control::BackendStatus)> {
    status.farms.iter().flat_map(|f| f.backends.iter().map(move |b| (f.name.as_str(), b)))
}

fn persistence(page: &mut Page, dataplane: &Dataplane, config: &Config, layout: &Layout) {
    let Ok(pinned) = sessions::Pinned::open(dataplane.pin_dir()) else { return };
    let (Ok(entries), Ok(capacity)) = (pinned.entries(), pinned.capacity()) else { return };
    let now = crate::loader::monotonic_ns();
    page.family("tether_session_table_entries", "gauge", "Learned persistence entries, all farms.");
    page.sample("tether_session_table_entries", &[], entries.len() as f64);
    page.family("tether_session_table_capacity", "gauge", "Entries the persistence table holds at most.");
    page.sample("tether_session_table_capacity", &[], f64::from(capacity));
    let oldest = entries.iter().map(|(_, e)| now.saturating_sub(e.last_used_ns)).max().unwrap_or(0);
    page.family(
        "tether_session_oldest_entry_age_seconds",
        "gauge",
        "Time since the least recently used entry was used.",
    );
    page.sample("tether_session_oldest_entry_age_seconds", &[], oldest as f64 / 1e9);

    let families = [
        ("tether_persistence_lookups_total", "ClientHellos looked up by this kind."),
        ("tether_persistence_hits_total", "Lookups that chose the connection's backend."),
        ("tether_persistence_misses_total", "Lookups that did not."),
        ("tether_persistence_learns_total", "Entries learned or refreshed."),
        ("tether_persistence_expiries_total", "Entries found or swept past the farm's session_timeout."),
        ("tether_persistence_evictions_total", "Entries the full table pushed out."),
    ];
    let mut rows = Vec::new();
    for (i, farm) in config.farms.iter().enumerate() {
        let farm_id = layout.farm(i);
        for kind in &farm.persistence {
            let kind = sessions::kind_of(*kind);
            let Ok(c) = pinned.counters(farm_id, kind) else { continue };
            let live = entries.iter().filter(|(k, _)| k.farm_id == farm_id && k.kind == kind as u8).count();
            let values = [c.xdp.lookups, c.xdp.hits, c.misses(), c.xdp.learns, c.expiries(), c.evictions(live as u64)];
            rows.push((farm.name.as_str(), sessions::kind_name(kind as u8), values));
        }
    }
    for (i, (name, help)) in families.iter().enumerate() {
        page.family(name, "counter", help);
        for (farm, kind, values) in &rows {
            page.sample(name, &[("farm", farm), ("kind", kind)], values[i] as f64);
        }
    }
}

/// A page being written.
#[derive(Default)]
struct Page {
    text: String,
}

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// A label value as the text format writes it: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_written_in_the_text_format() {
        let mut page = Page::default();
        page.family("tether_x_total", "counter", "Things.");
        page.sample("tether_x_total", &[("farm", "we\"b"), ("backend", "b0")], 3.0);
        page.sample("tether_x_total", &[], 0.5);
        assert_eq!(
            page.text,
            "# HELP tether_x_total Things.\n# TYPE tether_x_total counter\n\
             tether_x_total{farm=\"we\\\"b\",backend=\"b0\"} 3\ntether_x_total 0.5\n"
        );
    }
}
