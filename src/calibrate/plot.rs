//! The accuracy-vs-cost curve as a small standalone SVG (hand-written: one
//! polyline and two axes do not justify a plotting crate and its fonts).

use std::fmt::Write;

use super::choose::CurvePoint;

const W: f64 = 640.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// x: expected FLOPs relative to the original; y: accuracy (labels) or
/// agreement with the full model. Certified points are filled; the chosen
/// one is ringed.
pub fn curve_svg(points: &[CurvePoint], chosen: Option<&CurvePoint>, title: &str) -> String {
    let y_of = |c: &CurvePoint| c.accuracy.unwrap_or(c.agreement);
    let y_label = if points.first().is_some_and(|c| c.accuracy.is_some()) {
        "accuracy"
    } else {
        "agreement with the full model"
    };
    let xs: Vec<f64> = points.iter().map(|c| 1.0 - c.savings).collect();
    let ys: Vec<f64> = points.iter().map(y_of).collect();
    let (x_min, x_max) = (0.0, xs.iter().cloned().fold(1.0, f64::max));
    let y_min = (ys.iter().cloned().fold(1.0, f64::min) - 0.02).clamp(0.0, 1.0);
    let y_max = 1.0;
    let px = |x: f64| LEFT + (x - x_min) / (x_max - x_min).max(1e-9) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - (y - y_min) / (y_max - y_min).max(1e-9) * (H - TOP - BOTTOM);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Axes with ticks.
    let _ = writeln!(
        s,
        r#"<path d="M{LEFT},{TOP} V{} H{}" fill="none" stroke="black"/>"#,
        H - BOTTOM,
        W - RIGHT
    );
    for i in 0..=5 {
        let x = x_min + (x_max - x_min) * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}%</text>"#,
            px(x),
            H - BOTTOM + 18.0,
            100.0 * x
        );
        let y = y_min + (y_max - y_min) * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{:.1}%</text>"#,
            LEFT - 6.0,
            py(y) + 4.0,
            100.0 * y
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">expected FLOPs (share of the original)</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">{y_label}</text>"#,
        (TOP + H - BOTTOM) / 2.0
    );
    let path: Vec<String> = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="steelblue" stroke-width="1.5"/>"#,
        path.join(" ")
    );
    for (c, (x, y)) in points.iter().zip(xs.iter().zip(&ys)) {
        let fill = if c.certified { "steelblue" } else { "white" };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{fill}" stroke="steelblue"/>"#,
            px(*x),
            py(*y)
        );
    }
    if let Some(c) = chosen {
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="7" fill="none" stroke="crimson" stroke-width="2"/>"#,
            px(1.0 - c.savings),
            py(y_of(c))
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="crimson">thresholds {}</text>"#,
            px(1.0 - c.savings) + 10.0,
            py(y_of(c)) - 10.0,
            super::thresholds_text(&c.thresholds)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" fill="gray">filled: certified at the requested level; ringed: chosen</text>"#,
        LEFT + 8.0,
        TOP + 14.0
    );
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
