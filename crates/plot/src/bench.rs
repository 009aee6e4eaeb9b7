//! `tokenscale bench`'s figure: measured time per vision-token count n (median with p25–p75
//! whiskers) and a FLOPs model of it (a curve already scaled to seconds by the caller).

use crate::figures::{color, draw_legend, fmt_tick, line_key, pad, range_of};
use crate::{draw_err, Figure, PlotError, Result, FAMILY};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Median and quartiles of one measured time at n.
#[derive(Clone, Debug)]
pub struct TimedPoint {
    /// Vision-token count.
    pub n: f64,
    /// 25th percentile of the repeats, in seconds.
    pub p25: f64,
    /// Median of the repeats, in seconds.
    pub median: f64,
    /// 75th percentile of the repeats, in seconds.
    pub p75: f64,
}

/// One measured time (e.g. "vision + TTFT") over n.
#[derive(Clone, Debug)]
pub struct TimedSeries {
    /// Legend entry.
    pub label: String,
    /// Its measurements, one per n (in any order; drawn sorted by the axis).
    pub points: Vec<TimedPoint>,
}

/// Time against n: measured series with whiskers, and an optional model curve (n, seconds).
#[derive(Clone, Debug)]
pub struct BenchFigure {
    /// Caption above the chart.
    pub title: String,
    /// The measured times, one colour each.
    pub series: Vec<TimedSeries>,
    /// Legend entry of the model curve.
    pub model_label: String,
    /// The model curve as (n, seconds); empty draws none.
    pub model: Vec<(f64, f64)>,
}

impl Figure for BenchFigure {
    fn size(&self) -> (u32, u32) {
        (820, 540)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let measured = self.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) =
            range_of(measured.clone().map(|p| p.n).chain(self.model.iter().map(|p| p.0)))
                .ok_or_else(|| PlotError::Empty("bench figure without points".into()))?;
        let (_, y1) = range_of(
            measured.flat_map(|p| [p.p75, p.median]).chain(self.model.iter().map(|p| p.1)),
        )
        .unwrap_or((0.0, 1.0));
        let (x0, x1) = pad((x0, x1.max(x0 + 1.0)), 0.04);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 18))
            .margin(12)
            .x_label_area_size(38)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, 0.0..(y1 * 1.08).max(1e-6))
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc("vision tokens n")
            .x_label_formatter(&fmt_tick)
            .y_desc("seconds")
            .y_label_formatter(&fmt_tick)
            .label_style((FAMILY, 12))
            .axis_desc_style((FAMILY, 13))
            .draw()
            .map_err(draw_err)?;
        for (i, s) in self.series.iter().enumerate() {
            let col = color(i);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().map(|p| (p.n, p.median)),
                    col.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(format!("{} (median, p25–p75)", s.label))
                .legend(line_key(col, 2));
            chart
                .draw_series(s.points.iter().map(|p| Circle::new((p.n, p.median), 4, col.filled())))
                .map_err(draw_err)?;
            // whiskers: a vertical stroke from p25 to p75 (drawn in data coordinates)
            chart
                .draw_series(s.points.iter().map(|p| {
                    PathElement::new(vec![(p.n, p.p25), (p.n, p.p75)], col.stroke_width(2))
                }))
                .map_err(draw_err)?;
        }
        if !self.model.is_empty() {
            let col = RGBColor(60, 60, 60);
            chart
                .draw_series(DashedLineSeries::new(
                    self.model.iter().copied(),
                    8,
                    5,
                    col.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(self.model_label.clone())
                .legend(line_key(col, 2));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, 12)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_figure_renders_a_non_blank_png_and_an_svg() {
        let pt = |n: f64, m: f64| TimedPoint { n, p25: m * 0.9, median: m, p75: m * 1.2 };
        let fig = BenchFigure {
            title: "time to first token".into(),
            series: vec![
                TimedSeries {
                    label: "vision + TTFT".into(),
                    points: vec![pt(1.0, 1.0), pt(64.0, 1.6), pt(576.0, 6.0)],
                },
                TimedSeries {
                    label: "TTFT".into(),
                    points: vec![pt(1.0, 0.4), pt(64.0, 1.0), pt(576.0, 5.3)],
                },
            ],
            model_label: "0.9 s + FLOPs / 100 GFLOP/s".into(),
            model: (1..=576)
                .step_by(5)
                .map(|n| (n as f64, 0.9 + 8.6e-6 * (n * n) as f64))
                .collect(),
        };
        let png = fig.png().unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), fig.size());
        let differing = img.pixels().filter(|p| **p != *img.get_pixel(0, 0)).count();
        assert!(differing > (820 * 540) / 100, "nearly blank: {differing}");
        // the series colours are really drawn (blue medians, orange TTFT)
        for c in [color(0), color(1)] {
            assert!(
                img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count() > 100,
                "colour {c:?} missing"
            );
        }
        let svg = fig.svg().unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("vision + TTFT") && svg.contains("GFLOP/s")
        );
        let empty = BenchFigure { series: vec![], model: vec![], ..fig };
        assert!(empty.png().is_err());
    }
}
