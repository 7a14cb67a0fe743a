//! The report as one self-contained HTML file: inline CSS and SVG, no
//! scripts, fonts or links, so it opens offline and prints as it shows.
//! Each plot is an `<svg class="plot" data-plot="NAME">` whose data points
//! are `circle.pt` or `rect.bar` elements (what the Chromium test counts).
//! Pure: report in, text out.

use std::fmt::Write;

use super::evaluate::{Figures, Report};

const W: f64 = 460.0;
const H: f64 = 300.0;
const LEFT: f64 = 50.0;
const RIGHT: f64 = 15.0;
const TOP: f64 = 15.0;
const BOTTOM: f64 = 40.0;
const COLOURS: [&str; 4] = ["#c0392b", "#2471a3", "#7d8c3a", "#8e44ad"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.digits$}"))
}

/// A plot area mapping data (x in [x0, x1], y in [y0, y1]) to pixels.
struct Chart {
    name: &'static str,
    x: (f64, f64),
    y: (f64, f64),
    body: String,
}

impl Chart {
    fn new(name: &'static str, x: (f64, f64), y: (f64, f64)) -> Self {
        let y = if y.1 > y.0 { y } else { (y.0, y.0 + 1.0) };
        Chart {
            name,
            x,
            y,
            body: String::new(),
        }
    }
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * (W - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0) * (H - TOP - BOTTOM)
    }
    fn line(&mut self, pts: &[(f64, f64)], colour: &str, dashed: bool, dots: bool, label: &str) {
        if pts.is_empty() {
            return;
        }
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", self.px(*x), self.py(*y)))
            .collect();
        let dash = if dashed {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let _ = write!(
            self.body,
            "<polyline class=\"series\" data-label=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.6\"{dash} points=\"{}\"/>",
            esc(label),
            path.join(" ")
        );
        if dots {
            for (x, y) in pts {
                let _ = write!(
                    self.body,
                    "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: {x:.3}, {y:.3}</title></circle>",
                    self.px(*x),
                    self.py(*y),
                    esc(label)
                );
            }
        }
    }
    /// A bar from x0 to x1 of height y (none for an empty bin).
    fn bar(&mut self, x0: f64, x1: f64, y: f64, colour: &str, title: &str) {
        if y <= self.y.0 {
            return;
        }
        let (a, b) = (self.px(x0), self.px(x1));
        let (top, base) = (self.py(y), self.py(self.y.0));
        let _ = write!(
            self.body,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\" fill-opacity=\"0.7\"><title>{}</title></rect>",
            a + 0.5,
            (b - a - 1.0).max(0.5),
            (base - top).max(0.0),
            esc(title)
        );
    }
    fn finish(
        self,
        xlabel: &str,
        ylabel: &str,
        xticks: &[(f64, String)],
        legend: &[(&str, &str)],
    ) -> String {
        let mut s = format!(
            "<svg class=\"plot\" data-plot=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\">",
            self.name
        );
        let (x0, x1, y0, y1) = (
            self.px(self.x.0),
            self.px(self.x.1),
            self.py(self.y.0),
            self.py(self.y.1),
        );
        let _ = write!(s, "<rect x=\"{x0}\" y=\"{y1}\" width=\"{}\" height=\"{}\" fill=\"#fafafa\" stroke=\"#bbb\"/>", x1 - x0, y0 - y1);
        for i in 0..=4 {
            let v = self.y.0 + (self.y.1 - self.y.0) * f64::from(i) / 4.0;
            let y = self.py(v);
            let _ = write!(s, "<line x1=\"{x0}\" x2=\"{x1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e3e3e3\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{}</text>", x0 - 4.0, y + 3.0, tick(v));
        }
        for (v, t) in xticks {
            let x = self.px(*v);
            let _ = write!(
                s,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                y0 + 13.0,
                esc(t)
            );
        }
        s.push_str(&self.body);
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            (x0 + x1) / 2.0,
            H - 6.0,
            esc(xlabel)
        );
        let _ = write!(s, "<text transform=\"translate(12 {:.1}) rotate(-90)\" font-size=\"11\" text-anchor=\"middle\">{}</text>", (y0 + y1) / 2.0, esc(ylabel));
        for (i, (label, colour)) in legend.iter().enumerate() {
            let y = y1 + 12.0 + 13.0 * i as f64;
            let _ = write!(s, "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"3\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>", x0 + 8.0, y - 3.0, x0 + 22.0, y, esc(label));
        }
        s.push_str("</svg>");
        s
    }
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 || (v.fract() == 0.0 && v.abs() >= 1.0) {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn share_ticks() -> Vec<(f64, String)> {
    (0..=5)
        .map(|i| (f64::from(i) / 5.0, format!("{}%", i * 20)))
        .collect()
}

fn reliability(r: &Report) -> String {
    let mut c = Chart::new("reliability", (0.0, 1.0), (0.0, 1.0));
    c.line(
        &[(0.0, 0.0), (1.0, 1.0)],
        "#999",
        true,
        false,
        "perfect calibration",
    );
    let pts: Vec<(f64, f64)> = r
        .risk
        .reliability
        .iter()
        .filter_map(|b| Some((b.mean_predicted?, b.observed?)))
        .collect();
    c.line(&pts, COLOURS[0], false, true, "risk");
    let ticks: Vec<(f64, String)> = (0..=5)
        .map(|i| (f64::from(i) / 5.0, format!("{:.1}", f64::from(i) / 5.0)))
        .collect();
    c.finish(
        "mean predicted risk (bin)",
        "observed churn share",
        &ticks,
        &[("risk", COLOURS[0]), ("perfect", "#999")],
    )
}

fn series(r: &Report) -> Vec<(&str, &[(f64, f64)])> {
    let mut v: Vec<(&str, &[(f64, f64)])> = vec![("risk", &r.risk_gains)];
    for b in &r.baselines {
        v.push((b.name, &b.gains));
    }
    v
}

fn gains(r: &Report) -> String {
    let mut c = Chart::new("gains", (0.0, 1.0), (0.0, 1.0));
    c.line(&[(0.0, 0.0), (1.0, 1.0)], "#999", true, false, "random");
    let s = series(r);
    for (i, (name, pts)) in s.iter().enumerate() {
        c.line(pts, COLOURS[i % 4], false, true, name);
    }
    let legend: Vec<(&str, &str)> = s
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (*n, COLOURS[i % 4]))
        .collect();
    c.finish(
        "share of customers contacted, highest score first",
        "share of churners reached",
        &share_ticks(),
        &legend,
    )
}

fn lift(r: &Report) -> String {
    let s = series(r);
    let lifts: Vec<Vec<(f64, f64)>> = s
        .iter()
        .map(|(_, pts)| {
            pts.iter()
                .filter(|(x, _)| *x > 0.0)
                .map(|(x, y)| (*x, y / x))
                .collect()
        })
        .collect();
    let top = lifts.iter().flatten().map(|p| p.1).fold(1.0, f64::max);
    let mut c = Chart::new("lift", (0.0, 1.0), (0.0, top.ceil()));
    c.line(&[(0.0, 1.0), (1.0, 1.0)], "#999", true, false, "random");
    for (i, ((name, _), pts)) in s.iter().zip(&lifts).enumerate() {
        c.line(pts, COLOURS[i % 4], false, true, name);
    }
    let legend: Vec<(&str, &str)> = s
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (*n, COLOURS[i % 4]))
        .collect();
    c.finish(
        "share of customers contacted, highest score first",
        "lift (churn share / base rate)",
        &share_ticks(),
        &legend,
    )
}

