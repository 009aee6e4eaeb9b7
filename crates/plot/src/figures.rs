//! The figures: scaling grid, ψ curves, D(n) with the λ√Υ fit, n_balance vs y = x, difference heatmap.

use crate::{draw_err, Figure, PlotError, Result, FAMILY};
use plotters::coord::Shift;
use plotters::prelude::*;
use tokenscale_law::fit::{CurvePoint, FitResult};

/// Tableau-10 colours.
pub const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Legend key for a line series: a short horizontal stroke in the series' colour.
pub(crate) fn line_key(
    col: RGBColor,
    width: u32,
) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(width))
}

/// The legend box every figure uses, at `pos`, in a `size`-point font.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    pos: SeriesLabelPosition,
    size: u32,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(pos)
        .label_font((FAMILY, size))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

pub(crate) fn range_of(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if lo.is_finite() {
        Some((lo, hi))
    } else {
        None
    }
}

pub(crate) fn pad((lo, hi): (f64, f64), frac: f64) -> (f64, f64) {
    let span = hi - lo;
    let p = if span > 0.0 { span * frac } else { lo.abs().max(1.0) * 0.05 };
    (lo - p, hi + p)
}

fn fmt_n(v: f64) -> String {
    let n = 2f64.powf(v);
    if (n - n.round()).abs() < 1e-6 * n.max(1.0) {
        format!("{}", n.round())
    } else {
        String::new()
    }
}

