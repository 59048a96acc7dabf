//! The JSON-lines alerts log: one alert per line, appended whole, rotated by size.
pub mod reader;
pub(crate) mod writer;

pub use writer::AlertLogWriter;