fn histograms(r: &Report) -> String {
    let h = &r.risk_histograms;
    let n = h.churned.len().max(1) as f64;
    let tot_c = h.churned.iter().sum::<u64>().max(1) as f64;
    let tot_s = h.stayed.iter().sum::<u64>().max(1) as f64;
    let top = h
        .churned
        .iter()
        .map(|v| *v as f64 / tot_c)
        .chain(h.stayed.iter().map(|v| *v as f64 / tot_s))
        .fold(0.0, f64::max);
    let mut c = Chart::new("histograms", (0.0, 1.0), (0.0, top.max(0.01)));
    for (i, v) in h.stayed.iter().enumerate() {
        let x = i as f64 / n;
        c.bar(
            x,
            x + 0.5 / n,
            *v as f64 / tot_s,
            COLOURS[1],
            &format!("stayed, risk {x:.2}-{:.2}: {v}", x + 1.0 / n),
        );
    }
    for (i, v) in h.churned.iter().enumerate() {
        let x = i as f64 / n;
        c.bar(
            x + 0.5 / n,
            x + 1.0 / n,
            *v as f64 / tot_c,
            COLOURS[0],
            &format!("churned, risk {x:.2}-{:.2}: {v}", x + 1.0 / n),
        );
    }
    let ticks: Vec<(f64, String)> = (0..=5)
        .map(|i| (f64::from(i) / 5.0, format!("{:.1}", f64::from(i) / 5.0)))
        .collect();
    c.finish(
        "risk at the cutoff",
        "share of the group",
        &ticks,
        &[("churned", COLOURS[0]), ("stayed", COLOURS[1])],
    )
}

