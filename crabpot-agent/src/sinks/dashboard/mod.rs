//! The live web dashboard: one page with its assets embedded in the binary, fed over a
//! WebSocket.
pub mod hub;
pub mod routes;

pub use hub::Hub;
