//! Where observations go.
pub mod event_printer;
pub mod terminal_text;
