//! The figures a churn score is judged by, as pure functions of
//! (prediction, outcome) pairs: no I/O, no clock. `y = true` means the
//! customer churned (the event the score predicts); a higher score means
//! more likely to churn.
//!
//! Hand-written rather than taken from a crate: each is a few lines, and the
//! Rust statistics crates in reach (statrs, linfa) do not carry ranking or
//! calibration measures with the tie handling stated here.

use serde::Serialize;

/// Area under the ROC curve: the probability that a random churner scores
/// above a random non-churner, ties counting one half (Mann–Whitney U with
/// mid-ranks). `None` unless both outcomes occur.
pub fn auc(scores: &[f64], y: &[bool]) -> Option<f64> {
    let pos = y.iter().filter(|v| **v).count();
    let neg = y.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let order = ascending(scores);
    // Mid-ranks (1-based) over groups of equal scores.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += mid * order[i..=j].iter().filter(|k| y[**k]).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

/// Area under the precision–recall curve as average precision: the mean,
/// over churners, of the precision at the threshold that first includes
/// them; customers with equal scores enter together. `None` without churners.
pub fn pr_auc(scores: &[f64], y: &[bool]) -> Option<f64> {
    let pos = y.iter().filter(|v| **v).count();
    if pos == 0 {
        return None;
    }
    let mut order = ascending(scores);
    order.reverse();
    let (mut tp, mut seen, mut ap) = (0usize, 0usize, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let new_tp = order[i..=j].iter().filter(|k| y[**k]).count();
        tp += new_tp;
        seen += j - i + 1;
        ap += new_tp as f64 * tp as f64 / seen as f64;
        i = j + 1;
    }
    Some(ap / pos as f64)
}

/// Mean squared difference between the probability and the outcome (0/1).
pub fn brier(p: &[f64], y: &[bool]) -> Option<f64> {
    mean(
        p.iter()
            .zip(y)
            .map(|(p, y)| (p - f64::from(u8::from(*y))).powi(2)),
    )
}

/// Brier skill against predicting the base rate to everyone:
/// 1 - Brier / (base (1 - base)); above 0 is better than the base rate.
pub fn brier_skill(brier: f64, base_rate: f64) -> Option<f64> {
    let reference = base_rate * (1.0 - base_rate);
    (reference > 0.0).then(|| 1.0 - brier / reference)
}

/// Probabilities are kept this far from 0 and 1 in the log loss, so that
/// one confident mistake gives a large, finite penalty.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// Mean negative log-likelihood of the outcomes (natural log).
pub fn log_loss(p: &[f64], y: &[bool]) -> Option<f64> {
    mean(p.iter().zip(y).map(|(p, y)| {
        let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
        if *y {
            -p.ln()
        } else {
            -(1.0 - p).ln()
        }
    }))
}

/// The share of outcomes that are churn.
pub fn base_rate(y: &[bool]) -> Option<f64> {
    mean(y.iter().map(|v| f64::from(u8::from(*v))))
}

/// One bin of a reliability table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bin {
    /// Predictions in [lower, upper) (the last bin includes 1).
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Mean prediction in the bin (`None` when empty).
    pub mean_predicted: Option<f64>,
    /// Share of churners in the bin (`None` when empty).
    pub observed: Option<f64>,
}

/// Reliability table with `bins` equal-width bins over [0, 1].
pub fn reliability(p: &[f64], y: &[bool], bins: usize) -> Vec<Bin> {
    let bins = bins.max(1);
    let mut sum_p = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    let mut n = vec![0u64; bins];
    for (p, y) in p.iter().zip(y) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sum_p[b] += p;
        sum_y[b] += f64::from(u8::from(*y));
        n[b] += 1;
    }
    (0..bins)
        .map(|b| Bin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            count: n[b],
            mean_predicted: (n[b] > 0).then(|| sum_p[b] / n[b] as f64),
            observed: (n[b] > 0).then(|| sum_y[b] / n[b] as f64),
        })
        .collect()
}

/// Expected calibration error of a reliability table: the count-weighted
/// mean of |observed - mean predicted| over the bins.
pub fn ece(table: &[Bin]) -> Option<f64> {
    let total: u64 = table.iter().map(|b| b.count).sum();
    if total == 0 {
        return None;
    }
    let gap: f64 = table
        .iter()
        .filter_map(|b| Some(b.count as f64 * (b.observed? - b.mean_predicted?).abs()))
        .sum();
    Some(gap / total as f64)
}

