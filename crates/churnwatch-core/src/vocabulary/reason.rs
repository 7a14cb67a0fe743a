//! The reason codes of a score: one per part of the risk that a person can
//! act on, each with its stable code (outreach `reasons[].code`, the
//! `/customers/{id}` view, the playbook mapping `outreach.playbooks`).

use std::fmt;

use serde::Serialize;

/// A score's reason, in a fixed order (ties in contribution keep it; a
/// reason's bit in [`reason_mask`] is its place here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Silence: the population model's rise in risk since the last active
    /// day, and silence against the customer's own rhythm (overdue).
    Silence,
    RateDrop,
    SatisfactionDrop,
    Friction,
    Escalation,
    Renewal,
}

impl ReasonCode {
    pub const ALL: [ReasonCode; 6] = [
        ReasonCode::Silence,
        ReasonCode::RateDrop,
        ReasonCode::SatisfactionDrop,
        ReasonCode::Friction,
        ReasonCode::Escalation,
        ReasonCode::Renewal,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ReasonCode::Silence => "silence",
            ReasonCode::RateDrop => "rate_drop",
            ReasonCode::SatisfactionDrop => "satisfaction_drop",
            ReasonCode::Friction => "friction",
            ReasonCode::Escalation => "escalation",
            ReasonCode::Renewal => "renewal",
        }
    }

    /// The reason with this code, if any.
    pub fn from_code(code: &str) -> Option<ReasonCode> {
        ReasonCode::ALL.into_iter().find(|r| r.as_str() == code)
    }

    /// This reason's bit in a [`reason_mask`].
    pub const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stable codes, in [`ReasonCode::ALL`]'s order.
pub const REASON_CODES: [&str; 6] = {
    let mut codes = [""; 6];
    let mut i = 0;
    while i < codes.len() {
        codes[i] = ReasonCode::ALL[i].as_str();
        i += 1;
    }
    codes
};

/// A bit set of reasons (bit i = `ReasonCode::ALL[i]`).
pub fn reason_mask(codes: impl IntoIterator<Item = ReasonCode>) -> u8 {
    codes.into_iter().fold(0, |m, r| m | r.bit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_stable_strings_and_read_back() {
        for r in ReasonCode::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(ReasonCode::from_code(r.as_str()), Some(r));
        }
        assert_eq!(ReasonCode::from_code("overdue"), None);
        assert_eq!(
            REASON_CODES,
            [
                "silence",
                "rate_drop",
                "satisfaction_drop",
                "friction",
                "escalation",
                "renewal"
            ]
        );
    }

    #[test]
    fn a_mask_has_one_bit_per_reason_in_their_order() {
        assert_eq!(reason_mask([]), 0);
        assert_eq!(reason_mask([ReasonCode::Silence]), 1);
        assert_eq!(
            reason_mask([ReasonCode::Renewal, ReasonCode::RateDrop]),
            0b10_0010
        );
        assert_eq!(reason_mask(ReasonCode::ALL), 0b11_1111);
    }
}
