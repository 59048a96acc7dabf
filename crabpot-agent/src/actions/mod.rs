//! What the agent does: in-kernel enforcement, freezing, undoing.
pub mod enforcer;
pub mod pause;
pub mod pins;
pub mod undo;