/// Precision and lift among the highest-scored share of customers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopShare {
    /// The share asked for (0.01 = top 1%).
    pub share: f64,
    /// Customers in it: ceil(share x customers), at least 1.
    pub customers: u64,
    pub precision: f64,
    /// Precision / base rate.
    pub lift: Option<f64>,
}

/// The top `share` by score (ties broken by input order, so give the
/// inputs in a stable order), its precision and lift.
pub fn top_share(scores: &[f64], y: &[bool], share: f64) -> Option<TopShare> {
    if scores.is_empty() {
        return None;
    }
    let order = descending(scores);
    let k = ((share * scores.len() as f64).ceil() as usize).clamp(1, scores.len());
    let hits = order[..k].iter().filter(|i| y[**i]).count();
    let precision = hits as f64 / k as f64;
    let base = base_rate(y)?;
    Some(TopShare {
        share,
        customers: k as u64,
        precision,
        lift: (base > 0.0).then(|| precision / base),
    })
}

/// Cumulative gains: for each of `points` equal steps in the share of
/// customers contacted (highest score first), the share of all churners
/// among them. The first point is (0, 0), the last (1, 1).
pub fn gains(scores: &[f64], y: &[bool], points: usize) -> Vec<(f64, f64)> {
    let pos = y.iter().filter(|v| **v).count();
    if scores.is_empty() || pos == 0 {
        return Vec::new();
    }
    let order = descending(scores);
    let mut cum = vec![0usize; order.len() + 1];
    for (i, k) in order.iter().enumerate() {
        cum[i + 1] = cum[i] + usize::from(y[*k]);
    }
    (0..=points.max(1))
        .map(|s| {
            let share = s as f64 / points.max(1) as f64;
            let k = (share * order.len() as f64).round() as usize;
            (share, cum[k.min(order.len())] as f64 / pos as f64)
        })
        .collect()
}

