//! The agent's HTTP listener (default 127.0.0.1:9876): `/metrics` for Prometheus,
//! `/api/status` for `crabpot status`, and the token-protected control actions.
use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};

use crate::{
    policy::trust::{ResetReason, TrustReset},
    sinks::{
        dashboard,
        metrics::{Metrics, StateViews},
    },
};

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub views: StateViews,
    pub token: Arc<String>,
    /// Bound beyond loopback: the token is required for everything.
    pub remote: bool,
    pub info: Arc<StaticInfo>,
    pub docker: bollard::Docker,
    pub hub: crate::sinks::dashboard::Hub,
    /// To the kernel-event loop, which owns the trust score.
    pub trust_resets: tokio::sync::mpsc::Sender<TrustReset>,
    /// Announced break-glass shells (`crabpot shell`), claimed by the exec judges.
    pub break_glass: crate::policy::break_glass::BreakGlass,
    /// Pending decisions and how to carry out an answer (`crabpot approve/deny`).
    pub decisions: crate::actions::decide::DecisionDesk,
}

/// What does not change while the agent runs.
#[derive(Debug, Clone, Serialize)]
pub struct StaticInfo {
    pub version: &'static str,
    pub profiles: Vec<&'static str>,
    pub layers: Vec<(String, String)>,
    pub dashboard_url: String,
    pub started_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub container: Option<String>,
    pub container_id: Option<String>,
    pub state: String,
    pub trust_score: i32,
    pub violations: u32,
    pub quarantined: bool,
    pub channels: std::collections::BTreeMap<String, String>,
    pub kernel_events: u64,
    pub kernel_events_dropped: u64,
    pub info: serde_json::Value,
    /// The operator's exceptions and how many events each silenced.
    #[serde(default)]
    pub exceptions: Vec<(String, u64)>,
    /// Every guarded container (one when one is guarded).
    #[serde(default)]
    pub containers: Vec<crate::sinks::metrics::ContainerStatus>,
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
    /// Pause and resume: the guarded container (name or id) meant; the first when absent.
    container: Option<String>,
}

fn presented(headers: &HeaderMap, query: &TokenQuery) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| query.token.clone())
}

/// Constant-time comparison of the presented token.
fn token_ok(state: &HttpState, headers: &HeaderMap, query: &TokenQuery) -> bool {
    let Some(given) = presented(headers, query) else {
        return false;
    };
    let (a, b) = (given.as_bytes(), state.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Viewing needs no token on loopback; beyond it (`--listen-remote`) everything does.
/// `Some(refusal)` when this request may not view.
pub(crate) fn view_refused(
    state: &HttpState,
    headers: &HeaderMap,
    query: &TokenQuery,
) -> Option<Response> {
    (state.remote && !token_ok(state, headers, query)).then(refused)
}

pub(crate) fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "a valid token is required (Authorization: Bearer TOKEN); it is in the agent's token \
         file and start-up banner\n",
    )
        .into_response()
}

pub(crate) fn status(state: &HttpState) -> Status {
    let container = state.views.container.borrow().clone();
    let trust = *state.views.trust.borrow();
    let (kernel_events, kernel_events_dropped) = state.metrics.event_counts();
    Status {
        kernel_events,
        kernel_events_dropped,
        container: container.as_ref().map(|c| c.name.clone()),
        container_id: container.as_ref().map(|c| c.id.clone()),
        state: crate::sinks::metrics::state_word(container.as_ref(), &trust).into(),
        trust_score: trust.score,
        violations: trust.violations,
        quarantined: trust.score < trust.quarantine_below,
        channels: state
            .views
            .ticks
            .snapshot()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        info: serde_json::to_value(&*state.info).unwrap_or_default(),
        exceptions: state.metrics.exception_hits(),
        containers: state.views.containers(),
    }
}

async fn metrics(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    if let Some(refusal) = view_refused(&state, &headers, &q) {
        return refusal;
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.views),
    )
        .into_response()
}

async fn api_status(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    if let Some(refusal) = view_refused(&state, &headers, &q) {
        return refusal;
    }
    Json(status(&state)).into_response()
}

#[derive(Deserialize)]
pub(crate) struct RecentQuery {
    token: Option<String>,
    last: Option<usize>,
}

/// The dashboard's recent history as one JSON document, for clients that poll.
async fn api_recent(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<RecentQuery>,
) -> Response {
    let token = TokenQuery {
        token: q.token,
        container: None,
    };
    if let Some(refusal) = view_refused(&state, &headers, &token) {
        return refusal;
    }
    Json(state.hub.recent(q.last.unwrap_or(50))).into_response()
}

