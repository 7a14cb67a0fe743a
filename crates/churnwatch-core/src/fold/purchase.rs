use super::Folded;
use crate::{config::FoldConfig, pb::Purchase, state::CustomerState, validate::Valid};

pub(super) fn apply(
    s: &mut CustomerState,
    ev: &Valid<'_>,
    p: &Purchase,
    cfg: &FoldConfig,
) -> Folded {
    s.value.purchases = s.value.purchases.saturating_add(1);
    s.value.amount += p.amount;
    s.note_channel(ev, cfg);
    Folded::Applied
}
