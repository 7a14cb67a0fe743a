use serde::{Deserialize, Serialize};

use crate::{config::Thresholds, pb::RiskLevel};

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
