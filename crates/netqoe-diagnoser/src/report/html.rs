//! The report as one self-contained HTML page: inline CSS and SVG, system fonts, no script and
//! no external reference, readable on a laptop screen.

use std::fmt::Write as _;

use super::svg::{chart, esc};
use super::{Incident, Report};

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  margin: 0; background: #f3f4f6; color: #111827; }
header { background: #111827; color: #f9fafb; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 20px; font-weight: 600; }
header p { margin: 0; color: #d1d5db; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 32px 40px; }
.tiles { display: flex; gap: 12px; margin-bottom: 20px; flex-wrap: wrap; }
.tile { background: #fff; border-radius: 8px; padding: 12px 18px; min-width: 150px;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }
.tile b { display: block; font-size: 24px; }
.tile span { color: #6b7280; }
h2 { font-size: 17px; margin: 28px 0 10px; }
.incident { background: #fff; border-radius: 8px; padding: 14px 18px 16px; margin-bottom: 16px;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); border-left: 5px solid #9ca3af; }
.incident.critical { border-left-color: #dc2626; }
.incident.major { border-left-color: #ea580c; }
.incident.minor { border-left-color: #ca8a04; }
.incident h3 { margin: 0 0 4px; font-size: 15px; }
.incident .meta { color: #4b5563; margin-bottom: 6px; }
.incident .summary { margin: 6px 0 10px; }
.badge { display: inline-block; border-radius: 999px; padding: 1px 9px; font-size: 12px; font-weight: 600;
  margin-right: 6px; background: #e5e7eb; color: #111827; }
.badge.open { background: #fee2e2; color: #991b1b; }
.badge.critical { background: #dc2626; color: #fff; }
.badge.major { background: #ea580c; color: #fff; }
.badge.minor { background: #fde68a; color: #713f12; }
.charts { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 0; border: 1px solid #e5e7eb; border-radius: 6px; padding: 6px 6px 2px; background: #fff; }
figcaption { font-size: 12px; color: #374151; margin: 0 0 2px 4px; }
svg { display: block; max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; border-radius: 8px; overflow: hidden;
  box-shadow: 0 1px 2px rgba(0,0,0,.06); }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid #f1f5f9; vertical-align: top; }
th { background: #f9fafb; font-weight: 600; color: #374151; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.empty { color: #6b7280; font-style: italic; }
footer { color: #6b7280; font-size: 12px; margin-top: 30px; }
"#;

fn entity(i: &Incident) -> String {
    match (&i.client_id, &i.target) {
        (Some(c), Some(t)) => format!(
            "client <code>{}</code> → target <code>{}</code>",
            esc(c),
            esc(t)
        ),
        (Some(c), None) => format!("client <code>{}</code>", esc(c)),
        (None, Some(t)) => format!("target <code>{}</code>", esc(t)),
        (None, None) => String::new(),
    }
}

fn incident(out: &mut String, i: &Incident) {
    let sev = esc(&i.peak_severity);
    let _ = write!(
        out,
        r#"<section class="incident {sev}"><h3>{}{}<span class="badge {sev}">{sev}</span>{} · {} scope · {}</h3>"#,
        if i.open {
            r#"<span class="badge open">OPEN</span>"#
        } else {
            ""
        },
        format_args!(r#"<span class="badge">#{}</span>"#, i.id),
        esc(&i.label),
        esc(&i.scope),
        entity(i)
    );
    let _ = write!(
        out,
        r#"<div class="meta">{} → {} · {} min · {} anomalous minutes · {} series</div><div class="summary">{}</div><div class="charts">"#,
        esc(&i.started_at),
        if i.open {
            "now".to_string()
        } else {
            esc(&i.ended_at)
        },
        i.minutes,
        i.windows,
        i.series,
        esc(&i.summary)
    );
    for c in &i.charts {
        let _ = write!(
            out,
            r#"<figure><figcaption><b>{}</b> · <code>{}</code> → <code>{}</code> ({})</figcaption>{}</figure>"#,
            esc(&c.title),
            esc(&c.client_id),
            esc(&c.target),
            esc(&c.series),
            chart(c)
        );
    }
    out.push_str("</div></section>");
}

/// The whole page.
pub fn page(r: &Report) -> String {
    let mut out = String::new();
    let open = r.incidents.iter().filter(|i| i.open).count();
    let filter = match (&r.client, &r.target) {
        (Some(c), Some(t)) => format!(" · client {} · target {}", esc(c), esc(t)),
        (Some(c), None) => format!(" · client {}", esc(c)),
        (None, Some(t)) => format!(" · target {}", esc(t)),
        (None, None) => String::new(),
    };
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>netqoe diagnoser report</title><style>{STYLE}</style></head><body><header><h1>Network quality: what is wrong, where, since when</h1><p>Since {} · generated {}{filter}</p></header><main>"#,
        esc(&r.since),
        esc(&r.generated_at)
    );
    let affected: std::collections::BTreeSet<(&str, &str)> = r
        .worst_series
        .iter()
        .map(|w| (w.client_id.as_str(), w.target.as_str()))
        .collect();
    let _ = write!(
        out,
        r#"<div class="tiles"><div class="tile"><b>{open}</b><span>open incidents</span></div><div class="tile"><b>{}</b><span>incidents in the period</span></div><div class="tile"><b>{}</b><span>client–target pairs with anomalies</span></div><div class="tile"><b>{}</b><span>series that stopped reporting</span></div></div>"#,
        r.incidents.len(),
        affected.len(),
        r.stale_series.len()
    );
    out.push_str("<h2>Incidents</h2>");
    if r.incidents.is_empty() {
        out.push_str(r#"<p class="empty">No incident in this period.</p>"#);
    }
    for i in &r.incidents {
        incident(&mut out, i);
    }
    out.push_str("<h2>Worst series</h2>");
    if r.worst_series.is_empty() {
        out.push_str(r#"<p class="empty">No anomalous window in this period.</p>"#);
    } else {
        out.push_str("<table><tr><th>client</th><th>target</th><th>series</th><th>anomalous windows</th><th>mostly</th><th>worst</th></tr>");
        for w in &r.worst_series {
            let _ = write!(
                out,
                r#"<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td class="num">{} of {}</td><td>{}</td><td><span class="badge {}">{}</span>{}</td></tr>"#,
                esc(&w.client_id),
                esc(&w.target),
                esc(&w.series),
                w.anomalous_minutes,
                w.windows,
                esc(&w.main_label),
                esc(&w.worst_severity),
                esc(&w.worst_severity),
                esc(&w.worst_detail)
            );
        }
        out.push_str("</table>");
    }
    if !r.stale_series.is_empty() {
        out.push_str("<h2>Series that stopped reporting</h2><table><tr><th>client</th><th>target</th><th>series</th><th>last window</th></tr>");
        for s in &r.stale_series {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&s.client_id),
                esc(&s.target),
                esc(&s.series),
                esc(&s.last_window)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("<footer>netqoe-diagnoser · shaded: windows the diagnoser found anomalous · green band: the series' usual range (median dashed), outside which a window is anomalous · times in UTC</footer></main></body></html>\n");
    out
}