fn frequency(r: &Report) -> String {
    let n = r.frequency.len().max(1) as f64;
    let top = r
        .frequency
        .iter()
        .flat_map(|b| [b.mean_actual, b.mean_predicted])
        .fold(0.0, f64::max);
    let mut c = Chart::new("frequency", (0.0, n), (0.0, top.max(0.01) * 1.05));
    let actual: Vec<(f64, f64)> = r
        .frequency
        .iter()
        .enumerate()
        .map(|(i, b)| (i as f64 + 0.5, b.mean_actual))
        .collect();
    let predicted: Vec<(f64, f64)> = r
        .frequency
        .iter()
        .enumerate()
        .map(|(i, b)| (i as f64 + 0.5, b.mean_predicted))
        .collect();
    c.line(&actual, COLOURS[0], false, true, "actual");
    c.line(&predicted, COLOURS[1], true, true, "predicted");
    let ticks: Vec<(f64, String)> = r
        .frequency
        .iter()
        .enumerate()
        .map(|(i, b)| (i as f64 + 0.5, b.x.clone()))
        .collect();
    c.finish(
        "repeat active days before the cutoff (x)",
        "mean active days in the horizon",
        &ticks,
        &[("actual", COLOURS[0]), ("predicted (model)", COLOURS[1])],
    )
}

fn outreach(r: &Report) -> String {
    let w = &r.outreach.per_week;
    let n = w.len().max(1) as f64;
    let top = w.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut c = Chart::new("outreach", (0.0, n), (0.0, top * 1.05));
    for (i, v) in w.iter().enumerate() {
        c.bar(
            i as f64,
            i as f64 + 1.0,
            *v as f64,
            COLOURS[1],
            &format!("week {}: {v}", i + 1),
        );
    }
    let ticks: Vec<(f64, String)> = (0..w.len())
        .map(|i| (i as f64 + 0.5, format!("{}", i + 1)))
        .collect();
    c.finish("week of the horizon", "outreach sent", &ticks, &[])
}

fn figure_cells(out: &mut String, name: &str, f: &Figures) {
    let top = |i: usize| {
        f.top.get(i).map_or("–".to_owned(), |t| {
            format!("{} ({:.1}%)", opt(t.lift, 2), t.precision * 100.0)
        })
    };
    let _ = write!(
        out,
        "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(name),
        opt(f.auc, 3),
        opt(f.pr_auc, 3),
        opt(f.brier, 4),
        opt(f.brier_skill, 3),
        opt(f.log_loss, 3),
        opt(f.ece, 3),
        top(0),
        top(1),
        top(2)
    );
}

