//! Medians, percentiles and spread of repeated measurements.

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentile of sorted values (`q` in 0..=1).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(super) fn summarize(values: &[f64]) -> Summary {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    Summary {
        n: sorted.len(),
        min: sorted.first().copied().unwrap_or(f64::NAN),
        p50: percentile(&sorted, 0.5),
        p99: percentile(&sorted, 0.99),
        max: sorted.last().copied().unwrap_or(f64::NAN),
    }
}

impl Summary {
    /// Relative spread (max − min) / median, to flag noisy figures.
    pub(super) fn spread(&self) -> f64 {
        if self.p50 == 0.0 {
            return 0.0;
        }
        (self.max - self.min) / self.p50
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&values);
        assert_eq!(
            (s.n, s.min, s.p50, s.p99, s.max),
            (100, 1.0, 50.0, 99.0, 100.0)
        );
        let one = summarize(&[7.0]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert!(summarize(&[]).p50.is_nan());
    }

    #[test]
    fn spread_is_relative_to_the_median() {
        let s = summarize(&[9.0, 10.0, 12.0]);
        assert!((s.spread() - 0.3).abs() < 1e-9);
    }
}