async fn control(state: &HttpState, pause: bool, named: Option<&str>) -> Result<(), Response> {
    let current = match named {
        Some(wanted) => {
            let set = state.views.guarded.borrow();
            crate::model::container::unit_named(&set, wanted, wanted)
                .and_then(|(_, unit)| unit.container.borrow().clone())
        }
        None => state.views.container.borrow().clone(),
    };
    let Some(container) = current else {
        return Err((StatusCode::CONFLICT, "no such container is being guarded\n").into_response());
    };
    let result = if pause {
        state.docker.pause_container(&container.id).await
    } else {
        state.docker.unpause_container(&container.id).await
    };
    match result {
        Ok(()) => Ok(()),
        // Resuming a running container still resets trust: the operator reviewed it.
        Err(error) if !pause && error.to_string().contains("is not paused") => Ok(()),
        Err(error) => Err((StatusCode::CONFLICT, format!("{error}\n")).into_response()),
    }
}

/// Reset trust through the kernel-event loop (audited there); the text for the operator.
async fn reset_trust(
    state: &HttpState,
    reason: ResetReason,
    peer: SocketAddr,
    container: Option<String>,
) -> Response {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = TrustReset {
        reason,
        from: format!("{peer} (token holder)"),
        container,
        reply,
    };
    if state.trust_resets.send(request).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping\n").into_response();
    }
    match answer.await {
        Ok(before) => (
            StatusCode::OK,
            format!(
                "trust reset to 100 (was {} after {} violations)\n",
                before.score, before.violations
            ),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping\n").into_response(),
    }
}

async fn api_pause(State(state): State<HttpState>, Query(q): Query<TokenQuery>) -> Response {
    match control(&state, true, q.container.as_deref()).await {
        Ok(()) => (StatusCode::OK, "paused\n").into_response(),
        Err(response) => response,
    }
}

/// Resume after review: unfreeze, and trust back to full (audited).
async fn api_resume(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<TokenQuery>,
) -> Response {
    if let Err(response) = control(&state, false, q.container.as_deref()).await {
        return response;
    }
    reset_trust(&state, ResetReason::Resume, peer, q.container).await
}

async fn api_trust_reset(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<TokenQuery>,
) -> Response {
    reset_trust(&state, ResetReason::Reset, peer, q.container).await
}

/// What `crabpot shell` announces: who, which container, which exact argv.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShellAnnounce {
    /// The operator's uid (recorded in the break-glass alert and the audit log).
    pub uid: u32,
    /// The command the operator's `docker exec` runs, exactly.
    pub argv: Vec<String>,
    /// The container's name or id; the guarded one when absent.
    pub container: Option<String>,
}

/// The agent's answer: where to `docker exec`, and within how long.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShellGrant {
    pub container_id: String,
    pub container: String,
    pub expires_in_seconds: u64,
}

/// Record a one-time break-glass grant (token required): the next `docker exec` of exactly
/// this argv into the guarded container is the operator's, not an intrusion.
async fn api_shell_announce(
    State(state): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let announce: ShellAnnounce = match serde_json::from_slice(&body) {
        Ok(announce) => announce,
        Err(error) => {
            let text = format!("expected {{uid, argv, container}} as JSON: {error}\n");
            return (StatusCode::BAD_REQUEST, text).into_response();
        }
    };
    let Some(container) = state.views.container.borrow().clone() else {
        return (StatusCode::CONFLICT, "no container is being guarded\n").into_response();
    };
    if let Some(wanted) = announce.container.as_deref()
        && wanted != container.name
        && !(wanted.len() >= 12 && container.id.starts_with(wanted))
    {
        let text = format!("the agent guards `{}`, not `{wanted}`\n", container.name);
        return (StatusCode::CONFLICT, text).into_response();
    }
    if container.paused {
        let text = "the container is frozen; review and `crabpot resume` first\n";
        return (StatusCode::CONFLICT, text).into_response();
    }
    let uid = announce.uid;
    if let Err(error) = state
        .break_glass
        .announce(&container.id, announce.argv.clone(), uid)
    {
        return (StatusCode::TOO_MANY_REQUESTS, format!("{error}\n")).into_response();
    }
    tracing::info!(
        uid,
        from = %peer,
        "break-glass shell announced for {}: {:?}",
        container.name,
        announce.argv
    );
    Json(ShellGrant {
        container_id: container.id,
        container: container.name,
        expires_in_seconds: crate::policy::break_glass::GRANT_TTL.as_secs(),
    })
    .into_response()
}

/// An answer to a pending decision: `{always}` or `{keep_frozen}`, and who asks (the CLI
/// sends the operator's uid; the dashboard says so).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DecisionAnswer {
    #[serde(default)]
    pub always: bool,
    #[serde(default)]
    pub keep_frozen: bool,
    /// The operator's uid (SUDO_UID under sudo), from `crabpot approve/deny`.
    #[serde(default)]
    pub uid: Option<u32>,
    /// `dashboard` from the dashboard's buttons.
    #[serde(default)]
    pub via: Option<String>,
}