pub(crate) fn fmt_tick(v: &f64) -> String {
    let a = v.abs();
    if a < 1e-9 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

// ---------------------------------------------------------------- scaling grid

/// A measured point in a scaling panel.
#[derive(Clone, Debug)]
pub struct GridPoint {
    /// Vision-token count (drawn at log2 n).
    pub n: f64,
    /// The measured score.
    pub score: f64,
    /// Flagged by the fit's studentised residual (drawn as a ring).
    pub outlier: bool,
    /// Left out of the fit by the user (drawn as a cross).
    pub excluded: bool,
}

/// A fitted curve (with its bootstrap band) in a scaling panel.
#[derive(Clone, Debug)]
pub struct GridCurve {
    /// Legend entry: the law and its fitting space.
    pub label: String,
    /// The fitted values with their band's lower and upper edges.
    pub points: Vec<CurvePoint>,
}

/// One benchmark.
#[derive(Clone, Debug)]
pub struct GridPanel {
    /// The benchmark's name, above the panel.
    pub title: String,
    /// The measured points.
    pub points: Vec<GridPoint>,
    /// The fitted curves, one colour each.
    pub curves: Vec<GridCurve>,
}

impl GridPanel {
    /// Points (with outlier / exclusion marks of the first fit) and one curve per fit.
    pub fn from_fits(title: &str, fits: &[&FitResult]) -> Self {
        let points = fits
            .first()
            .map(|f| {
                f.residuals
                    .iter()
                    .map(|r| GridPoint {
                        n: r.n,
                        score: r.score,
                        outlier: r.outlier,
                        excluded: r.excluded,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let curves = fits
            .iter()
            .map(|f| GridCurve {
                label: format!("{} ({} space)", f.law.name(), f.space.name()),
                points: f.curve.clone(),
            })
            .collect();
        Self { title: title.into(), points, curves }
    }
}

/// One panel per benchmark; x = log2 n, measured points, fitted curves and their 95% bands.
#[derive(Clone, Debug)]
pub struct ScalingGrid {
    /// Caption above the grid.
    pub title: String,
    /// One panel per benchmark, laid out row by row.
    pub panels: Vec<GridPanel>,
    /// Panels per row.
    pub cols: usize,
    /// One panel's width and height in pixels.
    pub panel_size: (u32, u32),
    /// Whether the curves' bootstrap bands are shaded.
    pub band: bool,
}

impl ScalingGrid {
    /// A grid of `panels` with 1 to 6 panels a row (by how many there are), 330 × 260-px panels
    /// and bands on.
    pub fn new(title: &str, panels: Vec<GridPanel>) -> Self {
        let cols = match panels.len() {
            0..=3 => panels.len().max(1),
            4 => 2,
            5..=9 => 3,
            10..=16 => 4,
            _ => 6,
        };
        Self { title: title.into(), panels, cols, panel_size: (330, 260), band: true }
    }
    fn rows(&self) -> usize {
        self.panels.len().div_ceil(self.cols.max(1)).max(1)
    }
}

impl Figure for ScalingGrid {
    fn size(&self) -> (u32, u32) {
        (self.panel_size.0 * self.cols.max(1) as u32, self.panel_size.1 * self.rows() as u32 + 40)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        if self.panels.is_empty() {
            return Err(PlotError::Empty("scaling grid without panels".into()));
        }
        let root = root.titled(&self.title, (FAMILY, 22)).map_err(draw_err)?;
        let areas = root.split_evenly((self.rows(), self.cols.max(1)));
        for (pi, (panel, area)) in self.panels.iter().zip(areas.iter()).enumerate() {
            let xs = panel
                .points
                .iter()
                .map(|p| p.n.log2())
                .chain(panel.curves.iter().flat_map(|c| c.points.iter().map(|p| p.n.log2())));
            let (x0, x1) = pad(
                range_of(xs).ok_or_else(|| PlotError::Empty(format!("panel {}", panel.title)))?,
                0.05,
            );
            let ys = panel
                .points
                .iter()
                .map(|p| p.score)
                .chain(panel.curves.iter().flat_map(|c| c.points.iter().map(|p| p.fit)));
            let (y0, y1) = pad(range_of(ys).unwrap_or((0.0, 1.0)), 0.12);
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, (FAMILY, 14))
                .margin(6)
                .x_label_area_size(28)
                .y_label_area_size(48)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .light_line_style(RGBColor(235, 235, 235))
                .x_labels(8)
                .y_labels(6)
                .x_label_formatter(&|v| fmt_n(*v))
                .y_label_formatter(&fmt_tick)
                .x_desc("n (log2 scale)")
                .label_style((FAMILY, 11))
                .axis_desc_style((FAMILY, 11))
                .draw()
                .map_err(draw_err)?;
            let clamp = |v: f64| v.clamp(y0, y1);
            for (ci, c) in panel.curves.iter().enumerate() {
                let col = color(ci);
                if self.band && c.points.iter().any(|p| p.hi > p.lo) {
                    let mut poly: Vec<(f64, f64)> =
                        c.points.iter().map(|p| (p.n.log2(), clamp(p.hi))).collect();
                    poly.extend(c.points.iter().rev().map(|p| (p.n.log2(), clamp(p.lo))));
                    chart
                        .draw_series(std::iter::once(Polygon::new(poly, col.mix(0.18).filled())))
                        .map_err(draw_err)?;
                }
                let s = chart
                    .draw_series(LineSeries::new(
                        c.points
                            .iter()
                            .filter(|p| p.fit >= y0 && p.fit <= y1)
                            .map(|p| (p.n.log2(), p.fit)),
                        col.stroke_width(2),
                    ))
                    .map_err(draw_err)?;
                if pi == 0 {
                    s.label(c.label.clone()).legend(line_key(col, 2));
                }
            }
            let black = RGBColor(20, 20, 20);
            chart
                .draw_series(
                    panel
                        .points
                        .iter()
                        .filter(|p| !p.outlier && !p.excluded)
                        .map(|p| Circle::new((p.n.log2(), p.score), 3, black.filled())),
                )
                .map_err(draw_err)?;
            let red = RGBColor(214, 39, 40);
            chart
                .draw_series(
                    panel
                        .points
                        .iter()
                        .filter(|p| p.outlier)
                        .map(|p| Cross::new((p.n.log2(), p.score), 5, red.stroke_width(2))),
                )
                .map_err(draw_err)?;
            chart
                .draw_series(
                    panel
                        .points
                        .iter()
                        .filter(|p| p.excluded)
                        .map(|p| Circle::new((p.n.log2(), p.score), 4, red.stroke_width(1))),
                )
                .map_err(draw_err)?;
            if pi == 0 && !panel.curves.is_empty() {
                draw_legend(&mut chart, SeriesLabelPosition::LowerRight, 10)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- simple line panels

/// A named line (None where undefined).
#[derive(Clone, Debug)]
pub struct Line {
    /// Legend entry.
    pub label: String,
    /// One value per x of the panel; `None` breaks the line.
    pub values: Vec<Option<f64>>,
}

fn line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    n: &[f64],
    lines: &[(usize, &Line)],
    y_desc: &str,
) -> Result<()> {
    line_panel_over(area, title, (n, "n"), lines, y_desc)
}

/// Lines over any x axis (`x.1` names it).
pub(crate) fn line_panel_over<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x: (&[f64], &str),
    lines: &[(usize, &Line)],
    y_desc: &str,
) -> Result<()> {
    let (n, x_desc) = x;
    let lines: Vec<&(usize, &Line)> =
        lines.iter().filter(|(_, l)| l.values.iter().any(|v| v.is_some())).collect();
    let ys = lines.iter().flat_map(|(_, l)| l.values.iter().flatten().copied());
    let (y0, y1) = pad(range_of(ys).ok_or_else(|| PlotError::Empty(title.into()))?, 0.08);
    let (x0, x1) = range_of(n.iter().copied()).ok_or_else(|| PlotError::Empty(title.into()))?;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 15))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), y0..y1)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .x_desc(x_desc)
        .x_label_formatter(&fmt_tick)
        .y_desc(y_desc)
        .y_label_formatter(&fmt_tick)
        .label_style((FAMILY, 11))
        .axis_desc_style((FAMILY, 12))
        .draw()
        .map_err(draw_err)?;
    for (ci, l) in lines {
        let col = color(*ci);
        chart
            .draw_series(LineSeries::new(
                n.iter().zip(&l.values).filter_map(|(x, y)| Some((*x, (*y)?))),
                col.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label(l.label.clone())
            .legend(line_key(col, 2));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 11)?;
    Ok(())
}

/// ψ curves: (a) ψ_AA, ½(AA+BB), ψ_BB; (b) ψ_AABB vs ψ_AB; (c) with ψ_eq.
#[derive(Clone, Debug)]
pub struct PsiFigure {
    /// Caption above the three panels.
    pub title: String,
    /// The x axis: vision-token counts; every series below has one value per n.
    pub n: Vec<f64>,
    /// ψ_equal(AB): mean cosine similarity of the two branches' tokens at equal positions.
    pub psi_eq: Vec<Option<f64>>,
    /// ψ_cross(AA): mean cosine similarity between different positions within branch A.
    pub psi_aa: Vec<Option<f64>>,
    /// ψ_cross(BB): the same within branch B.
    pub psi_bb: Vec<Option<f64>>,
    /// ψ_cross(AABB) = ½(AA + BB).
    pub psi_aabb: Vec<Option<f64>>,
    /// ψ_cross(AB): mean cosine similarity between different positions across the branches.
    pub psi_ab: Vec<Option<f64>>,
}

impl Figure for PsiFigure {
    fn size(&self) -> (u32, u32) {
        (1350, 420)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let root = root.titled(&self.title, (FAMILY, 20)).map_err(draw_err)?;
        let areas = root.split_evenly((1, 3));
        let l = |label: &str, v: &Vec<Option<f64>>| Line { label: label.into(), values: v.clone() };
        let (aa, bb, aabb, ab, eq) = (
            l("psi_cross(AA)", &self.psi_aa),
            l("psi_cross(BB)", &self.psi_bb),
            l("psi_cross(AABB)", &self.psi_aabb),
            l("psi_cross(AB)", &self.psi_ab),
            l("psi_equal(AB)", &self.psi_eq),
        );
        let panels: [(&str, Vec<(usize, &Line)>); 3] = [
            ("AA, (AA+BB)/2, BB", vec![(0, &aa), (1, &aabb), (2, &bb)]),
            ("AABB vs AB", vec![(1, &aabb), (3, &ab)]),
            ("AABB, AB and equal-position AB", vec![(1, &aabb), (3, &ab), (4, &eq)]),
        ];
        for ((title, lines), area) in panels.iter().zip(areas.iter()) {
            if lines.iter().any(|(_, l)| l.values.iter().any(|v| v.is_some())) {
                line_panel(area, title, &self.n, lines, "mean cosine similarity")?;
            }
        }
        Ok(())
    }
}

/// Mean D(n) with ±σ and ±2σ bands and the λ√Υ(n) fit.
#[derive(Clone, Debug)]
pub struct DistanceFigure {
    /// Caption above the chart.
    pub title: String,
    /// The x axis: vision-token counts; every series below has one value per n.
    pub n: Vec<f64>,
    /// D(n) = ‖Σ_{i≤n}(a_i − b_i)‖ (the branches' summed hidden-state difference), mean over pairs.
    pub d_mean: Vec<Option<f64>>,
    /// Its standard deviation over pairs (`None`: no band at that n).
    pub d_std: Vec<Option<f64>>,
    /// λ√Υ(n) (or √Υ when no λ).
    pub fit: Vec<Option<f64>>,
    /// Legend entry of the fit (it names λ).
    pub fit_label: String,
}

impl Figure for DistanceFigure {
    fn size(&self) -> (u32, u32) {
        (800, 520)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let band = |k: f64, sign: f64| -> Vec<Option<f64>> {
            self.d_mean
                .iter()
                .zip(&self.d_std)
                .map(|(m, s)| Some(m.as_ref()? + sign * k * s.unwrap_or(0.0)))
                .collect()
        };
        let ys = self
            .d_mean
            .iter()
            .chain(&self.fit)
            .flatten()
            .copied()
            .chain(band(2.0, 1.0).into_iter().flatten())
            .chain(band(2.0, -1.0).into_iter().flatten());
        let (y0, y1) = pad(range_of(ys).ok_or_else(|| PlotError::Empty("distance".into()))?, 0.05);
        let (x0, x1) =
            range_of(self.n.iter().copied()).ok_or_else(|| PlotError::Empty("distance".into()))?;
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc("n")
            .x_label_formatter(&fmt_tick)
            .y_desc("D(n)")
            .y_label_formatter(&fmt_tick)
            .label_style((FAMILY, 12))
            .axis_desc_style((FAMILY, 13))
            .draw()
            .map_err(draw_err)?;
        let base = color(0);
        for k in [2.0, 1.0] {
            let hi = band(k, 1.0);
            let lo = band(k, -1.0);
            let mut poly: Vec<(f64, f64)> =
                self.n.iter().zip(&hi).filter_map(|(x, y)| Some((*x, (*y)?))).collect();
            poly.extend(self.n.iter().zip(&lo).rev().filter_map(|(x, y)| Some((*x, (*y)?))));
            if poly.len() >= 3 {
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, base.mix(0.12).filled())))
                    .map_err(draw_err)?
                    .label(format!("mean ± {k}σ"))
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 16, y + 5)], base.mix(0.2).filled())
                    });
            }
        }
        chart
            .draw_series(LineSeries::new(
                self.n.iter().zip(&self.d_mean).filter_map(|(x, y)| Some((*x, (*y)?))),
                base.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label("mean D(n)")
            .legend(line_key(base, 2));
        let fc = color(3);
        chart
            .draw_series(LineSeries::new(
                self.n.iter().zip(&self.fit).filter_map(|(x, y)| Some((*x, (*y)?))),
                fc.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label(self.fit_label.clone())
            .legend(line_key(fc, 2));
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, 12)?;
        Ok(())
    }
}

/// n_balance(n) against the line y = n.
#[derive(Clone, Debug)]
pub struct BalanceFigure {
    /// Caption above the chart.
    pub title: String,
    /// The x axis: vision-token counts.
    pub n: Vec<f64>,
    /// n_balance at each n (`None` where ψ_AA ≤ ψ_AB leaves it undefined).
    pub n_balance: Vec<Option<f64>>,
}

impl Figure for BalanceFigure {
    fn size(&self) -> (u32, u32) {
        (700, 520)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (x0, x1) =
            range_of(self.n.iter().copied()).ok_or_else(|| PlotError::Empty("balance".into()))?;
        // Keep y = n visible; very large n_balance values are clipped to the top.
        let cap = x1 * 3.0;
        let ys = self.n_balance.iter().flatten().map(|v| v.min(cap)).chain([x0, x1]);
        let (y0, y1) = pad(range_of(ys).unwrap_or((x0, x1)), 0.05);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), y0..y1)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .x_desc("n")
            .x_label_formatter(&fmt_tick)
            .y_desc("n_balance(n)")
            .y_label_formatter(&fmt_tick)
            .label_style((FAMILY, 12))
            .axis_desc_style((FAMILY, 13))
            .draw()
            .map_err(draw_err)?;
        let c0 = color(0);
        chart
            .draw_series(LineSeries::new(
                self.n
                    .iter()
                    .zip(&self.n_balance)
                    .filter_map(|(x, y)| Some((*x, (*y)?.clamp(y0, y1)))),
                c0.stroke_width(2),
            ))
            .map_err(draw_err)?
            .label("(1 - psi_eq)/(psi_AABB - psi_AB) - 1")
            .legend(line_key(c0, 2));
        let grey = RGBColor(90, 90, 90);
        chart
            .draw_series(LineSeries::new([(x0, x0), (x1, x1)], grey.stroke_width(1)))
            .map_err(draw_err)?
            .label("y = n")
            .legend(line_key(grey, 1));
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft, 12)?;
        Ok(())
    }
}