/// A histogram of `values` in `bins` equal-width bins over [0, 1].
pub fn histogram(values: impl Iterator<Item = f64>, bins: usize) -> Vec<u64> {
    let bins = bins.max(1);
    let mut h = vec![0u64; bins];
    for v in values {
        h[((v.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1)] += 1;
    }
    h
}

/// Platt scaling: the logistic fit p = sigmoid(a + b s) of the outcomes on
/// one score, by Newton's method on the log-likelihood (two parameters; a
/// tiny ridge keeps it finite when the score separates the outcomes).
/// Returns (a, b).
pub fn platt(s: &[f64], y: &[bool]) -> (f64, f64) {
    const RIDGE: f64 = 1e-6;
    let base = base_rate(y).unwrap_or(0.5).clamp(1e-6, 1.0 - 1e-6);
    let (mut a, mut b) = ((base / (1.0 - base)).ln(), 0.0);
    for _ in 0..100 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, RIDGE, 0.0, RIDGE);
        for (s, y) in s.iter().zip(y) {
            let p = sigmoid(a + b * s);
            let r = f64::from(u8::from(*y)) - p;
            let w = p * (1.0 - p);
            ga += r;
            gb += r * s;
            haa += w;
            hab += w * s;
            hbb += w * s * s;
        }
        gb -= RIDGE * b;
        let det = haa * hbb - hab * hab;
        if !(det.is_finite() && det > 0.0) {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a += da;
        b += db;
        if da.abs() + db.abs() < 1e-10 {
            break;
        }
    }
    (a, b)
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (mut sum, mut n) = (0.0, 0u64);
    for v in values {
        sum += v;
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

/// Indices sorted by score, ascending; equal scores keep input order.
fn ascending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    order
}

/// Indices sorted by score, descending; equal scores keep input order.
fn descending(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    // Eight customers, worked by hand:
    //   p:  0.9  0.8  0.7  0.6  0.4  0.3  0.2  0.1
    //   y:   1    1    0    1    0    0    1    0
    // Four churners: base rate 0.5.
    const P: [f64; 8] = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1];
    const Y: [bool; 8] = [true, true, false, true, false, false, true, false];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_counts_the_pairs_ranked_right() {
        // Churner/non-churner pairs ranked right: 0.9 and 0.8 beat all four
        // non-churners (8), 0.6 beats 0.4, 0.3, 0.1 (3), 0.2 beats 0.1 (1):
        // 12 of 16.
        assert_eq!(auc(&P, &Y), Some(12.0 / 16.0));
        // A tie counts one half: {0.5 churner, 0.5 not} -> 0.5.
        assert_eq!(auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(auc(&[0.5, 0.4], &[true, true]), None);
    }

    #[test]
    fn pr_auc_is_average_precision() {
        // Churners enter at ranks 1, 2, 4 and 7: precision 1, 1, 3/4, 4/7.
        let want = (1.0 + 1.0 + 0.75 + 4.0 / 7.0) / 4.0;
        assert!(close(pr_auc(&P, &Y).unwrap_or(0.0), want));
        // Equal scores enter together: both at precision 1/2.
        assert_eq!(pr_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
    }

    #[test]
    fn brier_skill_and_log_loss_by_hand() {
        // Squared errors: .01 .04 .49 .16 .16 .09 .64 .01 = 1.60; / 8 = 0.2.
        let b = brier(&P, &Y).unwrap_or(0.0);
        assert!(close(b, 0.2));
        // Base rate 0.5: reference 0.25, skill 1 - 0.2 / 0.25 = 0.2.
        assert!(close(brier_skill(b, 0.5).unwrap_or(0.0), 0.2));
        let want = -(0.9f64.ln()
            + 0.8f64.ln()
            + 0.3f64.ln()
            + 0.6f64.ln()
            + 0.6f64.ln()
            + 0.7f64.ln()
            + 0.2f64.ln()
            + 0.9f64.ln())
            / 8.0;
        assert!(close(log_loss(&P, &Y).unwrap_or(0.0), want));
        assert!(log_loss(&[1.0], &[false]).is_some_and(|l| l.is_finite() && l > 30.0));
    }

    #[test]
    fn reliability_and_ece_by_hand() {
        let t = reliability(&P, &Y, 10);
        assert_eq!(t.len(), 10);
        // Bin [0.9, 1.0]: one customer, 0.9 predicted, churned.
        assert_eq!(t[9].count, 1);
        assert_eq!(t[9].observed, Some(1.0));
        // Bin [0.5, 0.6) is empty; 0.6 falls in [0.6, 0.7).
        assert_eq!(t[5].count, 0);
        assert_eq!(t[5].observed, None);
        assert_eq!(t[6].count, 1);
        // One customer per non-empty bin: ECE = mean |y - p| =
        // (.1 + .2 + .7 + .4 + .4 + .3 + .8 + .1) / 8 = 3.0 / 8.
        assert!(close(ece(&t).unwrap_or(0.0), 3.0 / 8.0));
        // Two in one bin: |mean y - mean p| per bin, weighted by count.
        let t = reliability(&[0.12, 0.18, 0.95], &[true, false, true], 10);
        assert!(close(t[1].mean_predicted.unwrap_or(0.0), 0.15));
        assert!(close(ece(&t).unwrap_or(0.0), (2.0 * 0.35 + 0.05) / 3.0));
    }

    #[test]
    fn top_share_precision_and_lift() {
        // Top 25% = ceil(2) = the two highest, both churners.
        let t = top_share(&P, &Y, 0.25).unwrap_or_else(|| panic!("empty"));
        assert_eq!(t.customers, 2);
        assert_eq!(t.precision, 1.0);
        assert_eq!(t.lift, Some(2.0));
        // Top 1% of 8 is still one customer.
        assert_eq!(top_share(&P, &Y, 0.01).map(|t| t.customers), Some(1));
        // Top half: 3 of 4 churners -> precision .75, lift 1.5.
        let t = top_share(&P, &Y, 0.5).unwrap_or_else(|| panic!("empty"));
        assert_eq!((t.precision, t.lift), (0.75, Some(1.5)));
    }

    #[test]
    fn gains_curve_by_hand() {
        let g = gains(&P, &Y, 4);
        assert_eq!(
            g,
            vec![
                (0.0, 0.0),
                (0.25, 0.5),
                (0.5, 0.75),
                (0.75, 0.75),
                (1.0, 1.0)
            ]
        );
    }

    #[test]
    fn histogram_puts_one_in_the_last_bin() {
        assert_eq!(
            histogram([0.0, 0.05, 0.5, 1.0].into_iter(), 4),
            vec![2, 0, 1, 1]
        );
    }

    #[test]
    fn platt_recovers_a_known_logistic() {
        // Outcomes drawn deterministically as exact frequencies: at score s,
        // a share sigmoid(-1 + 2 s) of 1000 customers churn.
        let (mut s, mut y) = (Vec::new(), Vec::new());
        for i in 0..=10 {
            let x = f64::from(i) / 10.0;
            let k = (sigmoid(-1.0 + 2.0 * x) * 1000.0).round() as usize;
            for j in 0..1000 {
                s.push(x);
                y.push(j < k);
            }
        }
        let (a, b) = platt(&s, &y);
        assert!((a + 1.0).abs() < 0.01 && (b - 2.0).abs() < 0.01, "{a} {b}");
    }
}