pub fn render(r: &Report, title: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
body{{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}}\
table{{border-collapse:collapse;margin:8px 0 16px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
th:first-child{{text-align:left}}figure{{display:inline-block;margin:8px 12px 8px 0;vertical-align:top}}\
figcaption{{font-weight:600;margin-bottom:4px}}.note{{color:#555;font-size:12px}}</style></head><body>\
<h1>{t}</h1><p>Cutoff {c}, horizon {h:.0} days: {n} customers scored, {k} churned (no activity in the horizon), base rate {b}. \
{w} customers known at the cutoff had no activity yet and are not scored.</p>",
        t = esc(title),
        c = esc(&r.cutoff),
        h = r.horizon_days,
        n = r.customers,
        k = r.churned,
        b = r.base_rate.map_or("–".to_owned(), |b| format!("{:.1}%", b * 100.0)),
        w = r.without_activity
    );
    s.push_str("<h2>Figures</h2><table id=\"figures\"><tr><th>predictor</th><th>AUC</th><th>PR-AUC</th><th>Brier</th><th>Brier skill</th><th>log loss</th><th>ECE</th><th>top 1%: lift (precision)</th><th>top 5%</th><th>top 10%</th></tr>");
    figure_cells(&mut s, "risk", &r.risk);
    for b in &r.baselines {
        figure_cells(&mut s, &format!("{} (baseline)", b.name), &b.figures);
    }
    s.push_str("</table><p class=\"note\">Baselines: ");
    let meanings: Vec<String> = r
        .baselines
        .iter()
        .map(|b| format!("{}: {}", esc(b.name), esc(b.meaning)))
        .collect();
    s.push_str(&meanings.join("; "));
    s.push_str(". Their Brier, log loss and ECE are after a logistic fit on this test set itself, which favours them.</p>");
    let o = &r.outreach;
    let _ = write!(
        s,
        "<p>Outreach the policy sent in the horizon (suppression applied): {} to {} customers, {:.1} per week; precision {}, recall {}.</p>",
        o.sent,
        o.customers_contacted,
        o.per_week_mean,
        o.precision.map_or("–".to_owned(), |v| format!("{:.1}%", v * 100.0)),
        o.recall.map_or("–".to_owned(), |v| format!("{:.1}%", v * 100.0)),
    );
    s.push_str("<h2>Plots</h2>");
    for (caption, svg) in [
        ("Reliability diagram", reliability(r)),
        ("Cumulative gains", gains(r)),
        ("Lift", lift(r)),
        ("Risk by outcome", histograms(r)),
        (
            "Activity in the horizon by frequency (buy-till-you-die diagnostic)",
            frequency(r),
        ),
        ("Outreach per week", outreach(r)),
    ] {
        let _ = write!(
            s,
            "<figure><figcaption>{}</figcaption>{svg}</figure>",
            esc(caption)
        );
    }
    s.push_str("<h2>Ablation</h2><table><tr><th>signal taken out</th><th>customers with it</th><th>AUC</th><th>change</th><th>Brier</th><th>change</th></tr>");
    for a in &r.ablation {
        let _ = write!(
            s,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(a.signal),
            a.customers_with_signal,
            opt(a.auc, 3),
            opt(a.auc_change, 3),
            opt(a.brier, 4),
            opt(a.brier_change, 4)
        );
    }
    s.push_str("</table><h2>Reliability table</h2><table><tr><th>bin</th><th>customers</th><th>mean predicted</th><th>observed</th></tr>");
    for b in &r.risk.reliability {
        let _ = write!(
            s,
            "<tr><th>{:.1}–{:.1}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
            b.lower,
            b.upper,
            b.count,
            opt(b.mean_predicted, 3),
            opt(b.observed, 3)
        );
    }
    s.push_str("</table>");
    if let Some(t) = &r.truth {
        let _ = write!(
            s,
            "<h2>Ground truth</h2><p>{} customers matched; AUC of risk for \"really left by the end of the horizon\": {}.</p><table><tr><th>group</th><th>customers</th><th>flagged at the cutoff</th><th>contacted in the horizon</th><th>mean risk</th></tr>",
            t.matched,
            opt(t.auc_left, 3)
        );
        for g in &t.groups {
            let p = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{:.1}%", v * 100.0));
            let _ = write!(
                s,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&g.group),
                g.customers,
                p(g.recall_flagged),
                p(g.recall_contacted),
                opt(g.mean_risk, 3)
            );
        }
        s.push_str("</table>");
    }
    if !r.uplift.is_empty() {
        s.push_str("<h2>Uplift by playbook (holdout)</h2><p>Decisions of the whole run whose horizon closed before the window's end; churn = no activity within the horizon after the decision; difference = churn rate held out minus contacted, with Newcombe's hybrid score 95% interval.</p><table id=\"uplift\"><tr><th>playbook</th><th>contacted: churned / decided</th><th>held out: churned / decided</th><th>difference</th><th>95% CI</th><th>contacts to keep one customer</th></tr>");
        for u in &r.uplift {
            let p = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{:.1}%", v * 100.0));
            let _ = write!(
                s,
                "<tr><th>{}</th><td>{} ({} / {})</td><td>{} ({} / {})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&u.playbook),
                p(u.churn_contacted),
                u.contacted.churned(),
                u.contacted.decided,
                p(u.churn_held_out),
                u.held_out.churned(),
                u.held_out.decided,
                opt(u.difference, 3),
                match (u.low, u.high) {
                    (Some(l), Some(h)) => format!("{l:.3} to {h:.3}"),
                    _ => "–".to_owned(),
                },
                esc(&u.nnt)
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>\n");
    s
}
