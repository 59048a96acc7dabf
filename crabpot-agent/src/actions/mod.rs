//! What the agent does: in-kernel enforcement, freezing, undoing.
pub mod enforcer;
pub mod escape;
pub mod kernel_allow;
pub mod pause;
pub mod pins;
pub mod resolvers;
pub mod undo;
