//! The JSON-lines alerts log: one alert per line, appended whole, rotated by size.
pub mod reader;
pub mod writer;

pub use reader::{ReadReport, log_files, read_alerts};
pub use writer::AlertLogWriter;
