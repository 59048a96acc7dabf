//! CrabPot host agent.
//!
//! Architecture, by role: [`sources`] (kernel programs, Docker engine) feed the [`bus`];
//! the agent loop in [`agent`] enriches what arrives and hands it to the [`sinks`].
pub mod agent;
pub mod bus;
pub mod cli;
pub mod preflight;
pub mod sinks;
pub mod sources;
