//! The report as a person reads it on a terminal. Pure: report in, text out.

use std::fmt::Write;

use super::evaluate::{Figures, Report};

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{:.1}%", v * 100.0))
}

fn figure_row(out: &mut String, name: &str, x: &Figures) {
    let top = |i: usize| {
        x.top.get(i).map_or("-".to_owned(), |t| {
            format!("{} {}", f(t.lift, 2), pct(Some(t.precision)))
        })
    };
    let _ = writeln!(
        out,
        "  {name:<18} {:>6} {:>7} {:>7} {:>8} {:>8} {:>6}  {:>13} {:>13} {:>13}",
        f(x.auc, 3),
        f(x.pr_auc, 3),
        f(x.brier, 4),
        f(x.brier_skill, 3),
        f(x.log_loss, 3),
        f(x.ece, 3),
        top(0),
        top(1),
        top(2),
    );
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "backtest at {} over {:.0} days: {} customers scored ({} without activity not scored), {} churned, base rate {}",
        r.cutoff,
        r.horizon_days,
        r.customers,
        r.without_activity,
        r.churned,
        pct(r.base_rate)
    );
    let _ = writeln!(
        out,
        "\nranking and calibration (churn = no activity in the horizon; top k%: lift precision)"
    );
    let _ = writeln!(
        out,
        "  {:<18} {:>6} {:>7} {:>7} {:>8} {:>8} {:>6}  {:>13} {:>13} {:>13}",
        "predictor",
        "AUC",
        "PR-AUC",
        "Brier",
        "skill",
        "logloss",
        "ECE",
        "top 1%",
        "top 5%",
        "top 10%"
    );
    figure_row(&mut out, "risk", &r.risk);
    for b in &r.baselines {
        figure_row(&mut out, &format!("{} *", b.name), &b.figures);
    }
    let _ = writeln!(
        out,
        "  * baselines: calibration figures after an in-sample logistic fit on the test set itself (optimistic for them)"
    );
    let _ = writeln!(out, "\nreliability of risk (10 bins)");
    let _ = writeln!(
        out,
        "  {:<11} {:>9} {:>10} {:>9}",
        "bin", "customers", "predicted", "observed"
    );
    for b in &r.risk.reliability {
        let _ = writeln!(
            out,
            "  {:<11} {:>9} {:>10} {:>9}",
            format!("{:.1}-{:.1}", b.lower, b.upper),
            b.count,
            f(b.mean_predicted, 3),
            f(b.observed, 3)
        );
    }
    let _ = writeln!(
        out,
        "\nablation (the signal's part of the logit taken out, the rest as fitted)"
    );
    let _ = writeln!(
        out,
        "  {:<18} {:>9} {:>6} {:>8} {:>7} {:>8}",
        "signal", "customers", "AUC", "change", "Brier", "change"
    );
    for a in &r.ablation {
        let _ = writeln!(
            out,
            "  {:<18} {:>9} {:>6} {:>8} {:>7} {:>8}",
            a.signal,
            a.customers_with_signal,
            f(a.auc, 3),
            f(a.auc_change, 3),
            f(a.brier, 4),
            f(a.brier_change, 4)
        );
    }
    let o = &r.outreach;
    let _ = writeln!(
        out,
        "\noutreach the policy sent in the horizon: {} to {} customers ({:.1} per week), precision {}, recall {}",
        o.sent,
        o.customers_contacted,
        o.per_week_mean,
        pct(o.precision),
        pct(o.recall)
    );
    if !o.suppressed_by_reason.is_empty() {
        let s: Vec<String> = o
            .suppressed_by_reason
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "  suppressed: {}", s.join(", "));
    }
    let _ = writeln!(
        out,
        "\nactivity in the horizon by calibration-period frequency (repeat active days)"
    );
    let _ = writeln!(
        out,
        "  {:<6} {:>9} {:>8} {:>10}",
        "x", "customers", "actual", "predicted"
    );
    for b in &r.frequency {
        let _ = writeln!(
            out,
            "  {:<6} {:>9} {:>8.3} {:>10.3}",
            b.x, b.customers, b.mean_actual, b.mean_predicted
        );
    }
    if !r.uplift.is_empty() {
        let _ = writeln!(
            out,
            "\nuplift by playbook (holdout; decisions whose horizon closed before the window's end; churn = no activity within the horizon of the decision)"
        );
        let _ = writeln!(
            out,
            "  {:<20} {:>15} {:>15} {:>10} {:>18}  contacts to keep one customer",
            "playbook", "contacted churn", "held out churn", "difference", "95% CI (Newcombe)"
        );
        for u in &r.uplift {
            let arm = |a: &crate::uplift::ArmCounts| format!("{}/{}", a.churned(), a.decided);
            let ci = match (u.low, u.high) {
                (Some(l), Some(h)) => format!("[{:+.3}, {:+.3}]", l, h),
                _ => "-".to_owned(),
            };
            let _ = writeln!(
                out,
                "  {:<20} {:>15} {:>15} {:>10} {:>18}  {}",
                u.playbook,
                format!("{} {}", pct(u.churn_contacted), arm(&u.contacted)),
                format!("{} {}", pct(u.churn_held_out), arm(&u.held_out)),
                u.difference.map_or("-".to_owned(), |d| format!("{d:+.3}")),
                ci,
                u.nnt
            );
        }
    }
    if let Some(t) = &r.targeting {
        targeting(&mut out, t);
    }
    if let Some(t) = &r.truth {
        let _ = writeln!(
            out,
            "\nground truth ({} customers matched; AUC of risk for really left by the horizon's end {})",
            t.matched,
            f(t.auc_left, 3)
        );
        let _ = writeln!(
            out,
            "  {:<52} {:>9} {:>8} {:>10} {:>6}",
            "group", "customers", "flagged", "contacted", "risk"
        );
        for g in &t.groups {
            let _ = writeln!(
                out,
                "  {:<52} {:>9} {:>8} {:>10} {:>6}",
                g.group,
                g.customers,
                pct(g.recall_flagged),
                pct(g.recall_contacted),
                f(g.mean_risk, 3)
            );
        }
    }
    out
}

