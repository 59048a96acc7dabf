//! The parts of the load test: the agent's alert path and HTTP listener started as
//! `agent.rs` starts them, WebSocket clients (fast and never-reading), the scraper.
use std::{
    net::SocketAddr,
    os::fd::AsRawFd as _,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use crabpot_agent::{
    ALERT_CAPACITY, Alert, AlertLogWriter, AlertRouter, AlertSender, AlertSource, ChannelTicks,
    Guarded, GuardedContainer, GuardedUnit, HttpState, Hub, Metrics, MonitorConfig, Severity,
    StateViews, StaticInfo, TrustScore, http_router,
};
use futures_util::StreamExt as _;
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

pub(crate) struct Agent {
    pub address: SocketAddr,
    pub hub: Hub,
    /// Alerts raised so far, for the clients to say how far behind they are.
    pub produced: Arc<AtomicU64>,
    sender: AlertSender,
    stop: oneshot::Sender<()>,
    router: JoinHandle<()>,
    server: JoinHandle<()>,
    _keep: watch::Sender<Option<GuardedContainer>>,
}

impl Agent {
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Agent> {
        let defaults = MonitorConfig::default();
        // Rotation on (every ~16 MB) but with room for the whole run: nothing rotates away.
        let log_writer = AlertLogWriter::open(&dir.join("alerts.log"), 16 << 20, 100)?;
        // Nothing here calls Docker (auto-pause off): an address that is never dialled.
        let docker = bollard::Docker::connect_with_http(
            "http://127.0.0.1:9",
            4,
            bollard::API_DEFAULT_VERSION,
        )?;
        let (guarded_tx, guarded) = watch::channel(None);
        let (alerts_tx, alerts_rx) = mpsc::channel(ALERT_CAPACITY);
        let sender = AlertSender::new(alerts_tx, guarded.clone(), defaults.container.clone());
        let unit = GuardedUnit {
            container: guarded.clone(),
            alerts: sender.clone(),
        };
        let (_set_tx, set) = watch::channel(Guarded::from([(defaults.container.clone(), unit)]));
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::default();
        let (stop, router_stop) = oneshot::channel();
        let router = AlertRouter {
            metrics: metrics.clone(),
            auto_pause: false,
            docker: docker.clone(),
            guarded: set.clone(),
            alerts: sender.clone(),
            log_writer,
            toasts: false,
            webhook: None,
            dashboard: hub.clone(),
            delivery: Default::default(),
            decisions: Default::default(),
        }
        .start(alerts_rx, router_stop);
        let (_stats_tx, stats) = watch::channel(None);
        let (_trust_tx, trust) = watch::channel(TrustScore::default());
        let state = HttpState {
            metrics: metrics.clone(),
            views: StateViews {
                container: guarded,
                stats,
                trust,
                ticks: Arc::new(ChannelTicks::default()),
                posture: watch::channel(None).1,
                guarded: set,
                trusts: watch::channel(Default::default()).1,
            },
            token: Arc::new("0".repeat(64)),
            remote: false,
            info: Arc::new(StaticInfo {
                version: "load",
                profiles: vec!["openclaw"],
                layers: Vec::new(),
                dashboard_url: String::new(),
                started_at: crabpot_agent::now_rfc3339(),
            }),
            docker,
            hub: hub.clone(),
            // No kernel loop here: trust resets are not exercised by the load test.
            trust_resets: tokio::sync::mpsc::channel(1).0,
            break_glass: crabpot_agent::BreakGlass::default(),
            decisions: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, http_router(state)).await;
        });
        Ok(Agent {
            address,
            hub,
            produced: Arc::default(),
            sender,
            stop,
            router,
            server,
            _keep: guarded_tx,
        })
    }

    pub(crate) async fn raise(&self, seq: u64) {
        let severity = if seq.is_multiple_of(10) {
            Severity::Warning
        } else {
            Severity::Info
        };
        let alert = Alert::new(severity, AlertSource::Logs, format!("load alert {seq}"))
            .with("seq", seq)
            .with(
                "line",
                "GET /api/v1/items?page=2 HTTP/1.1 500 Internal Server Error",
            );
        self.sender.raise(alert).await;
    }

    pub(crate) async fn wait_for_clients(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.hub.clients() < n {
            if Instant::now() > deadline {
                bail!("{} of {n} dashboard clients joined", self.hub.clients());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Stop the router as the agent does and wait (bounded) until every sink has drained.
    pub(crate) async fn stop(self) -> anyhow::Result<JoinHandle<()>> {
        let _ = self.stop.send(());
        drop(self.sender);
        tokio::time::timeout(Duration::from_secs(60), self.router)
            .await
            .context("the router did not drain within 60 s")??;
        Ok(self.server)
    }
}

#[derive(Debug)]
pub(crate) struct ClientReport {
    pub id: usize,
    pub alerts: u64,
    /// Largest distance, in alerts, between what was produced and what this client got.
    pub max_behind: u64,
    pub in_order: bool,
    /// Got an alert in the last second of the load.
    pub received_at_end: bool,
    /// The agent closed the connection.
    pub dropped: bool,
}

/// The `seq` of an alert message, found without a full parse (45 clients read 10k/s each).
fn seq_in(text: &str) -> Option<u64> {
    // serde_json writes keys in order: an alert message starts with its "alert" object.
    if !text.starts_with(r#"{"alert":"#) {
        return None;
    }
    let rest = &text[text.find(r#""seq":"#)? + 6..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A client that reads everything until told to stop.
pub(crate) async fn fast_client(
    id: usize,
    address: SocketAddr,
    produced: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<ClientReport> {
    let mut ws = connect(address, TcpStream::connect(address).await?).await?;
    let mut report = ClientReport {
        id,
        alerts: 0,
        max_behind: 0,
        in_order: true,
        received_at_end: false,
        dropped: false,
    };
    let mut last: Option<u64> = None;
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(seq) = seq_in(&text) {
                        report.in_order &= last.is_none_or(|l| seq > l);
                        last = Some(seq);
                        last_at = Instant::now();
                        report.alerts += 1;
                        let now = produced.load(Ordering::Relaxed);
                        report.max_behind = report.max_behind.max(now.saturating_sub(seq));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    report.dropped = true;
                    break;
                }
            },
            _ = stop.changed() => break,
        }
    }
    report.received_at_end = last_at.elapsed() < Duration::from_millis(1500) && !report.dropped;
    Ok(report)
}

pub(crate) type Socket = WebSocketStream<TcpStream>;

/// A client that connects and then never reads, with a small receive window so that the
/// agent's writes to it stall within seconds rather than after megabytes of kernel buffer.
pub(crate) async fn slow_client(address: SocketAddr) -> anyhow::Result<Socket> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket.connect(address).await?;
    connect(address, stream).await
}

/// The WebSocket handshake, with a read buffer sized for small messages (the default 128 KiB
/// is zeroed on every read: that would be the clients' cost, not the agent's).
async fn connect(address: SocketAddr, stream: TcpStream) -> anyhow::Result<Socket> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024);
    let url = format!("ws://{address}/ws");
    Ok(
        tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await?
            .0,
    )
}

