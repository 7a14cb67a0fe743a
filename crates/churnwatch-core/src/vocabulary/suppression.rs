//! Why an outreach is held back: the suppression reasons, each with its
//! stable code (the `reason` label of `churnwatch_outreach_suppressed_total`,
//! replay's `suppressed_by_reason`, and the code a customer's state keeps).

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suppression {
    /// The customer withdrew consent (on every channel outreach could use).
    NoConsent,
    /// Too soon after the last outreach.
    Cooldown,
    /// The per-window cap is reached.
    FrequencyCap,
    /// An open ticket is being worked: support is already talking to them.
    TicketInProgress,
    /// The subscription is cancelled: churn has happened, it is not a risk.
    Cancelled,
    /// The customer asked to be forgotten.
    Erased,
    /// `expected_saves` targeting: the playbook's measured uplift is zero
    /// or negative, so contacting does not keep these customers.
    HarmfulPlaybook,
    /// `expected_saves` targeting: the risk weighed by the playbook's
    /// measured uplift and the customer's future value is below the
    /// trigger level.
    LowExpectedSaves,
}

impl Suppression {
    pub const ALL: [Suppression; 8] = [
        Suppression::NoConsent,
        Suppression::Cooldown,
        Suppression::FrequencyCap,
        Suppression::TicketInProgress,
        Suppression::Cancelled,
        Suppression::Erased,
        Suppression::HarmfulPlaybook,
        Suppression::LowExpectedSaves,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Suppression::NoConsent => "no_consent",
            Suppression::Cooldown => "cooldown",
            Suppression::FrequencyCap => "frequency_cap",
            Suppression::TicketInProgress => "ticket_in_progress",
            Suppression::Cancelled => "cancelled",
            Suppression::Erased => "erased",
            Suppression::HarmfulPlaybook => "harmful_playbook",
            Suppression::LowExpectedSaves => "low_expected_saves",
        }
    }
}

/// The interned code for a stored suppression reason.
pub fn suppression_code(text: &str) -> Option<&'static str> {
    Suppression::ALL
        .iter()
        .map(|s| s.code())
        .find(|c| *c == text)
}
