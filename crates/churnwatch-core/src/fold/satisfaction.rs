//! Survey answers: last NPS/CSAT, a fast and a slow average on a 0-1 scale,
//! and the time of the last detractor or low CSAT.

use super::Folded;
use crate::{
    config::FoldConfig,
    pb::{survey::Score, Survey},
    state::{ContactMark, CustomerState},
    validate::Valid,
};

/// NPS 0-6 is a detractor (domain brief).
pub const DETRACTOR_MAX: u8 = 6;
/// CSAT 1-2 is a bad experience.
pub const LOW_CSAT_MAX: u8 = 2;

pub(super) fn apply(
    s: &mut CustomerState,
    ev: &Valid<'_>,
    survey: &Survey,
    cfg: &FoldConfig,
) -> Folded {
    s.note_channel(ev, cfg);
    let mark = ContactMark {
        at: ev.at,
        channel: ev.channel,
    };
    let (normalised, negative) = match survey.score {
        Some(Score::Nps(n)) => {
            let n = u8::try_from(n).unwrap_or(0);
            let sat = s.satisfaction_mut();
            if ev.at >= sat.last_answer_at {
                sat.last_nps = Some(n);
            }
            if n <= DETRACTOR_MAX {
                sat.last_detractor_at = sat.last_detractor_at.max(Some(ev.at));
            }
            (f32::from(n) / 10.0, n <= DETRACTOR_MAX)
        }
        Some(Score::Csat(c)) => {
            let c = u8::try_from(c).unwrap_or(1);
            let sat = s.satisfaction_mut();
            if ev.at >= sat.last_answer_at {
                sat.last_csat = Some(c);
            }
            if c <= LOW_CSAT_MAX {
                sat.last_low_csat_at = sat.last_low_csat_at.max(Some(ev.at));
            }
            (f32::from(c.saturating_sub(1)) / 4.0, c <= LOW_CSAT_MAX)
        }
        None => return Folded::Applied,
    };
    let sat = s.satisfaction_mut();
    if sat.answers == 0 {
        sat.ewma = normalised;
        sat.baseline = normalised;
    } else {
        sat.ewma += cfg.satisfaction_fast_weight * (normalised - sat.ewma);
        sat.baseline += cfg.satisfaction_baseline_weight * (normalised - sat.baseline);
    }
    sat.answers = sat.answers.saturating_add(1);
    sat.last_answer_at = sat.last_answer_at.max(ev.at);
    if negative {
        let support = s.support_mut();
        support.negative_experiences = support.negative_experiences.saturating_add(1);
        if support.last_negative.is_none_or(|n| n.at <= mark.at) {
            support.last_negative = Some(mark);
        }
    }
    Folded::Applied
}
