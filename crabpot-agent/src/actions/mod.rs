//! What the agent does about alerts.
pub mod pause;
