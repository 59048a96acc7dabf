//! Serving the page, its assets and the WebSocket feed.
use std::time::Duration;

use axum::{
    extract::{
        Query, State,
        ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use futures_util::SinkExt as _;
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};

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

pub(crate) async fn page(
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

pub(crate) async fn uplot_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript")], UPLOT_JS).into_response()
}

pub(crate) async fn dashboard_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript")], DASHBOARD_JS).into_response()
}

pub(crate) async fn uplot_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css")], UPLOT_CSS).into_response()
}

pub(crate) async fn feed(
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

/// Most messages written to a client before one flush: under a burst a client costs one
/// write per batch, not one per message.
const BATCH: usize = 128;

/// Write `messages` and flush them, all within [`SEND_TIMEOUT`]; `false` if the client did
/// not take them in time or went away.
async fn send_all(socket: &mut WebSocket, messages: Vec<Utf8Bytes>) -> bool {
    let write = async {
        for text in messages {
            socket.feed(Message::Text(text)).await?;
        }
        socket.flush().await
    };
    matches!(tokio::time::timeout(SEND_TIMEOUT, write).await, Ok(Ok(())))
}

/// Say goodbye, but never wait long for a client that does not read.
async fn close(mut socket: WebSocket) {
    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(None))).await;
}

/// The next messages for a client: the first to arrive and whatever else is already queued,
/// up to [`BATCH`].
fn take_ready(
    first: Utf8Bytes,
    live: &mut broadcast::Receiver<Utf8Bytes>,
) -> Result<Vec<Utf8Bytes>, RecvError> {
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match live.try_recv() {
            Ok(text) => batch.push(text),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Lagged(missed)) => return Err(RecvError::Lagged(missed)),
            Err(TryRecvError::Closed) => return Err(RecvError::Closed),
        }
    }
    Ok(batch)
}

/// One browser: the history first, then every new message until it goes away or lags.
/// A client that falls [`super::hub::CLIENT_BACKLOG`] messages behind, or does not take a
/// batch within [`SEND_TIMEOUT`], is dropped: the hub never waits for it.
async fn client(mut socket: WebSocket, hub: Hub) {
    let (hello, mut live) = hub.join();
    if !send_all(&mut socket, vec![Utf8Bytes::from(hello)]).await {
        return;
    }
    loop {
        tokio::select! {
            message = live.recv() => match message.and_then(|first| take_ready(first, &mut live)) {
                Ok(batch) => {
                    if !send_all(&mut socket, batch).await {
                        tracing::info!("dashboard client too slow: dropped");
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!("dashboard client fell {missed} messages behind: dropped");
                    close(socket).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_out_in_batches_and_a_lagging_client_is_told() {
        let (tx, mut live) = broadcast::channel(4 * BATCH);
        for i in 0..BATCH + 10 {
            tx.send(Utf8Bytes::from(i.to_string())).expect("a receiver");
        }
        let first = live.try_recv().expect("queued");
        let batch = take_ready(first, &mut live).expect("not lagging");
        assert_eq!(batch.len(), BATCH);
        assert_eq!(
            (&*batch[0], &*batch[BATCH - 1]),
            ("0", &*(BATCH - 1).to_string())
        );
        let first = live.try_recv().expect("the rest");
        assert_eq!(take_ready(first, &mut live).expect("rest").len(), 10);

        for i in 0..5 * BATCH {
            tx.send(Utf8Bytes::from(i.to_string())).expect("a receiver");
        }
        let hub = Hub::default();
        assert_eq!(hub.clients(), 0);
        let (_hello, _subscription) = hub.join();
        assert_eq!(hub.clients(), 1);
        // The first message of a burst was taken before the ring wrapped; the rest has.
        let stale = Utf8Bytes::from("stale");
        assert!(matches!(
            take_ready(stale, &mut live),
            Err(RecvError::Lagged(n)) if n == BATCH as u64
        ));
    }
}
