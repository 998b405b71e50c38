//! Learning-rate schedules: the factor applied to the base learning rate in each epoch. A
//! schedule is a pure function of the epoch, so a resumed run follows it exactly.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

/// How the learning rate changes from epoch to epoch.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// The IWAE paper's (Burda et al. 2015): stage i = 0, 1, 2, ... lasts 3^i epochs at
    /// `lr * 10^(-i/7)`.
    Iwae,
    /// Cosine annealing from the base rate to 0 over `epochs` epochs.
    Cosine {
        /// The length of the schedule (the run's total epochs).
        epochs: usize,
    },
    /// `lr * gamma^epoch`.
    Exponential {
        /// The factor per epoch, in (0, 1].
        gamma: f64,
    },
}

impl LrSchedule {
    /// The factor on the base learning rate in epoch `epoch` (0-based).
    pub fn factor(&self, epoch: usize) -> f64 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Iwae => {
                // Stage i covers epochs (3^i - 1) / 2 .. (3^(i+1) - 1) / 2.
                let (mut stage, mut end) = (0i32, 1usize);
                while epoch >= end {
                    stage += 1;
                    end += 3usize.pow(stage as u32);
                }
                10f64.powf(-f64::from(stage) / 7.0)
            }
            LrSchedule::Cosine { epochs } => 0.5 * (1.0 + (PI * epoch as f64 / epochs.max(1) as f64).cos()),
            LrSchedule::Exponential { gamma } => gamma.powi(epoch as i32),
        }
    }

    /// The same schedule for a run of `epochs` epochs (cosine's length; others unchanged).
    pub fn for_epochs(self, epochs: usize) -> Self {
        match self {
            LrSchedule::Cosine { .. } => LrSchedule::Cosine { epochs },
            other => other,
        }
    }
}

impl fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrSchedule::Constant => write!(f, "constant"),
            LrSchedule::Iwae => write!(f, "iwae"),
            LrSchedule::Cosine { epochs } => write!(f, "cosine over {epochs} epochs"),
            LrSchedule::Exponential { gamma } => write!(f, "exponential:{gamma}"),
        }
    }
}

impl FromStr for LrSchedule {
    type Err = String;
    /// `constant`, `iwae`, `cosine` (its length is set from the run's epochs) or
    /// `exponential[:GAMMA]` (default 0.95).
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, arg) = match lower.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (lower.as_str(), None),
        };
        match (name, arg) {
            ("constant", None) => Ok(LrSchedule::Constant),
            ("iwae", None) => Ok(LrSchedule::Iwae),
            ("cosine", None) => Ok(LrSchedule::Cosine { epochs: 1 }),
            ("exponential", arg) => {
                let gamma = match arg {
                    None => 0.95,
                    Some(a) => a.parse::<f64>().map_err(|_| format!("'{s}': GAMMA must be a number"))?,
                };
                if !(gamma > 0.0 && gamma <= 1.0) {
                    return Err(format!("'{s}': GAMMA must be in (0, 1]"));
                }
                Ok(LrSchedule::Exponential { gamma })
            }
            _ => Err(format!("'{s}': expected constant, iwae, cosine or exponential[:GAMMA]")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iwae_paper_stages() {
        // Stages of 1, 3, 9, 27 epochs: epoch 0; 1-3; 4-12; 13-39.
        let f = |e| LrSchedule::Iwae.factor(e);
        assert_eq!(f(0), 1.0);
        for (e, stage) in [(1, 1), (3, 1), (4, 2), (12, 2), (13, 3), (39, 3), (40, 4)] {
            assert!((f(e) - 10f64.powf(-(stage as f64) / 7.0)).abs() < 1e-15, "epoch {e}");
        }
    }

    #[test]
    fn cosine_exponential_and_parsing() {
        let c = "cosine".parse::<LrSchedule>().unwrap().for_epochs(10);
        assert_eq!(c.factor(0), 1.0);
        assert!((c.factor(5) - 0.5).abs() < 1e-15 && c.factor(10).abs() < 1e-15);
        let e: LrSchedule = "exponential:0.5".parse().unwrap();
        assert_eq!(e.factor(3), 0.125);
        assert_eq!(
            "exponential".parse::<LrSchedule>().unwrap(),
            LrSchedule::Exponential { gamma: 0.95 }
        );
        assert!("exponential:2".parse::<LrSchedule>().is_err());
        assert!(
            "linear"
                .parse::<LrSchedule>()
                .unwrap_err()
                .contains("expected constant")
        );
        assert_eq!(LrSchedule::Constant.factor(1000), 1.0);
    }
}
