//! The control socket: how `tether status` and `tether backend ...`
//! talk to a running daemon. A Unix stream socket at
//! `daemon.control_socket` (mode 0600: root's); one request per connection,
//! a JSON line each way. The daemon's main loop answers every request, so
//! all map writes stay in one task.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    net::UnixListener,
    sync::{mpsc, oneshot},
};

/// The longest request line the daemon reads.
const MAX_REQUEST: usize = 64 * 1024;
/// How long a client waits for the daemon's answer (a reload recomputes
/// Maglev tables, which takes a while for many farms).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    Status,
    /// Sets a backend's operator state: `active`, `draining` or `disabled`.
    SetBackendState {
        farm: String,
        backend: String,
        state: String,
    },
    /// Reads the configuration file again and applies it (as SIGHUP does).
    Reload,
    /// The ids the data path knows farms and backends by (`tether sessions`).
    Layout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    Status(StatusReport),
    Layout(LayoutReport),
    Done { message: String },
    Error { message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub instance: String,
    pub config: String,
    pub pin_dir: String,
    /// Flow-table entries (two per connection).
    pub flow_entries: u64,
    pub vips: Vec<VipStatus>,
    pub farms: Vec<FarmStatus>,
    /// Packets per data-path reason.
    pub counters: Vec<(String, u64)>,
}

/// Farm and backend ids, by name, as the running daemon laid them out
/// (`layout::Layout`): after a reload they need not follow config order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutReport {
    pub farms: Vec<FarmIds>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FarmIds {
    pub name: String,
    pub id: u32,
    /// (backend name, id).
    pub backends: Vec<(String, u32)>,
}

impl LayoutReport {
    pub fn farm_id(&self, name: &str) -> Option<u32> {
        self.farms.iter().find(|f| f.name == name).map(|f| f.id)
    }

    pub fn farm_name(&self, id: u32) -> Option<&str> {
        self.farms.iter().find(|f| f.id == id).map(|f| f.name.as_str())
    }

    pub fn backend_name(&self, id: u32) -> Option<&str> {
        self.farms.iter().flat_map(|f| &f.backends).find(|(_, b)| *b == id).map(|(n, _)| n.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub protocol: String,
    pub farm: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FarmStatus {
    pub name: String,
    pub algorithm: String,
    /// The health check's kind (`tcp`, `tls`), if the farm has one.
    pub health_check: Option<String>,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub name: String,
    pub address: String,
    pub weight: u32,
    /// The operator's state: `active`, `draining`, `disabled`.
    pub state: String,
    /// `up` or `down`.
    pub health: String,
    /// Whether it takes new connections now.
    pub takes_new: bool,
    /// Connections at the last sweep of the flow table.
    pub active_flows: u64,
    /// Connections bound to it since the data path was loaded.
    pub new_flows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "cannot reach the tether daemon at {}: {source}; is `tether run` running with this configuration?",
        path.display()
    )]
    NotRunning { path: PathBuf, source: std::io::Error },
    #[error("the control socket {} is in use by a running daemon; stop it, or give this one another daemon.control_socket", path.display())]
    InUse { path: PathBuf },
    #[error("cannot create the control socket {}: {source}", path.display())]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("talking to the daemon at {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the daemon at {} answered something this tether does not understand: {source}", path.display())]
    Protocol { path: PathBuf, source: serde_json::Error },
}

/// A request from a client, and where its reply goes.
pub type Incoming = (Request, oneshot::Sender<Reply>);

/// The daemon's end: a bound socket that removes its file when dropped.
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Binds `path`. A socket file nobody answers on (a daemon that was
    /// killed) is replaced; one a daemon answers on is left alone.
    pub fn bind(path: &Path) -> Result<Listener, ControlError> {
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse { path: path.to_owned() });
            }
            let _ = std::fs::remove_file(path);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ControlError::Bind { path: path.to_owned(), source })?;
        }
        let listener =
            UnixListener::bind(path).map_err(|source| ControlError::Bind { path: path.to_owned(), source })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| ControlError::Bind { path: path.to_owned(), source })?;
        Ok(Listener { listener, path: path.to_owned() })
    }

    /// Accepts clients until the daemon stops, handing each request to the
    /// main loop through `requests`.
    pub async fn serve(&self, requests: mpsc::Sender<Incoming>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let requests = requests.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, requests).await {
                    tracing::debug!(error = %e, "control client");
                }
            });
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn answer(stream: tokio::net::UnixStream, requests: mpsc::Sender<Incoming>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    reader.read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => Reply::Error { message: format!("not a request this daemon understands: {e}") },
        Ok(request) => {
            let (tx, rx) = oneshot::channel();
            if requests.send((request, tx)).await.is_err() {
                Reply::Error { message: "the daemon is shutting down".into() }
            } else {
                rx.await.unwrap_or(Reply::Error { message: "the daemon is shutting down".into() })
            }
        }
    };
    let mut text = serde_json::to_string(&reply).expect("replies serialise");
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await
}

/// The client's end: sends `request` to the daemon at `path` and waits for
/// its reply.
pub fn request(path: &Path, request: &Request) -> Result<Reply, ControlError> {
    let io = |source| ControlError::Io { path: path.to_owned(), source };
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|source| ControlError::NotRunning { path: path.to_owned(), source })?;
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
    let mut text = serde_json::to_string(request).expect("requests serialise");
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    serde_json::from_str(&line).map_err(|source| ControlError::Protocol { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_as_json() {
        let r = Request::SetBackendState { farm: "web".into(), backend: "b0".into(), state: "draining".into() };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"request":"set-backend-state","farm":"web","backend":"b0","state":"draining"}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let reply = Reply::Error { message: "no".into() };
        assert_eq!(serde_json::from_str::<Reply>(&serde_json::to_string(&reply).unwrap()).unwrap(), reply);
    }

    #[tokio::test]
    async fn a_client_gets_the_main_loops_answer_and_a_stale_socket_is_replaced() {
        let dir = tempfile_dir();
        let path = dir.join("control.sock");
        // A stale file where the socket goes.
        std::fs::write(&path, b"").unwrap();
        let listener = Listener::bind(&path).expect("stale file replaced");
        assert!(matches!(Listener::bind(&path), Err(ControlError::InUse { .. })));
        let (tx, mut rx) = mpsc::channel::<Incoming>(4);
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(Reply::Done { message: format!("{request:?}") });
            }
        });
        let server = tokio::spawn(async move { listener.serve(tx).await });
        let client_path = path.clone();
        let reply = tokio::task::spawn_blocking(move || request(&client_path, &Request::Status)).await.unwrap();
        assert_eq!(reply.unwrap(), Reply::Done { message: "Status".into() });
        server.abort();
        let _ = server.await;
        assert!(!path.exists(), "the socket file goes with the listener");
        let err = request(&path, &Request::Status).unwrap_err();
        assert!(err.to_string().contains("is `tether run` running"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-control-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
