//! One inline SVG chart: a series' windows (p50 and p95 lines) against its usual band, with
//! the anomalous windows shaded. No script, no external reference.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{axis_value, Chart};

const W: f64 = 590.0;
const H: f64 = 230.0;
const LEFT: f64 = 86.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 30.0;
/// Line colours, in the order of `Chart::lines`.
const COLOURS: [&str; 3] = ["#2563eb", "#d97706", "#7c3aed"];

/// `&`, `<`, `>` and `"` escaped for HTML and SVG text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round number ≥ `v` (1, 2, 2.5 or 5 times a power of ten).
fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn hhmm(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%H:%M")
        .to_string()
}

/// The SVG of one chart.
pub fn chart(c: &Chart) -> String {
    let (x0, x1) = (c.from_ms as f64, c.until_ms.max(c.from_ms + 60_000) as f64);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let mut vmax = c
        .lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    if let Some((m, _, hi)) = c.baseline {
        vmax = vmax.max(hi).max(m);
    }
    let ymax = nice_ceil(vmax * 1.08);
    let x = |t: f64| LEFT + (t - x0) / (x1 - x0) * pw;
    let y = |v: f64| TOP + ph - (v / ymax).clamp(0.0, 1.05) * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}"><rect x="0" y="0" width="{W}" height="{H}" fill="#fff"/>"##,
        esc(&format!("{} of {} → {}", c.title, c.client_id, c.target))
    );
    // Horizontal grid and y labels.
    // Ticks at round values: 500 → 0, 100 … 500; 200 → 0, 50 … 200.
    let lead = ymax / 10f64.powf(ymax.log10().floor());
    let divisions = if (lead - 2.0).abs() < 1e-9 { 4 } else { 5 };
    for i in 0..=divisions {
        let v = ymax * i as f64 / divisions as f64;
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#6b7280">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            if i == 0 {
                "0".to_string()
            } else {
                esc(&axis_value(c, v))
            }
        );
    }
    // Time ticks: the first step giving at most 8 of them.
    let span_min = (x1 - x0) / 60_000.0;
    let step = [5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 240.0, 480.0, 1440.0]
        .into_iter()
        .find(|st| span_min / st <= 8.0)
        .unwrap_or(2880.0)
        * 60_000.0;
    let mut t = (x0 / step).ceil() * step;
    while t <= x1 {
        let xx = x(t);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{:.1}" stroke="#f1f5f9"/><text x="{xx:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#6b7280">{}</text>"##,
            TOP + ph,
            H - 10.0,
            hhmm(t as i64)
        );
        t += step;
    }
    // Usual band and median.
    if let Some((m, lo, hi)) = c.baseline {
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{:.1}" width="{pw:.1}" height="{:.1}" fill="#16a34a" fill-opacity="0.12"/><line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#15803d" stroke-dasharray="5 4" stroke-width="1.2"/>"##,
            y(hi),
            (y(lo) - y(hi)).max(1.0),
            LEFT + pw,
            y(m),
            y(m)
        );
    }
    // Anomalous windows.
    for a in &c.anomalous {
        let xa = x(*a as f64);
        let wa = (x(*a as f64 + 60_000.0) - xa).max(3.0);
        let _ = write!(
            s,
            r##"<rect x="{xa:.1}" y="{TOP}" width="{wa:.1}" height="{ph:.1}" fill="#dc2626" fill-opacity="0.16"/>"##
        );
    }
    // Lines, broken where the series has no window for a while.
    for (i, (_, pts)) in c.lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut gaps: Vec<i64> = pts.windows(2).map(|w| w[1].0 - w[0].0).collect();
        gaps.sort_unstable();
        let typical = gaps.get(gaps.len() / 2).copied().unwrap_or(60_000);
        let limit = (typical * 5 / 2).max(180_000);
        let mut segment: Vec<String> = Vec::new();
        let flush = |seg: &mut Vec<String>, s: &mut String| {
            if seg.len() > 1 {
                let _ = write!(
                    s,
                    r##"<polyline fill="none" stroke="{colour}" stroke-width="1.6" stroke-linejoin="round" points="{}"/>"##,
                    seg.join(" ")
                );
            } else if let Some(p) = seg.first() {
                let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    s,
                    r##"<circle cx="{px}" cy="{py}" r="1.8" fill="{colour}"/>"##
                );
            }
            seg.clear();
        };
        let mut prev: Option<i64> = None;
        for (t, v) in pts {
            if prev.is_some_and(|p| t - p > limit) {
                flush(&mut segment, &mut s);
            }
            segment.push(format!("{:.1},{:.1}", x(*t as f64), y(*v)));
            prev = Some(*t);
        }
        flush(&mut segment, &mut s);
    }
    // Marks on the last line (p95) at anomalous windows.
    if let Some((_, pts)) = c
        .lines
        .iter()
        .rev()
        .find(|l| l.0 == "p95")
        .or(c.lines.first())
    {
        for (t, v) in pts.iter().filter(|p| c.anomalous.contains(&p.0)) {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#dc2626" stroke="#fff" stroke-width="1"/>"##,
                x(*t as f64),
                y(*v)
            );
        }
    }
    // Legend.
    let mut lx = LEFT;
    for (i, (name, _)) in c.lines.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let _ = write!(
            s,
            r##"<line x1="{lx}" x2="{}" y1="14" y2="14" stroke="{colour}" stroke-width="2.5"/><text x="{}" y="18" font-size="12" fill="#111827">{}</text>"##,
            lx + 18.0,
            lx + 23.0,
            esc(name)
        );
        lx += 34.0 + 7.0 * name.len() as f64;
    }
    if c.baseline.is_some() {
        let _ = write!(
            s,
            r##"<rect x="{lx}" y="8" width="18" height="11" fill="#16a34a" fill-opacity="0.25"/><text x="{}" y="18" font-size="12" fill="#111827">usual range of {}</text>"##,
            lx + 23.0,
            esc(&c.metric)
        );
        lx += 120.0 + 7.0 * c.metric.len() as f64;
    }
    let _ = write!(
        s,
        r##"<rect x="{lx}" y="8" width="18" height="11" fill="#dc2626" fill-opacity="0.3"/><text x="{}" y="18" font-size="12" fill="#111827">anomalous window</text></svg>"##,
        lx + 23.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_plain_svg_with_its_marks() {
        let c = Chart {
            client_id: "c1".into(),
            target: "https://a/?x=<b>".into(),
            series: "http/v4".into(),
            metric: "tcp_p95".into(),
            title: "tcp connect (ms)".into(),
            unit: "ms".into(),
            from_ms: 0,
            until_ms: 3_600_000,
            lines: vec![
                ("p50".into(), (0..60).map(|m| (m * 60_000, 18.0)).collect()),
                (
                    "p95".into(),
                    (0..60)
                        .map(|m| (m * 60_000, if m == 30 { 400.0 } else { 20.0 }))
                        .collect(),
                ),
            ],
            baseline: Some((20.0, 0.0, 40.0)),
            anomalous: vec![30 * 60_000],
        };
        let svg = chart(&c);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("&lt;b&gt;"));
        assert!(!svg.contains("<script"));
        assert_eq!(nice_ceil(432.0), 500.0);
        assert_eq!(nice_ceil(0.21), 0.25);
    }
}
