use super::Folded;
use crate::{
    pb::{Channel, Consent},
    state::CustomerState,
    validate::Valid,
};

/// The latest consent statement (by event time) wins. Without a channel it
/// sets the global permission and clears per-channel exceptions; with one, it
/// sets that channel only.
pub(super) fn apply(s: &mut CustomerState, ev: &Valid<'_>, c: &Consent) -> Folded {
    let consent = &mut s.consent;
    if ev.at < consent.updated_at {
        return Folded::Applied;
    }
    consent.updated_at = ev.at;
    match Channel::try_from(c.channel).unwrap_or(Channel::Unspecified) {
        Channel::Unspecified => {
            consent.global = Some(c.contact_allowed);
            consent.allowed = 0;
            consent.denied = 0;
        }
        ch => {
            let bit = 1u16 << (ch as u16);
            if c.contact_allowed {
                consent.allowed |= bit;
                consent.denied &= !bit;
            } else {
                consent.denied |= bit;
                consent.allowed &= !bit;
            }
        }
    }
    Folded::Applied
}
