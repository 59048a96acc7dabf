//! Serving the page, its assets and the WebSocket feed.
use std::time::Duration;

use axum::{
    extract::{
        Query, State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use tokio::sync::broadcast::error::RecvError;

use crate::sinks::{
    dashboard::Hub,
    http::{HttpState, TokenQuery, view_refused},
};

const PAGE: &str = include_str!("page.html");
const DASHBOARD_JS: &str = include_str!("dashboard.js");
const UPLOT_JS: &str = include_str!("assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uPlot.min.css");
/// No inline script (alert text is hostile), no framing (clickjacking of Pause/Resume).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";
/// A client that takes longer than this to accept one message is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn page(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    if let Some(refusal) = view_refused(&state, &headers, &q) {
        return refusal;
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

pub async fn uplot_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript")], UPLOT_JS).into_response()
}

pub async fn dashboard_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript")], DASHBOARD_JS).into_response()
}

pub async fn uplot_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css")], UPLOT_CSS).into_response()
}

pub async fn feed(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(refusal) = view_refused(&state, &headers, &q) {
        return refusal;
    }
    let hub = state.hub.clone();
    upgrade.on_upgrade(move |socket| client(socket, hub))
}

async fn send(socket: &mut WebSocket, text: &str) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

/// One browser: the history first, then every new message until it goes away or lags.
async fn client(mut socket: WebSocket, hub: Hub) {
    let (hello, mut live) = hub.join();
    if !send(&mut socket, &hello).await {
        return;
    }
    loop {
        tokio::select! {
            message = live.recv() => match message {
                Ok(text) => {
                    if !send(&mut socket, &text).await {
                        tracing::info!("dashboard client too slow: dropped");
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!("dashboard client fell {missed} messages behind: dropped");
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
