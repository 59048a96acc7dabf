//! The core every part shares and that depends on no other part: the alert (its control
//! data typed), the kernel event, the guarded container, and the sender alerts are raised
//! through. Sources produce these, the policy judges them, actions and sinks consume them.
pub(crate) mod alert;
pub(crate) mod container;
pub(crate) mod event;
pub(crate) mod record;
pub(crate) mod sender;
