use super::Folded;
use crate::{config::FoldConfig, state::CustomerState, validate::Valid};

/// A login or product use: activity (if configured) and channel use.
pub(super) fn apply(s: &mut CustomerState, ev: &Valid<'_>, cfg: &FoldConfig) -> Folded {
    s.note_channel(ev, cfg);
    Folded::Applied
}