/// Read a slow client's backlog: the agent must have closed it (close frame or EOF).
pub(crate) async fn closed_by_agent(mut ws: Socket) -> bool {
    let read_to_end = async {
        while let Some(Ok(message)) = ws.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_to_end)
        .await
        .is_ok()
}

pub(crate) struct ScrapeReport {
    pub scrapes: u64,
    pub failures: u64,
    pub slowest_ms: f64,
    /// `crabpot_alerts_total` (all labels) at each successful scrape.
    pub counted: Vec<u64>,
}

/// The sum of `crabpot_alerts_total` over every label in one scrape.
fn alerts_in(body: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with("crabpot_alerts_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// GET /metrics every second until told to stop.
pub(crate) async fn scrape_metrics(
    address: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<ScrapeReport> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("http://{address}/metrics");
    let mut report = ScrapeReport {
        scrapes: 0,
        failures: 0,
        slowest_ms: 0.0,
        counted: Vec::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(report),
        }
        let started = Instant::now();
        let body = match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => response.text().await.ok(),
            _ => None,
        };
        // Before the first alert the counter has no series yet: a 200 is a good scrape.
        let ok = body.is_some_and(|body| {
            report.counted.push(alerts_in(&body));
            true
        });
        report.scrapes += 1;
        report.failures += u64::from(!ok);
        report.slowest_ms = report
            .slowest_ms
            .max(started.elapsed().as_secs_f64() * 1000.0);
    }
}

/// Alerts counted by `crabpot_alerts_total`, over every label, from one scrape.
pub(crate) async fn alerts_counted(address: SocketAddr) -> anyhow::Result<u64> {
    let body = reqwest::get(format!("http://{address}/metrics"))
        .await?
        .text()
        .await?;
    Ok(alerts_in(&body))
}

/// Peak resident set of this process (`VmHWM`), KiB.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Redirects this process's stderr (fd 2) to a file until dropped.
pub(crate) struct StderrTo {
    saved: i32,
}

impl StderrTo {
    pub(crate) fn file(path: &Path) -> std::io::Result<StderrTo> {
        let file = std::fs::File::create(path)?;
        // SAFETY: plain descriptor calls on fds this process owns.
        let saved = unsafe { libc::dup(2) };
        if saved < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors are open and owned by this process.
        if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(StderrTo { saved })
    }
}

impl Drop for StderrTo {
    fn drop(&mut self) {
        // SAFETY: restores the descriptor saved in `file`.
        unsafe {
            libc::dup2(self.saved, 2);
            libc::close(self.saved);
        }
    }
}
