//! The live web dashboard: one page with its assets embedded in the binary, fed over a
//! WebSocket.
pub(crate) mod hub;
pub(crate) mod routes;

pub use hub::Hub;
