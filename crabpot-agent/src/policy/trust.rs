//! The trust score (ASF-38): every violation costs trust; below the threshold the container
//! is quarantined (frozen). Trust belongs to one container instance: a re-created container
//! starts at 100, and an operator brings it back explicitly (`crabpot resume` after review,
//! `crabpot trust reset`), each audited.
use serde::Serialize;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrustScore {
    pub score: i32,
    pub violations: u32,
    pub penalty: i32,
    pub quarantine_below: i32,
    /// A quarantine was announced for the current fall below the threshold: further
    /// violations while there do not announce another one.
    pub quarantined: bool,
}

impl Default for TrustScore {
    fn default() -> Self {
        TrustScore {
            score: 100,
            violations: 0,
            penalty: 20,
            quarantine_below: 50,
            quarantined: false,
        }
    }
}

impl TrustScore {
    /// Record a violation; `true` when it takes the score below the quarantine threshold
    /// (once per transition: `false` while already quarantined).
    pub fn violation(&mut self) -> bool {
        self.violations += 1;
        self.score = (self.score - self.penalty).max(0);
        let entered = self.score < self.quarantine_below && !self.quarantined;
        self.quarantined |= entered;
        entered
    }

    /// Back to full trust (new container instance, operator reset); the configured penalty
    /// and threshold stay.
    pub fn reset(&mut self) {
        *self = TrustScore {
            penalty: self.penalty,
            quarantine_below: self.quarantine_below,
            ..TrustScore::default()
        };
    }

    /// Announce the quarantine again: the container was unfrozen without a trust reset
    /// (e.g. `docker unpause`) and violates again while still below the threshold.
    pub fn requarantine(&self) -> bool {
        self.quarantined && self.score < self.quarantine_below
    }
}

/// How an operator asked for trust to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// `crabpot resume` (or the dashboard's resume) through the agent, after review.
    Resume,
    /// `crabpot trust reset`.
    Reset,
}

impl ResetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::Resume => "resume",
            ResetReason::Reset => "trust reset",
        }
    }
}

/// An operator's request to reset trust, carried to the kernel-event loop (which owns the
/// score); the reply is the score before the reset.
#[derive(Debug)]
pub struct TrustReset {
    pub reason: ResetReason,
    /// Who asked: the peer address of the authenticated request.
    pub from: String,
    /// The guarded container (name or id) whose trust is reset; every one when absent.
    pub container: Option<String>,
    pub reply: oneshot::Sender<TrustScore>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_violations_quarantine_once() {
        let mut trust = TrustScore::default();
        assert!(!trust.violation());
        assert_eq!(trust.score, 80);
        assert!(!trust.violation());
        assert_eq!(trust.score, 60);
        assert!(trust.violation());
        assert_eq!(trust.score, 40);
        for _ in 0..10 {
            assert!(!trust.violation(), "one quarantine per transition");
        }
        assert_eq!(trust.score, 0);
        assert!(trust.requarantine());
    }

    #[test]
    fn a_reset_restores_full_trust_and_keeps_the_configuration() {
        let mut trust = TrustScore {
            penalty: 30,
            quarantine_below: 60,
            ..TrustScore::default()
        };
        trust.violation();
        assert!(trust.violation());
        trust.reset();
        assert_eq!(
            (trust.score, trust.violations, trust.quarantined),
            (100, 0, false)
        );
        assert_eq!((trust.penalty, trust.quarantine_below), (30, 60));
        assert!(!trust.violation());
        assert!(trust.violation(), "a new fall is a new transition");
    }
}
