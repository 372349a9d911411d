//! The plots, drawn with plotters' SVG backend: calibrate's accuracy/cost
//! curve (`calibrate --plot`), the exits rows took (`eval --plot`) and what
//! a row costs by where it leaves (`cost --plot`). Text is left to the
//! viewer's fonts (plotters' naive font metrics lay it out), so the SVG is
//! the same on every machine.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::calibrate::choose::CurvePoint;
use crate::exits::cost::CostReport;

const SIZE: (u32, u32) = (720, 440);
const BLUE: RGBColor = RGBColor(70, 130, 180);
const RED: RGBColor = RGBColor(200, 40, 60);
const ORANGE: RGBColor = RGBColor(230, 140, 40);
const GRAY: RGBColor = RGBColor(120, 120, 120);

/// A plot that could not be drawn (plotters' error, in words).
#[derive(Debug, thiserror::Error)]
#[error("drawing the plot: {0}")]
pub struct PlotError(String);

fn fail(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// Draws with `draw` on a white canvas and returns the SVG text.
fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), PlotError>) -> Result<String, PlotError> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(fail)?;
        draw(&root)?;
        root.present().map_err(fail)?;
    }
    Ok(text)
}

fn percent(v: &f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

/// The candidates calibration tested: expected FLOPs (share of the
/// original) against accuracy (with labels) or agreement with the full
/// model, in test order. Certified candidates are filled; the chosen one is
/// ringed and labelled with its thresholds.
pub fn curve_svg(points: &[CurvePoint], chosen: Option<&CurvePoint>, title: &str) -> Result<String, PlotError> {
    let y_of = |c: &CurvePoint| c.accuracy.unwrap_or(c.agreement);
    let y_label = if points.first().is_some_and(|c| c.accuracy.is_some()) {
        "accuracy"
    } else {
        "agreement with the full model"
    };
    let xy: Vec<(f64, f64)> = points.iter().map(|c| (1.0 - c.savings, y_of(c))).collect();
    let x_max = xy.iter().map(|p| p.0).fold(1.0, f64::max);
    let y_min = (xy.iter().map(|p| p.1).fold(1.0, f64::min) - 0.02).clamp(0.0, 0.99);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, y_min..1.0)
            .map_err(fail)?;
        chart
            .configure_mesh()
            .x_desc("expected FLOPs (share of the original)")
            .y_desc(y_label)
            .x_label_formatter(&percent)
            .y_label_formatter(&|v| format!("{:.1}%", 100.0 * v))
            .max_light_lines(0)
            .draw()
            .map_err(fail)?;
        chart
            .draw_series(LineSeries::new(xy.iter().copied(), BLUE.stroke_width(1)))
            .map_err(fail)?;
        let (certified, other): (Vec<_>, Vec<_>) = points.iter().zip(&xy).partition(|(c, _)| c.certified);
        chart
            .draw_series(certified.iter().map(|&(_, &p)| Circle::new(p, 3, BLUE.filled())))
            .map_err(fail)?
            .label("certified")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.filled()));
        chart
            .draw_series(other.iter().map(|&(_, &p)| Circle::new(p, 3, WHITE.filled())))
            .map_err(fail)?;
        chart
            .draw_series(other.iter().map(|&(_, &p)| Circle::new(p, 3, BLUE.stroke_width(1))))
            .map_err(fail)?
            .label("not certified")
            .legend(|(x, y)| Circle::new((x + 10, y), 3, BLUE.stroke_width(1)));
        if let Some(c) = chosen {
            let at = (1.0 - c.savings, y_of(c));
            let label = format!(
                "chosen: thresholds {}",
                crate::calibrate::thresholds_text(&c.thresholds)
            );
            chart
                .draw_series([
                    EmptyElement::at(at) + Circle::new((0, 0), 8, RED.stroke_width(2)),
                    EmptyElement::at(at) + Circle::new((0, 0), 0, RED),
                ])
                .map_err(fail)?
                .label(label)
                .legend(|(x, y)| Circle::new((x + 10, y), 6, RED.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// The share of rows that left at each exit (`counts`: exits 1..K, then
/// the full model), each bar labelled with its share and count.
pub fn exit_histogram_svg(counts: &[usize], title: &str) -> Result<String, PlotError> {
    let total = counts.iter().sum::<usize>().max(1) as f64;
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / total).collect();
    let top = shares.iter().copied().fold(0.0, f64::max).max(0.05) * 1.15;
    svg(|root| {
        let axes = BarAxes {
            title,
            bars: counts.len(),
            top,
            x_desc: "where rows left",
            y_desc: "share of rows",
        };
        let mut chart = bar_chart(root, &axes)?;
        chart
            .draw_series(shares.iter().enumerate().map(|(i, &s)| bar(i, 0.0, s, BLUE)))
            .map_err(fail)?;
        chart
            .draw_series(shares.iter().zip(counts).enumerate().map(|(i, (&s, &c))| {
                Text::new(
                    format!("{:.1}% ({c})", 100.0 * s),
                    (SegmentValue::CenterOf(i), s + top * 0.01),
                    bar_label(),
                )
            }))
            .map_err(fail)?;
        Ok(())
    })
}

/// What a row costs by where it leaves, as a share of the original model's
/// FLOPs: the backbone up to the exit, and the heads and decisions it ran
/// on the way (stacked); the last bar is a row that no exit takes. The
/// dashed line is the original model.
pub fn exit_cost_svg(report: &CostReport, title: &str) -> Result<String, PlotError> {
    let original = report.original.flops.max(1.0);
    let mut backbone = 0.0;
    let mut overhead = 0.0;
    let mut bars: Vec<(f64, f64)> = Vec::new();
    for e in &report.exits {
        backbone += e.stage.flops;
        overhead += e.head.flops + e.decision.flops;
        bars.push((backbone / original, overhead / original));
    }
    bars.push(((backbone + report.final_stage.flops) / original, overhead / original));
    let top = bars.iter().map(|(b, o)| b + o).fold(1.0, f64::max) * 1.12;
    svg(|root| {
        let axes = BarAxes {
            title,
            bars: bars.len(),
            top,
            x_desc: "where a row leaves",
            y_desc: "FLOPs (share of the original)",
        };
        let mut chart = bar_chart(root, &axes)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, &(b, _))| bar(i, 0.0, b, BLUE)))
            .map_err(fail)?
            .label("backbone")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], BLUE.filled()));
        chart
            .draw_series(bars.iter().enumerate().map(|(i, &(b, o))| bar(i, b, b + o, ORANGE)))
            .map_err(fail)?
            .label("exit heads and decisions")
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], ORANGE.filled()));
        chart
            .draw_series(DashedLineSeries::new(
                [(SegmentValue::Exact(0), 1.0), (SegmentValue::Last, 1.0)],
                6,
                4,
                GRAY.stroke_width(1),
            ))
            .map_err(fail)?
            .label("the original model")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], GRAY));
        if let Some(expected) = &report.expected {
            let share = expected.cost.flops / original;
            chart
                .draw_series(DashedLineSeries::new(
                    [(SegmentValue::Exact(0), share), (SegmentValue::Last, share)],
                    3,
                    3,
                    RED.stroke_width(2),
                ))
                .map_err(fail)?
                .label(format!(
                    "expected, exits taken {}: {:.1}%",
                    expected
                        .distribution
                        .iter()
                        .map(|p| format!("{:.0}%", 100.0 * p))
                        .collect::<Vec<_>>()
                        .join(" / "),
                    100.0 * share
                ))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], RED.stroke_width(2)));
        }
        chart
            .draw_series(bars.iter().enumerate().map(|(i, &(b, o))| {
                Text::new(
                    format!("{:.1}%", 100.0 * (b + o)),
                    (SegmentValue::CenterOf(i), b + o + top * 0.01),
                    bar_label(),
                )
            }))
            .map_err(fail)?;
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    })
}

