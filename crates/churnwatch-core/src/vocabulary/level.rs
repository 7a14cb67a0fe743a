use serde::{Deserialize, Serialize};

use crate::pb::RiskLevel;

/// Risk level: the risk cut at the configured thresholds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Low, Level::Medium, Level::High, Level::Critical];

    pub fn of(risk: f64, t: &Thresholds) -> Level {
        if risk >= t.critical {
            Level::Critical
        } else if risk >= t.high {
            Level::High
        } else if risk >= t.medium {
            Level::Medium
        } else {
            Level::Low
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    pub fn to_proto(self) -> RiskLevel {
        match self {
            Level::Low => RiskLevel::Low,
            Level::Medium => RiskLevel::Medium,
            Level::High => RiskLevel::High,
            Level::Critical => RiskLevel::Critical,
        }
    }

    pub fn from_number(n: u32) -> Level {
        match n {
            2 => Level::Medium,
            3 => Level::High,
            4 => Level::Critical,
            _ => Level::Low,
        }
    }
}

/// Lower bounds of the risk levels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
}

impl Default for Thresholds {
    /// Risk is P(no activity in the horizon), so each bound is the share of
    /// customers at it who would go silent. `high` (the outreach trigger) is
    /// 0.9: 9 in 10 at it go silent without action, so the team's time goes
    /// to the surest losses; and a first purchase is not yet `high` where
    /// most customers buy once (the CDNOW prior gives a new buyer 85% for no
    /// repeat in 30 days; silence takes them past 90% about a month later).
    /// `medium` 0.5: silence is the likelier outcome. `critical` 0.97: all
    /// but certain to be lost, a win-back rather than a check-in.
    fn default() -> Self {
        Thresholds {
            medium: 0.5,
            high: 0.9,
            critical: 0.97,
        }
    }
}
