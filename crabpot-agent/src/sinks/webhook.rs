//! Webhook sink for alerts at or above `--webhook-min-severity` (CRITICAL by default;
//! quarantines are CRITICAL): generic JSON (the alert itself, schema v1), Discord or Slack
//! message shapes, or Falco's output (for falcosidekick); a bounded queue, retries with
//! exponential backoff. The router filters and rate-limits its queue (sinks/rate_limit.rs).
use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{
    model::alert::{Alert, Severity},
    sinks::terminal_text::escape_for_terminal,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookFormat {
    Generic,
    Discord,
    Slack,
    /// Falco's JSON output: what falcosidekick's `/` endpoint takes.
    Falco,
}

pub(crate) const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

fn one_line(alert: &Alert) -> String {
    let container = if alert.container.is_empty() {
        String::new()
    } else {
        format!(" [{}]", alert.container)
    };
    format!(
        "[{}]{container} {}: {}",
        alert.severity,
        alert.source.as_str(),
        alert.message
    )
}

/// Slack's control characters escaped, as its API documents.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The request body for `format`.
pub(crate) fn payload(alert: &Alert, format: WebhookFormat) -> Value {
    match format {
        WebhookFormat::Generic => serde_json::to_value(alert).unwrap_or(Value::Null),
        // Discord caps content at 2000 characters; Slack's `text` is plain mrkdwn.
        WebhookFormat::Discord => json!({
            "content": one_line(alert).chars().take(1990).collect::<String>(),
            "allowed_mentions": {"parse": []},
        }),
        // Alert text is hostile: Slack's escapes keep `<!channel>` or `<url|label>` inert.
        WebhookFormat::Slack => json!({ "text": slack_escape(&one_line(alert)) }),
        WebhookFormat::Falco => crate::sinks::formats::falco(alert),
    }
}

/// Default of `--webhook-min-severity`: CRITICAL alerts (quarantines are CRITICAL).
pub(crate) const DEFAULT_MIN_SEVERITY: Severity = Severity::Critical;

/// POST `body` as JSON, retried with exponential backoff (also the Alertmanager sink's).
pub(crate) async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<(), String> {
    let mut backoff = FIRST_BACKOFF;
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        match client.post(url).json(body).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last_error = format!("HTTP {}", response.status()),
            Err(error) => last_error = error.to_string(),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    Err(last_error)
}

/// The sink: sends what it is given in order; a delivery that fails every attempt is logged
/// and counted.
pub(crate) async fn run(
    url: String,
    format: WebhookFormat,
    mut alerts: mpsc::Receiver<Arc<Alert>>,
    metrics: Arc<crate::sinks::metrics::Metrics>,
) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!("webhook disabled: cannot build an HTTP client: {error}");
            return;
        }
    };
    while let Some(alert) = alerts.recv().await {
        if let Err(error) = deliver(&client, &url, &payload(&alert, format)).await {
            metrics.sink_failure("webhook");
            tracing::error!(
                "webhook: alert not delivered after {ATTEMPTS} attempts ({error}): {}",
                escape_for_terminal(&alert.message)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::AlertSource;

    #[test]
    fn payload_shapes() {
        let alert = Alert::new(
            Severity::Critical,
            AlertSource::Processes,
            "shell @everyone <!channel> <https://evil.example|docs> & co",
        )
        .for_container("crabpot", "abc");
        let slack = payload(&alert, WebhookFormat::Slack);
        assert_eq!(
            slack["text"],
            "[CRITICAL] [crabpot] processes: shell @everyone &lt;!channel&gt; \
             &lt;https://evil.example|docs&gt; &amp; co"
        );
        let discord = payload(&alert, WebhookFormat::Discord);
        assert_eq!(
            discord["allowed_mentions"]["parse"],
            json!([]),
            "no pings from alert text"
        );
        let generic = payload(&alert, WebhookFormat::Generic);
        assert_eq!(generic["severity"], "CRITICAL");
        assert_eq!(generic["container_id"], "abc");
    }
}