/// The pending decisions (token required: they name processes and destinations).
async fn api_pending(State(state): State<HttpState>) -> Response {
    match state.decisions.pending().await {
        Ok(list) => {
            let described: Vec<serde_json::Value> = list
                .iter()
                .map(|d| {
                    let mut value = serde_json::to_value(d).unwrap_or_default();
                    value["describe"] = d.subject.describe().into();
                    value
                })
                .collect();
            Json(serde_json::json!({ "pending": described })).into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("{error}\n")).into_response(),
    }
}

async fn answer_decision(
    state: &HttpState,
    id: String,
    approve: bool,
    peer: SocketAddr,
    body: &[u8],
) -> Response {
    use crate::{actions::decide::DeskError, policy::decisions::DecideError};
    let answer: DecisionAnswer = if body.is_empty() {
        DecisionAnswer::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(answer) => answer,
            Err(error) => {
                let text = format!("expected {{always, keep_frozen, uid}} as JSON: {error}\n");
                return (StatusCode::BAD_REQUEST, text).into_response();
            }
        }
    };
    let who = match (answer.uid, answer.via.as_deref()) {
        (Some(uid), _) => format!("uid {uid} (crabpot CLI)"),
        (None, Some("dashboard")) => "dashboard".to_string(),
        (None, _) => "a token holder".to_string(),
    };
    let request = crate::actions::decide::Request {
        id,
        approve,
        option: if approve {
            answer.always
        } else {
            answer.keep_frozen
        },
        who,
        from: peer.to_string(),
    };
    match state.decisions.decide(request).await {
        Ok(text) => (StatusCode::OK, text).into_response(),
        Err(error) => {
            let status = match &error {
                DeskError::Decide(DecideError::Unknown(_)) => StatusCode::NOT_FOUND,
                DeskError::Decide(DecideError::Stale(_)) | DeskError::NoEntry(_) => {
                    StatusCode::CONFLICT
                }
                DeskError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, format!("{error}\n")).into_response()
        }
    }
}

/// `POST /api/decisions/{id}/approve` or `/deny`: the answer to a pending decision.
async fn api_decide(
    State(state): State<HttpState>,
    axum::extract::Path((id, verb)): axum::extract::Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Response {
    let approve = match verb.as_str() {
        "approve" => true,
        "deny" => false,
        _ => {
            let text = format!("unknown answer `{verb}`: approve or deny\n");
            return (StatusCode::NOT_FOUND, text).into_response();
        }
    };
    answer_decision(&state, id, approve, peer, &body).await
}

/// The control actions: every one needs the token, checked once here before the handler.
async fn require_token(
    State(state): State<HttpState>,
    Query(q): Query<TokenQuery>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !token_ok(&state, request.headers(), &q) {
        return refused();
    }
    next.run(request).await
}

pub fn router(state: HttpState) -> Router {
    let control = Router::new()
        .route("/api/pause", post(api_pause))
        .route("/api/resume", post(api_resume))
        .route("/api/trust/reset", post(api_trust_reset))
        .route("/api/shell/announce", post(api_shell_announce))
        .route("/api/pending", get(api_pending))
        .route("/api/decisions/{id}/{verb}", post(api_decide))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route("/", get(dashboard::routes::page))
        .route("/assets/uplot.js", get(dashboard::routes::uplot_js))
        .route("/assets/uplot.css", get(dashboard::routes::uplot_css))
        .route("/assets/dashboard.js", get(dashboard::routes::dashboard_js))
        .route("/ws", get(dashboard::routes::feed))
        .route("/metrics", get(metrics))
        .route("/api/status", get(api_status))
        .route("/api/recent", get(api_recent))
        .merge(control)
        .with_state(state)
}

/// Only `/metrics`, for a separate scrape address (`--metrics-listen`).
pub(crate) fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Bind and serve `router` until the agent stops.
pub(crate) async fn serve_router(address: SocketAddr, router: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}; choose another address"))?;
    if let Ok(bound) = listener.local_addr() {
        tracing::info!("metrics listener on {bound}");
    }
    axum::serve(listener, router).await?;
    Ok(())
}

/// Bind and serve until the agent stops.
pub(crate) async fn serve(address: SocketAddr, state: HttpState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {address}: {e}; choose another with --listen")
    })?;
    if let Ok(bound) = listener.local_addr() {
        tracing::info!("HTTP listener on {bound} (/metrics, /api/status)");
    }
    let service = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}

/// The control token: read from `path`, or generated (32 random bytes, hex) into a new
/// root-only file.
pub(crate) fn load_or_create_token(path: &std::path::Path) -> std::io::Result<String> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
    if let Ok(text) = std::fs::read_to_string(path) {
        let token = text.trim().to_string();
        if token.len() >= 32 {
            return Ok(token);
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, token.as_bytes())?;
    Ok(token)
}
