//! Priority from risk and customer value.
//!
//! `p = risk x (1 + min(1, lifetime_value / outreach.high_value))`, in [0, 2]:
//! URGENT from 1.5, HIGH from 1.1, NORMAL from 0.7, LOW below. An escalation
//! to a human is at least HIGH (the customer is waiting on several channels).

use crate::{
    config::OutreachConfig,
    pb::{Playbook, Priority},
};

pub fn priority(
    risk: f64,
    lifetime_value: f64,
    playbook: Playbook,
    cfg: &OutreachConfig,
) -> Priority {
    let value = (lifetime_value / cfg.high_value).clamp(0.0, 1.0);
    let p = risk * (1.0 + value);
    let by_formula = if p >= 1.5 {
        Priority::Urgent
    } else if p >= 1.1 {
        Priority::High
    } else if p >= 0.7 {
        Priority::Normal
    } else {
        Priority::Low
    };
    if playbook == Playbook::EscalateToAgent && by_formula < Priority::High {
        Priority::High
    } else {
        by_formula
    }
}