/// The series' legend, boxed, at `position`.
fn legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(GRAY)
        .draw()
        .map_err(fail)
}

/// The axes of a bar chart: one bar per exit, then the full model.
struct BarAxes<'a> {
    title: &'a str,
    bars: usize,
    top: f64,
    x_desc: &'a str,
    y_desc: &'a str,
}

type BarChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// A bar chart's canvas: caption, the bars' names on x, shares on y.
fn bar_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    axes: &BarAxes,
) -> Result<BarChart<'a, 'b>, PlotError> {
    let names = exit_names(axes.bars);
    let mut chart = ChartBuilder::on(root)
        .caption(axes.title, ("sans-serif", 16))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(categories(axes.bars), 0.0..axes.top)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(0)
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .x_label_formatter(&|v| segment_name(v, &names))
        .y_label_formatter(&percent)
        .draw()
        .map_err(fail)?;
    Ok(chart)
}

/// `n` bars, one per segment (a segmented `0..n` would have `n + 1`).
fn categories(n: usize) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize> {
    (0..n.saturating_sub(1)).into_segmented()
}

/// Bar `i` from `bottom` to `top`, inset from its segment's edges. Drawn
/// one by one in order (plotters' `Histogram` keeps its bars in a hash map,
/// so the SVG's element order would change from run to run).
fn bar(i: usize, bottom: f64, top: f64, color: RGBColor) -> Rectangle<(SegmentValue<usize>, f64)> {
    let mut r = Rectangle::new(
        [(SegmentValue::Exact(i), bottom), (SegmentValue::Exact(i + 1), top)],
        color.filled(),
    );
    r.set_margin(0, 0, 18, 18);
    r
}

/// A bar's label: centred above it.
fn bar_label() -> TextStyle<'static> {
    ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Bottom,
        ))
}

/// "exit 1" .. "exit K", then "full model" (the last of `n`).
fn exit_names(n: usize) -> Vec<String> {
    (1..=n)
        .map(|k| {
            if k == n {
                "full model".into()
            } else {
                format!("exit {k}")
            }
        })
        .collect()
}

fn segment_name(v: &SegmentValue<usize>, names: &[String]) -> String {
    match v {
        SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_labels_every_bar_with_its_share() {
        let svg = exit_histogram_svg(&[30, 10, 60], "exits").unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for label in [
            "exit 1",
            "exit 2",
            "full model",
            "30.0% (30)",
            "10.0% (10)",
            "60.0% (60)",
        ] {
            assert!(svg.contains(label), "no '{label}' in the histogram");
        }
        // The same input draws the same file.
        assert_eq!(svg, exit_histogram_svg(&[30, 10, 60], "exits").unwrap());
    }

    #[test]
    fn the_curve_marks_the_chosen_candidate() {
        let point = |savings: f64, certified: bool| CurvePoint {
            thresholds: vec![0.9],
            exit_shares: vec![savings, 1.0 - savings],
            harms: 0,
            helps: 0,
            risk: 0.0,
            stake: 0.0,
            p_value: 0.01,
            certified,
            accuracy: Some(0.97),
            agreement: 0.99,
            expected_flops: 1.0,
            savings,
        };
        let points = [point(0.1, true), point(0.3, true), point(0.5, false)];
        let svg = curve_svg(&points, Some(&points[1]), "curve").unwrap();
        for label in [
            "chosen: thresholds 0.9000",
            "not certified",
            "accuracy",
            "expected FLOPs",
        ] {
            assert!(svg.contains(label), "no '{label}' in the curve");
        }
    }
}
