//! Whom outreach contacts first (docs/uplift.md, "Targeting by expected
//! saves"): a word of the core configuration that the outreach policy acts on.

use serde::{Deserialize, Serialize};

/// `outreach.targeting`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Targeting {
    /// Rank by risk (version one's behaviour).
    #[default]
    Risk,
    /// Rank by expected value kept.
    ExpectedSaves,
}
