//! The trust score (ASF-38): every violation costs trust; below the threshold the container
//! is quarantined (frozen).
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrustScore {
    pub score: i32,
    pub violations: u32,
    pub penalty: i32,
    pub quarantine_below: i32,
}

impl Default for TrustScore {
    fn default() -> Self {
        TrustScore {
            score: 100,
            violations: 0,
            penalty: 20,
            quarantine_below: 50,
        }
    }
}

impl TrustScore {
    /// Record a violation; `true` when the score is now below the quarantine threshold.
    pub fn violation(&mut self) -> bool {
        self.violations += 1;
        self.score = (self.score - self.penalty).max(0);
        self.score < self.quarantine_below
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_violations_quarantine() {
        let mut trust = TrustScore::default();
        assert!(!trust.violation());
        assert_eq!(trust.score, 80);
        assert!(!trust.violation());
        assert_eq!(trust.score, 60);
        assert!(trust.violation());
        assert_eq!(trust.score, 40);
        for _ in 0..10 {
            trust.violation();
        }
        assert_eq!(trust.score, 0);
    }
}
