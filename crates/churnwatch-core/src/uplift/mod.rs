//! Measured uplift (pure core): whether contacting customers keeps them,
//! measured against the randomised control group of `[outreach.holdout]`.
//!
//! [`trial`] follows one decision per customer through its horizon in the
//! customer's state (so it survives a restore) and says, when the horizon
//! passes in stream time, whether the customer was retained. [`interval`]
//! turns the counts per arm into the difference in churn rate with its 95%
//! interval and the contacts needed to keep one customer.

pub mod interval;
pub mod trial;

pub use interval::{newcombe, wilson, ArmCounts, Nnt, Uplift, UpliftCounts};
pub use trial::Measured;