// ---------------------------------------------------------------- heatmap

/// A table of differences (e.g. question-conditioned minus question-free) per benchmark (rows)
/// and n (columns), drawn as a diverging heatmap with the values printed in the cells.
#[derive(Clone, Debug)]
pub struct DiffHeatmap {
    /// Caption above the table.
    pub title: String,
    /// Row labels (benchmarks).
    pub rows: Vec<String>,
    /// Column labels (n).
    pub cols: Vec<String>,
    /// `values[row][col]`; `None` leaves the cell blank. The colour scale is symmetric about 0.
    pub values: Vec<Vec<Option<f64>>>,
}

impl DiffHeatmap {
    const LEFT: u32 = 230;
    const TOP: u32 = 60;
    const CELL: (u32, u32) = (62, 26);
}

fn diverging(t: f64) -> RGBColor {
    // t in [-1, 1]: blue (negative) - white - red (positive)
    let t = t.clamp(-1.0, 1.0);
    let (r, g, b) = if t < 0.0 {
        let s = -t;
        (255.0 - s * (255.0 - 49.0), 255.0 - s * (255.0 - 104.0), 255.0 - s * (255.0 - 189.0))
    } else {
        (255.0 - t * (255.0 - 214.0), 255.0 - t * (255.0 - 39.0), 255.0 - t * (255.0 - 40.0))
    };
    RGBColor(r as u8, g as u8, b as u8)
}

