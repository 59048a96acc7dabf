//! The one way every channel raises an alert: stamped with the guarded container, queued
//! to the alert router.
use tokio::sync::{mpsc, watch};

use super::{alert::Alert, container::GuardedContainer};

/// Raises alerts, stamped with the guarded container's name and id.
#[derive(Clone)]
pub struct AlertSender {
    tx: mpsc::Sender<Alert>,
    container: watch::Receiver<Option<GuardedContainer>>,
    name: String,
}

impl AlertSender {
    pub fn new(
        tx: mpsc::Sender<Alert>,
        container: watch::Receiver<Option<GuardedContainer>>,
        name: String,
    ) -> Self {
        AlertSender {
            tx,
            container,
            name,
        }
    }

    pub async fn raise(&self, alert: Alert) {
        // A closed channel means the agent is shutting down.
        let _ = self.tx.send(self.stamp(alert)).await;
    }

    /// `alert` with the guarded container's name and id (for records that bypass the
    /// alert router, such as audit records).
    pub fn stamp(&self, mut alert: Alert) -> Alert {
        if alert.container.is_empty() {
            alert.container = self.name.clone();
        }
        if let Some(current) = self.container.borrow().as_ref() {
            if alert.container_id.is_empty() {
                alert.container_id = current.id.clone();
            }
            if alert.image.is_empty() {
                alert.image = current.image.clone();
            }
        }
        alert
    }
}
