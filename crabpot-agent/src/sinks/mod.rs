//! Where observations and alerts go.
pub(crate) mod alert_log;
pub(crate) mod dashboard;
pub(crate) mod dispatcher;
pub(crate) mod event_printer;
pub(crate) mod formats;
pub(crate) mod http;
pub(crate) mod learn_file;
pub(crate) mod metrics;
pub(crate) mod router;
pub(crate) mod systemd;
pub(crate) mod terminal;
pub(crate) mod terminal_text;
pub(crate) mod toast;
pub(crate) mod webhook;
