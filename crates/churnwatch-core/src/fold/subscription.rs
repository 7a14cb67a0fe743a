use super::Folded;
use crate::{
    pb::Subscription,
    state::{CustomerState, SubscriptionFacts},
    validate::Valid,
};

/// The latest subscription event (by event time) states the facts.
pub(super) fn apply(s: &mut CustomerState, ev: &Valid<'_>, sub: &Subscription) -> Folded {
    let facts = s.subscription.get_or_insert_with(Default::default);
    if ev.at >= facts.updated_at {
        **facts = SubscriptionFacts {
            plan: sub.plan.as_str().into(),
            renews_at: sub.renews_at.as_ref().map_or(0, |t| t.seconds),
            cancelled: sub.cancelled,
            updated_at: ev.at,
        };
    }
    Folded::Applied
}