fn targeting(out: &mut String, t: &super::saves::SavesComparison) {
    let _ = writeln!(
        out,
        "\ntargeting at the same volume ({} contacts at the cutoff; uplift measured before it, used with at least {} closed trials per arm)",
        t.risk.contacts, t.min_per_arm
    );
    let measured: Vec<String> = t
        .measured
        .iter()
        .map(|(p, u)| format!("{p} {u:+.3}"))
        .collect();
    let _ = writeln!(
        out,
        "  uplift in use: {}; fallback (pooled) {}",
        if measured.is_empty() {
            "none measured yet (both rankings are the risk ranking)".to_owned()
        } else {
            measured.join(", ")
        },
        t.pooled.map_or("-".to_owned(), |p| format!("{p:+.3}"))
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>9} {:>26} {:>24}  contacts by playbook",
        "ranking", "contacts", "expected kept per contact", "expected value per contact"
    );
    for s in [&t.risk, &t.expected_saves] {
        let name = match s.targeting {
            crate::outreach::targeting::Targeting::Risk => "risk",
            crate::outreach::targeting::Targeting::ExpectedSaves => "expected_saves",
        };
        let mix: Vec<String> = s
            .by_playbook
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  {:<16} {:>9} {:>26.4} {:>24.2}  {}",
            name,
            s.contacts,
            s.kept_per_contact,
            s.value_kept_per_contact,
            mix.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "  gain in customers kept per contact: {:+.4} (95% CI {:+.4} to {:+.4}){}",
        t.gain,
        t.gain_low,
        t.gain_high,
        if t.significant {
            ""
        } else {
            ": not significant, no gain claimed"
        }
    );
}
