//! `[rollout]`: batch sizes and failure budgets (SPEC section 4), as pure
//! arithmetic the executor asks.

use std::time::Duration;

use serde::Deserialize;

/// A count, or a percentage of the selected nodes (`"50%"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    Count(usize),
    Percent(f64),
}

impl Size {
    /// Parses `3` or `"25%"`.
    pub fn parse(v: &SizeValue) -> Result<Size, String> {
        match v {
            SizeValue::Count(n) if *n >= 0 => Ok(Size::Count(*n as usize)),
            SizeValue::Count(n) => Err(format!("{n} is negative")),
            SizeValue::Text(s) => {
                let pct = s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        format!("`{s}` is neither a count nor a percentage like \"25%\"")
                    })?;
                Ok(Size::Percent(pct))
            }
        }
    }

    /// This size as a node count out of `total` (percentages round down).
    fn of(self, total: usize) -> usize {
        match self {
            Size::Count(n) => n,
            Size::Percent(p) => ((total as f64) * p / 100.0).floor() as usize,
        }
    }

    /// Whether `count` bad nodes out of `total` exceed this budget.
    pub fn exceeded_by(self, count: usize, total: usize) -> bool {
        match self {
            Size::Count(n) => count > n,
            Size::Percent(p) => (count as f64) > (total as f64) * p / 100.0,
        }
    }
}

/// A size as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a node count like 2 or a percentage like \"25%\""
)]
pub enum SizeValue {
    Count(i64),
    Text(String),
}

/// The validated `[rollout]` table.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    /// Batch sizes; empty means one batch of every node.
    pub batches: Vec<Size>,
    pub concurrency: Option<usize>,
    /// Failed nodes allowed across the run; `None` is unlimited.
    pub max_failed: Option<Size>,
    /// Unreachable nodes allowed across the run; `None` is unlimited.
    pub max_unreachable: Option<Size>,
    pub pause: Duration,
}

impl Rollout {
    /// Splits `total` nodes into batch sizes: the first entry is the canary,
    /// the last size repeats until every node is placed. Never a 0 batch.
    pub fn batch_sizes(&self, total: usize) -> Vec<usize> {
        if self.batches.is_empty() {
            return if total == 0 { vec![] } else { vec![total] };
        }
        let mut sizes = Vec::new();
        let mut left = total;
        let mut i = 0;
        while left > 0 {
            let spec = self.batches[i.min(self.batches.len() - 1)];
            let n = spec.of(total).max(1).min(left);
            sizes.push(n);
            left -= n;
            i += 1;
        }
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(batches: &[Size]) -> Rollout {
        Rollout {
            batches: batches.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn canary_then_percent_and_the_last_size_repeats() {
        let r = rollout(&[Size::Count(1), Size::Percent(50.0)]);
        assert_eq!(r.batch_sizes(5), vec![1, 2, 2]);
        assert_eq!(r.batch_sizes(1), vec![1]);
        assert_eq!(r.batch_sizes(10), vec![1, 5, 4]);
        assert_eq!(rollout(&[Size::Count(1)]).batch_sizes(3), vec![1, 1, 1]);
        assert_eq!(
            rollout(&[Size::Percent(10.0)]).batch_sizes(5),
            vec![1, 1, 1, 1, 1]
        );
        assert_eq!(rollout(&[]).batch_sizes(7), vec![7]);
        assert_eq!(
            rollout(&[Size::Count(0), Size::Count(3)]).batch_sizes(4),
            vec![1, 3]
        );
    }

    #[test]
    fn budgets_count_or_percent() {
        assert!(!Size::Count(0).exceeded_by(0, 5));
        assert!(Size::Count(0).exceeded_by(1, 5));
        assert!(!Size::Count(1).exceeded_by(1, 5));
        assert!(Size::Percent(20.0).exceeded_by(2, 5));
        assert!(!Size::Percent(20.0).exceeded_by(1, 5));
        assert!(Size::Percent(10.0).exceeded_by(1, 5));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(
            Size::parse(&SizeValue::Text("50%".into())),
            Ok(Size::Percent(50.0))
        );
        assert_eq!(Size::parse(&SizeValue::Count(2)), Ok(Size::Count(2)));
        assert!(Size::parse(&SizeValue::Text("half".into())).is_err());
        assert!(Size::parse(&SizeValue::Text("150%".into())).is_err());
        assert!(Size::parse(&SizeValue::Count(-1)).is_err());
    }
}
