//! The shared vocabulary of the core: the words that the configuration,
//! the customer state, the score and the outreach policy all speak. A leaf:
//! it depends on none of them (only on the generated [`crate::pb`] enums),
//! so they can all depend on it without depending on one another in a
//! circle; and the seven-signal record ([`Signals`]) that the weights and
//! the strengths are. Each is re-exported where it is used most (`score::Level`,
//! `config::Thresholds`, `outreach::Suppression`, ...), so either path works.

mod level;
mod reason;
mod signals;
mod suppression;
mod targeting;

pub use level::{Level, Thresholds};
pub use reason::{reason_mask, ReasonCode, REASON_CODES};
pub use signals::{Signals, SIGNALS};
pub use suppression::{suppression_code, Suppression};
pub use targeting::Targeting;
