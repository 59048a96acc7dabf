//! Where observations and alerts go.
pub mod alert_log;
pub mod dashboard;
pub mod dispatcher;
pub mod event_printer;
pub mod http;
pub mod metrics;
pub mod router;
pub mod systemd;
pub mod terminal;
pub mod terminal_text;
pub mod toast;
pub mod webhook;
