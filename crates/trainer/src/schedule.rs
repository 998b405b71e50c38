//! Learning-rate schedules: the factor applied to the base learning rate in each epoch. An
//! epoch-based schedule is a pure function of the epoch, so a resumed run follows it exactly
//! and a run is bitwise reproducible on any machine. The time-based one ([`LrSchedule::CosineTime`])
//! is a function of the training seconds recorded so far: it fits the whole schedule into a
//! time budget on any machine, and a resumed run continues it from the recorded seconds, but
//! the epochs at which the rate changes (hence the weights) depend on the machine's speed.

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
    /// Cosine annealing from the base rate to 0 over `seconds` of training (the seconds spent
    /// on training batches, as recorded in the run; evaluation excluded), set at the start of
    /// each epoch from the seconds spent before it. `seconds = 0` stands for "the run's time
    /// budget", settled when the run starts.
    CosineTime {
        /// The length of the schedule in seconds of training.
        seconds: f64,
    },
    /// `lr * gamma^epoch`.
    Exponential {
        /// The factor per epoch, in (0, 1].
        gamma: f64,
    },
}

impl LrSchedule {
    /// The factor on the base learning rate in epoch `epoch` (0-based), which starts after
    /// `seconds` seconds of training.
    pub fn factor(&self, epoch: usize, seconds: f64) -> f64 {
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
            LrSchedule::CosineTime { seconds: length } => {
                let spent = if length > 0.0 {
                    (seconds / length).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                0.5 * (1.0 + (PI * spent).cos())
            }
            LrSchedule::Exponential { gamma } => gamma.powi(epoch as i32),
        }
    }

    /// The seconds of training the schedule lasts, for a time-based one.
    pub fn seconds(&self) -> Option<f64> {
        match *self {
            LrSchedule::CosineTime { seconds } => Some(seconds),
            _ => None,
        }
    }

    /// Whether a time-based schedule is over after `seconds` of training (the rate is 0).
    pub fn is_over(&self, seconds: f64) -> bool {
        self.seconds().is_some_and(|s| s > 0.0 && seconds >= s)
    }

    /// The schedule with a time-based length still unsettled (`cosine-time` without one)
    /// set to `budget` seconds; others unchanged.
    pub fn for_budget(self, budget: Option<f64>) -> Self {
        match (self, budget) {
            (LrSchedule::CosineTime { seconds: 0.0 }, Some(b)) => LrSchedule::CosineTime { seconds: b },
            (other, _) => other,
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
            LrSchedule::CosineTime { seconds } if *seconds == 0.0 => write!(f, "cosine-time"),
            LrSchedule::CosineTime { seconds } => write!(f, "cosine-time:{seconds}s"),
            LrSchedule::Exponential { gamma } => write!(f, "exponential:{gamma}"),
        }
    }
}

impl FromStr for LrSchedule {
    type Err = String;
    /// `constant`, `iwae`, `cosine` (its length is set from the run's epochs),
    /// `cosine-time[:DURATION]` (its length the time budget unless given, e.g.
    /// `cosine-time:45m`) or `exponential[:GAMMA]` (default 0.95).
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
            ("cosine-time", None) => Ok(LrSchedule::CosineTime { seconds: 0.0 }),
            ("cosine-time", Some(d)) => Ok(LrSchedule::CosineTime {
                seconds: parse_duration(d).map_err(|e| format!("'{s}': {e}"))?,
            }),
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
            _ => Err(format!(
                "'{s}': expected constant, iwae, cosine, cosine-time[:DURATION] or exponential[:GAMMA]"
            )),
        }
    }
}

/// `90s`, `60m`, `1.5h` or plain seconds, as seconds.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("'{s}': expected a duration like 90s, 60m or 1.5h")),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * scale),
        _ => Err(format!("'{s}': expected a positive duration like 90s, 60m or 1.5h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iwae_paper_stages() {
        // Stages of 1, 3, 9, 27 epochs: epoch 0; 1-3; 4-12; 13-39.
        let f = |e| LrSchedule::Iwae.factor(e, 0.0);
        assert_eq!(f(0), 1.0);
        for (e, stage) in [(1, 1), (3, 1), (4, 2), (12, 2), (13, 3), (39, 3), (40, 4)] {
            assert!((f(e) - 10f64.powf(-(stage as f64) / 7.0)).abs() < 1e-15, "epoch {e}");
        }
    }

    #[test]
    fn cosine_exponential_and_parsing() {
        let c = "cosine".parse::<LrSchedule>().unwrap().for_epochs(10);
        assert_eq!(c.factor(0, 0.0), 1.0);
        assert!((c.factor(5, 0.0) - 0.5).abs() < 1e-15 && c.factor(10, 0.0).abs() < 1e-15);
        let e: LrSchedule = "exponential:0.5".parse().unwrap();
        assert_eq!(e.factor(3, 0.0), 0.125);
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
        assert_eq!(LrSchedule::Constant.factor(1000, 0.0), 1.0);
    }

    #[test]
    fn cosine_time_follows_the_seconds_not_the_epochs() {
        let unsettled: LrSchedule = "cosine-time".parse().unwrap();
        assert_eq!(unsettled, LrSchedule::CosineTime { seconds: 0.0 });
        assert_eq!(unsettled.for_budget(None), unsettled);
        let c = unsettled.for_budget(Some(3600.0));
        assert_eq!(c, "cosine-time:60m".parse().unwrap());
        assert_eq!(c, "cosine-time:1h".parse().unwrap());
        // An explicit length is kept whatever the budget.
        assert_eq!(
            "cosine-time:30m"
                .parse::<LrSchedule>()
                .unwrap()
                .for_budget(Some(3600.0)),
            LrSchedule::CosineTime { seconds: 1800.0 }
        );
        for epoch in [0, 7, 500] {
            assert_eq!(c.factor(epoch, 0.0), 1.0);
            assert!((c.factor(epoch, 1800.0) - 0.5).abs() < 1e-15);
            assert!(c.factor(epoch, 3600.0).abs() < 1e-15 && c.factor(epoch, 9000.0).abs() < 1e-15);
        }
        assert!(!c.is_over(3599.0) && c.is_over(3600.0) && !unsettled.is_over(1e9));
        assert_eq!(c.seconds(), Some(3600.0));
        // Its spelling reads back as the same schedule.
        assert_eq!(c.to_string().parse::<LrSchedule>().unwrap(), c);
        assert_eq!(unsettled.to_string(), "cosine-time");
        for bad in ["cosine-time:soon", "cosine-time:-5m", "cosine-time:0"] {
            assert!(bad.parse::<LrSchedule>().unwrap_err().contains("duration"), "{bad}");
        }
    }
}