impl Figure for DiffHeatmap {
    fn size(&self) -> (u32, u32) {
        (
            Self::LEFT + Self::CELL.0 * self.cols.len().max(1) as u32 + 20,
            Self::TOP + Self::CELL.1 * self.rows.len().max(1) as u32 + 50,
        )
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        if self.rows.is_empty() || self.cols.is_empty() {
            return Err(PlotError::Empty("heatmap without rows or columns".into()));
        }
        // Benchmarks have different score scales: colour is normalised per row.
        let row_scale: Vec<f64> = (0..self.rows.len())
            .map(|i| {
                let m = self
                    .values
                    .get(i)
                    .map_or(0.0, |r| r.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs())));
                if m > 0.0 {
                    m
                } else {
                    1.0
                }
            })
            .collect();
        let (cw, ch) = (Self::CELL.0 as i32, Self::CELL.1 as i32);
        let (left, top) = (Self::LEFT as i32, Self::TOP as i32);
        let title = TextStyle::from((FAMILY, 18).into_font()).color(&BLACK);
        root.draw(&Text::new(self.title.clone(), (10, 12), title)).map_err(draw_err)?;
        let label = TextStyle::from((FAMILY, 12).into_font()).color(&BLACK);
        let centred = label.pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
        let right = label.pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Right,
            plotters::style::text_anchor::VPos::Center,
        ));
        for (j, c) in self.cols.iter().enumerate() {
            root.draw(&Text::new(
                c.clone(),
                (left + j as i32 * cw + cw / 2, top - 12),
                centred.clone(),
            ))
            .map_err(draw_err)?;
        }
        for (i, r) in self.rows.iter().enumerate() {
            let y = top + i as i32 * ch;
            root.draw(&Text::new(r.clone(), (left - 8, y + ch / 2), right.clone()))
                .map_err(draw_err)?;
            for j in 0..self.cols.len() {
                let x = left + j as i32 * cw;
                let v = self.values.get(i).and_then(|row| row.get(j)).copied().flatten();
                let fill = match v {
                    Some(v) => diverging(v / row_scale[i]),
                    None => RGBColor(230, 230, 230),
                };
                root.draw(&Rectangle::new([(x, y), (x + cw, y + ch)], fill.filled()))
                    .map_err(draw_err)?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cw, y + ch)],
                    RGBColor(255, 255, 255).stroke_width(1),
                ))
                .map_err(draw_err)?;
                let text = v.map_or("-".to_string(), |v| {
                    if v.abs() >= 100.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.1}")
                    }
                });
                root.draw(&Text::new(text, (x + cw / 2, y + ch / 2), centred.clone()))
                    .map_err(draw_err)?;
            }
        }
        let foot = TextStyle::from((FAMILY, 11).into_font()).color(&RGBColor(80, 80, 80));
        let y = top + self.rows.len() as i32 * ch + 18;
        root.draw(&Text::new("red: positive, blue: negative; colour scaled per row (full colour = the row's largest |difference|)".to_string(), (10, y), foot)).map_err(draw_err)?;
        Ok(())
    }
}
