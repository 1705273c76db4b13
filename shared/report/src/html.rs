//! `report.html`: one self-contained page (figures embedded as PNG data, no script, no external
//! resource), so that it opens offline and can be mailed as it is.

use crate::analysis::{Analysis, PairedTest, PartResult, SINGLE};
use crate::catalog::Better;
use crate::figures::{Figure, short_label};
use crate::pooled::Pooled;
use crate::table::Source;
use base64::Engine;
use std::fmt::Write;

/// Escapes text for HTML (model names come from the CSV).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number as the page shows it: 4 significant digits, scientific when very small or large.
pub fn num(v: f64) -> String {
    if v.is_nan() {
        return "–".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        let digits = if a == 0.0 {
            0
        } else {
            a.log10().floor() as i32
        };
        let decimals = (3 - digits).clamp(0, 8) as usize;
        format!("{v:.decimals$}")
    }
}

/// A p-value: 3 significant digits.
pub fn pval(p: f64) -> String {
    if p.is_nan() {
        "–".into()
    } else if p < 1e-3 {
        format!("{p:.2e}")
    } else {
        format!("{p:.3}")
    }
}

const STYLE: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:1.5em auto;\
padding:0 1.5em;max-width:1400px;color:#222;line-height:1.4}h1,h2,h3{color:#333}table{border-collapse:collapse;\
margin:0.5em 0 1.5em;font-size:0.9em}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}\
th{background:#f2f2f2}td.l,th.l{text-align:left}.sig{background:#e6f4e6;font-weight:bold}\
.figs{display:flex;flex-wrap:wrap;gap:1em 2em;align-items:flex-start}figure{margin:0 0 1em}\
figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:0.9em;\
color:#444;max-width:1100px}.headline{font-size:1.05em;background:#f7f7fb;border-left:4px solid \
#50148c;padding:0.6em 1em}.note{color:#555;font-size:0.9em}";

fn organ_title(organ: &str) -> String {
    if organ == "all" {
        "All organs (metrics pooled over the ROI, or averaged over annotators)".into()
    } else {
        let mut c = organ.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    }
}

fn better(b: Better) -> &'static str {
    match b {
        Better::Higher => "higher is better",
        Better::Lower => "lower is better",
        Better::Neither => "descriptive",
    }
}

/// The headline: `ensemble_all` against the single models on the study's key metrics.
pub fn headline(analysis: &Analysis) -> Vec<&PairedTest> {
    let keys: &[(&str, &str)] = &[
        ("ece", "all"),
        ("ace", "all"),
        ("dice", "pancreas"),
        ("dice", "kidney"),
        ("dice", "liver"),
        ("hd95", "pancreas"),
        ("hausdorff", "all"),
    ];
    keys.iter()
        .filter_map(|(m, o)| analysis.part(m, o))
        .filter_map(|p| p.tests.iter().find(|t| t.group == "ensemble_all"))
        .collect()
}

/// One line per headline test, for the page and the terminal.
pub fn headline_line(t: &PairedTest) -> String {
    let organ = if t.organ == "all" {
        String::new()
    } else {
        format!(" {}", t.organ)
    };
    format!(
        "{}{organ}: ensemble_all {} vs single models {} (medians; means {} vs {}; {} patients; p = {}, Holm p = {}, r = {}): {}",
        t.label,
        num(t.median_ensemble),
        num(t.median_single),
        num(t.mean_ensemble),
        num(t.mean_single),
        t.n,
        pval(t.p),
        pval(t.p_holm),
        num(t.effect_size),
        verdict(t)
    )
}

/// What a test says, in words: the direction where Holm's p is below 0.05.
pub fn verdict(t: &PairedTest) -> String {
    // a NaN p (no test possible) is no evidence either
    if t.p_holm.is_nan() || t.p_holm >= 0.05 {
        return "no significant difference".into();
    }
    let higher = t.effect_size > 0.0;
    let side = if higher { "higher" } else { "lower" };
    let judged = match (t.better, higher) {
        (Better::Higher, true) | (Better::Lower, false) => " (better)",
        (Better::Higher, false) | (Better::Lower, true) => " (worse)",
        (Better::Neither, _) => "",
    };
    format!("{} {side}{judged}", t.group)
}

fn headline_table(out: &mut String, tests: &[&PairedTest]) {
    out.push_str(
        "<table><tr><th class=l>metric</th><th class=l>organ</th><th>single models<br>median \
         (mean)</th><th>ensemble_all<br>median (mean)</th><th>n</th><th>p</th><th>Holm p</th>\
         <th>r</th><th class=l>verdict (Holm p &lt; 0.05)</th></tr>",
    );
    for t in tests {
        let sig = if t.p_holm < 0.05 { " class=sig" } else { "" };
        let _ = write!(
            out,
            "<tr><td class=l>{}</td><td class=l>{}</td><td>{} ({})</td><td>{} ({})</td><td>{}</td>\
             <td>{}</td><td{sig}>{}</td><td>{}</td><td class=l>{}</td></tr>",
            escape(&t.label),
            escape(&t.organ),
            num(t.median_single),
            num(t.mean_single),
            num(t.median_ensemble),
            num(t.mean_ensemble),
            t.n,
            pval(t.p),
            pval(t.p_holm),
            num(t.effect_size),
            escape(&verdict(t))
        );
    }
    out.push_str("</table>");
}

