//! What the agent does: in-kernel enforcement, freezing, undoing.
pub(crate) mod approved_file;
pub(crate) mod decide;
pub(crate) mod dns_learn;
pub(crate) mod enforcer;
pub(crate) mod escape;
pub(crate) mod kernel_allow;
pub(crate) mod kernel_stop;
pub(crate) mod pause;
pub(crate) mod pins;
pub(crate) mod resolvers;
pub(crate) mod undo;