fn summary_table(out: &mut String, parts: &[&PartResult], groups: &[String]) {
    out.push_str("<table><tr><th class=l>metric</th>");
    for g in groups {
        let _ = write!(out, "<th>{}</th>", escape(g));
    }
    out.push_str("</tr>");
    for p in parts {
        let unit = if p.unit.is_empty() {
            String::new()
        } else {
            format!(" ({})", p.unit)
        };
        let _ = write!(
            out,
            "<tr><td class=l>{}{}<br><span class=note>{}</span></td>",
            escape(&p.label),
            escape(&unit),
            better(p.better)
        );
        for g in &p.groups {
            match g.summary {
                Some(s) => {
                    let _ = write!(
                        out,
                        "<td>median {}<br>IQR [{}, {}]<br>mean {} (n={})</td>",
                        num(s.median),
                        num(s.q1),
                        num(s.q3),
                        num(s.mean),
                        s.n
                    );
                }
                None => out.push_str("<td>–</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

fn tests_table(out: &mut String, analysis: &Analysis) {
    out.push_str(
        "<table><tr><th class=l>metric</th><th class=l>organ</th><th class=l>ensemble</th>\
         <th>n</th><th>median single (per-patient mean)</th><th>median ensemble</th>\
         <th>median difference</th><th>W</th><th>p</th><th>Holm p</th><th>effect size r</th>\
         <th class=l>p from</th></tr>",
    );
    for t in analysis.tests() {
        let sig = if t.p_holm < 0.05 { " class=sig" } else { "" };
        let _ = write!(
            out,
            "<tr><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td{sig}>{}</td><td>{}</td>\
             <td class=l>{:?}</td></tr>",
            escape(&t.label),
            escape(&t.organ),
            escape(&t.group),
            t.n,
            num(t.median_single),
            num(t.median_ensemble),
            num(t.median_difference),
            num(t.statistic),
            pval(t.p),
            pval(t.p_holm),
            num(t.effect_size),
            t.method
        );
    }
    out.push_str("</table>");
}

fn figure(out: &mut String, f: &Figure) {
    let data = base64::engine::general_purpose::STANDARD.encode(&f.png);
    let _ = write!(
        out,
        "<figure style=\"max-width:{}px\"><img alt=\"{}\" src=\"data:image/png;base64,{data}\">\
         <figcaption><b>{}.</b> {} (files: figures/{}.png, figures/{}.svg)</figcaption></figure>",
        f.width,
        escape(&f.title),
        escape(&f.title),
        escape(&f.caption),
        f.name,
        f.name
    );
}

/// The page.
pub fn page(analysis: &Analysis, pooled: &Pooled, figures: &[Figure]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>statapp report</title>\
         <style>{STYLE}</style></head><body><h1>Ensembles and uncertainty: statapp report</h1>"
    );
    let source = match analysis.source {
        Source::Statapp => "statapp's combined CSV (corrected metrics, METRICS.md §18.4)",
        Source::Original => {
            "the original project's metrics.csv (its 35 columns, with its definitions and bugs, \
             METRICS.md §12)"
        }
    };
    let _ = write!(
        out,
        "<p>From <code>{}</code>: {source}. {} patients, {} rows; groups: {}.</p>",
        escape(&analysis.csv),
        analysis.patients,
        analysis.rows,
        analysis
            .groups
            .iter()
            .map(|g| escape(g))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push_str("<div class=headline><b>Headline: ensemble_all against the single models</b>");
    headline_table(&mut out, &headline(analysis));
    out.push_str("</div>");
    out.push_str("<h2>Figures</h2>");
    if pooled.rows_with_curves == 0 {
        out.push_str(
            "<p class=note>No row has calibration bins or risk-coverage curves (a CSV of the \
             original project, or rows scored before statapp wrote them): no reliability \
             diagram or risk-coverage curve.</p>",
        );
    } else if pooled.rows_without_curves > 0 {
        let _ = write!(
            out,
            "<p class=note>Curves pooled from {} rows; {} rows have none.</p>",
            pooled.rows_with_curves, pooled.rows_without_curves
        );
    }
    out.push_str("<div class=figs>");
    for f in figures {
        figure(&mut out, f);
    }
    out.push_str("</div>");
    out.push_str(
        "<h2>Method</h2><p class=note>Each ensemble is compared with the single models on the \
         same patients: per patient, the mean of the single models' values (those defined) \
         against the ensemble's value; Wilcoxon signed-rank test, two-sided, as \
         <code>scipy.stats.wilcoxon</code> with its defaults (zero differences dropped, no \
         continuity correction; exact distribution without ties up to 50 pairs, all sign flips \
         enumerated with ties up to 13 pairs, normal approximation otherwise). Holm's correction \
         within each metric and organ over the ensembles compared. Effect size: matched-pairs \
         rank-biserial correlation of ensemble minus single mean (positive: the ensemble is \
         higher). Undefined values (empty cells) are left out, so n can differ between \
         metrics. Every number is also in <code>stats.json</code>.</p>",
    );
    out.push_str("<h2>Paired tests</h2>");
    tests_table(&mut out, analysis);
    out.push_str("<h2>Per organ</h2>");
    let mut organs: Vec<&str> = analysis.parts.iter().map(|p| p.organ.as_str()).collect();
    organs.sort_by_key(|o| {
        (
            *o == "all",
            crate::catalog::ORGANS.iter().position(|(n, _)| n == o),
        )
    });
    organs.dedup();
    for organ in organs {
        let parts: Vec<&PartResult> = analysis.parts.iter().filter(|p| p.organ == organ).collect();
        let _ = write!(out, "<h3>{}</h3>", escape(&organ_title(organ)));
        summary_table(&mut out, &parts, &analysis.groups);
    }
    let _ = writeln!(
        out,
        "<p class=note>Group labels: {} = every single model's row; anno&lt;k&gt; = \
         ensemble_anno&lt;k&gt;; all = ensemble_all. Written by statapp {}.</p></body></html>",
        short_label(SINGLE),
        env!("CARGO_PKG_VERSION")
    );
    out
}
