//! The report's figures (plotters), each drawn once for PNG and once for SVG: box plots per
//! metric (a panel per organ, a box per group), reliability diagrams per group with their bin
//! counts, and risk-coverage curves per organ.

use crate::analysis::{Analysis, PartResult, SINGLE};
use crate::pooled::{Pooled, Reliability};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("figure {name}: drawing failed: {detail}")]
    Draw { name: String, detail: String },
    #[error("figure {name}: PNG encoding failed: {source}")]
    Png {
        name: String,
        #[source]
        source: png::EncodingError,
    },
    #[error("the bundled font does not load")]
    Font,
}

/// A drawn figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem (`box_ece`, `reliability`, ...).
    pub name: String,
    pub title: String,
    /// What the figure shows, for the page and for readers of the file alone.
    pub caption: String,
    pub png: Vec<u8>,
    pub svg: String,
    /// Width in pixels of the PNG.
    pub width: u32,
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A figure's drawing, once per backend.
trait Plot {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static FONT_ONCE: Once = Once::new();

fn register_font() -> Result<(), FigureError> {
    let mut ok = true;
    FONT_ONCE.call_once(|| {
        ok = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok();
    });
    if ok { Ok(()) } else { Err(FigureError::Font) }
}

fn render<P: Plot>(
    plot: &P,
    name: &str,
    title: &str,
    caption: String,
) -> Result<Figure, FigureError> {
    register_font()?;
    let draw_err = |e: String| FigureError::Draw {
        name: name.to_string(),
        detail: e,
    };
    let (w, h) = plot.size();
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        plot.draw(&root).map_err(|e| draw_err(e.to_string()))?;
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        plot.draw(&root).map_err(|e| draw_err(e.to_string()))?;
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    let mut png_bytes = Vec::new();
    let png_err = |source| FigureError::Png {
        name: name.to_string(),
        source,
    };
    let mut enc = png::Encoder::new(&mut png_bytes, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .and_then(|mut wr| wr.write_image_data(&rgb))
        .map_err(png_err)?;
    Ok(Figure {
        name: name.to_string(),
        title: title.to_string(),
        caption,
        png: png_bytes,
        svg,
        width: w,
    })
}

/// The group's name on axes and legends.
pub fn short_label(group: &str) -> String {
    if group == SINGLE {
        return "single".into();
    }
    group.strip_prefix("ensemble_").unwrap_or(group).to_string()
}

/// Single models grey, the annotators' ensembles in three hues, `ensemble_all` dark.
fn color(group: &str) -> RGBColor {
    match group {
        SINGLE => RGBColor(120, 120, 120),
        "ensemble_anno1" => RGBColor(214, 39, 40),
        "ensemble_anno2" => RGBColor(44, 160, 44),
        "ensemble_anno3" => RGBColor(31, 119, 180),
        "ensemble_all" => RGBColor(80, 20, 140),
        _ => RGBColor(230, 140, 20),
    }
}

fn axis_label(label: &str, unit: &str) -> String {
    if unit.is_empty() {
        label.to_string()
    } else {
        format!("{label} ({unit})")
    }
}

/// The range shown for `values`, padded; a constant gets a unit-wide band.
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        (hi - lo) * 0.06
    } else {
        0.5 * lo.abs().max(1e-3)
    };
    (lo - pad, hi + pad)
}

struct BoxPlot<'a> {
    parts: Vec<&'a PartResult>,
    groups: &'a [String],
}

impl Plot for BoxPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (40 + 420 * self.parts.len() as u32, 440)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let panels = root.split_evenly((1, self.parts.len()));
        for (area, part) in panels.iter().zip(&self.parts) {
            self.panel(area, part)?;
        }
        Ok(())
    }
}

impl BoxPlot<'_> {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        part: &PartResult,
    ) -> DrawResult<DB> {
        let n = self.groups.len();
        let (lo, hi) = padded(part.groups.iter().flat_map(|g| g.values.iter().copied()));
        let mut chart = ChartBuilder::on(area)
            .caption(
                if part.organ == "all" {
                    "all organs".to_string()
                } else {
                    part.organ.clone()
                },
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), lo..hi)?;
        let labels: Vec<String> = self.groups.iter().map(|g| short_label(g)).collect();
        let x_fmt = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < n {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&x_fmt)
            .x_desc("group (single models, ensembles)")
            .y_desc(axis_label(&part.label, &part.unit))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()?;
        for (i, g) in part.groups.iter().enumerate() {
            let Some(s) = g.summary else { continue };
            let c = color(&g.group);
            let x = i as f64;
            let iqr = s.q3 - s.q1;
            let inside = |v: &&f64| **v >= s.q1 - 1.5 * iqr && **v <= s.q3 + 1.5 * iqr;
            let low = g.values.iter().filter(inside).fold(s.q1, |a, v| a.min(*v));
            let high = g.values.iter().filter(inside).fold(s.q3, |a, v| a.max(*v));
            chart.draw_series([
                Rectangle::new([(x - 0.3, s.q1), (x + 0.3, s.q3)], c.mix(0.25).filled()),
                Rectangle::new([(x - 0.3, s.q1), (x + 0.3, s.q3)], c.stroke_width(1)),
            ])?;
            chart.draw_series([
                PathElement::new(
                    vec![(x - 0.3, s.median), (x + 0.3, s.median)],
                    c.stroke_width(3),
                ),
                PathElement::new(vec![(x, s.q3), (x, high)], c.stroke_width(1)),
                PathElement::new(vec![(x, s.q1), (x, low)], c.stroke_width(1)),
                PathElement::new(vec![(x - 0.12, high), (x + 0.12, high)], c.stroke_width(1)),
                PathElement::new(vec![(x - 0.12, low), (x + 0.12, low)], c.stroke_width(1)),
            ])?;
            chart.draw_series(
                g.values
                    .iter()
                    .filter(|v| !inside(v))
                    .map(|v| Circle::new((x, *v), 3, c.stroke_width(1))),
            )?;
            chart.draw_series([TriangleMarker::new((x, s.mean), 5, BLACK.filled())])?;
        }
        Ok(())
    }
}

struct ReliabilityPlot<'a> {
    groups: Vec<(&'a str, &'a Reliability)>,
}

impl Plot for ReliabilityPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (40 + 330 * self.groups.len() as u32, 620)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let columns = root.split_evenly((1, self.groups.len()));
        for (area, (group, r)) in columns.iter().zip(&self.groups) {
            let (top, bottom) = area.split_vertically(420);
            self.curve(&top, group, r)?;
            self.counts(&bottom, group, r)?;
        }
        Ok(())
    }
}

impl ReliabilityPlot<'_> {
    fn curve<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        group: &str,
        r: &Reliability,
    ) -> DrawResult<DB> {
        let c = color(group);
        let mut chart = ChartBuilder::on(area)
            .caption(short_label(group), ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.2f64..1.0, 0.0f64..1.0)?;
        chart
            .configure_mesh()
            .x_desc("mean confidence in bin")
            .y_desc("accuracy in bin (vs each annotator)")
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .draw()?;
        chart.draw_series([PathElement::new(
            vec![(0.2, 0.2), (1.0, 1.0)],
            BLACK.mix(0.5).stroke_width(1),
        )])?;
        let points: Vec<(f64, f64)> = r
            .confidence
            .iter()
            .copied()
            .zip(r.accuracy.iter().copied())
            .collect();
        chart.draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?;
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, c.filled())))?;
        Ok(())
    }

    fn counts<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        group: &str,
        r: &Reliability,
    ) -> DrawResult<DB> {
        let c = color(group);
        let max = r.count.iter().copied().max().unwrap_or(1).max(10) as f64;
        let mut chart = ChartBuilder::on(area)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0.2f64..1.0, (1.0f64..max * 2.0).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("bin (confidence)")
            .y_desc("voxels per bin")
            .y_labels(4)
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 13))
            .draw()?;
        chart.draw_series(r.lower_edge.iter().zip(&r.count).map(|(x, n)| {
            // the bin of exact ones is drawn as a thin bar at 1
            let right = if *x >= 1.0 { 1.0 } else { (x + 0.02).min(1.0) };
            let left = if *x >= 1.0 { 0.995 } else { *x };
            Rectangle::new([(left, 1.0), (right, *n as f64)], c.mix(0.6).filled())
        }))?;
        Ok(())
    }
}

struct RiskCoveragePlot<'a> {
    organs: Vec<(&'a str, Vec<(&'a str, &'a crate::pooled::RiskCurve)>)>,
}

impl Plot for RiskCoveragePlot<'_> {
    fn size(&self) -> (u32, u32) {
        (40 + 420 * self.organs.len() as u32, 440)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let panels = root.split_evenly((1, self.organs.len()));
        for (area, (organ, curves)) in panels.iter().zip(&self.organs) {
            let top = curves
                .iter()
                .flat_map(|(_, c)| c.risk.iter().copied())
                .fold(0.0f64, f64::max)
                .max(1e-3)
                * 1.08;
            let mut chart = ChartBuilder::on(area)
                .caption(*organ, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(44)
                .y_label_area_size(64)
                .build_cartesian_2d(0.0f64..1.0, 0.0f64..top)?;
            chart
                .configure_mesh()
                .x_desc("coverage (fraction of ROI voxels kept, most confident first)")
                .y_desc("selective risk (error rate among kept voxels)")
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .draw()?;
            for (group, curve) in curves {
                let c = color(group);
                let points = curve
                    .coverage
                    .iter()
                    .copied()
                    .zip(curve.risk.iter().copied());
                chart
                    .draw_series(LineSeries::new(points, c.stroke_width(2)))?
                    .label(short_label(group))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 12))
                .border_style(BLACK.mix(0.4))
                .background_style(WHITE.mix(0.9))
                .draw()?;
        }
        Ok(())
    }
}

/// One box-plot figure per metric.
pub fn box_plots(analysis: &Analysis) -> Result<Vec<Figure>, FigureError> {
    let mut out = Vec::new();
    let mut metrics: Vec<&str> = analysis.parts.iter().map(|p| p.metric.as_str()).collect();
    metrics.dedup();
    for m in metrics {
        let parts: Vec<&PartResult> = analysis.parts.iter().filter(|p| p.metric == m).collect();
        let label = &parts[0].label;
        let caption = format!(
            "{label} per row, by group: box from the first to the third quartile (numpy's linear \
             interpolation), thick line the median, triangle the mean, whiskers to the furthest \
             value within 1.5 IQR, circles beyond. single = every single model's row; anno<k> = \
             ensemble_anno<k>; all = ensemble_all."
        );
        let plot = BoxPlot {
            parts,
            groups: &analysis.groups,
        };
        out.push(render(&plot, &format!("box_{m}"), label, caption)?);
    }
    Ok(out)
}

/// Reliability diagrams (one column per group) and risk-coverage curves (one panel per organ);
/// none when no row had curves.
pub fn curve_figures(analysis: &Analysis, pooled: &Pooled) -> Result<Vec<Figure>, FigureError> {
    let mut out = Vec::new();
    let groups: Vec<(&str, &Reliability)> = analysis
        .groups
        .iter()
        .filter_map(|g| pooled.reliability.get(g).map(|r| (g.as_str(), r)))
        .filter(|(_, r)| !r.count.is_empty())
        .collect();
    if !groups.is_empty() {
        let caption = "Reliability diagrams, pooled over cases: per ECE bin (50 bins of width \
                       0.02 plus torchmetrics' bin of confidences exactly 1) the mean top-label \
                       confidence against the fraction of voxels whose top label equals the \
                       annotator's, pooled over the three annotators; the diagonal is perfect \
                       calibration. Below, the voxels in each bin (log scale)."
            .to_string();
        let plot = ReliabilityPlot { groups };
        out.push(render(
            &plot,
            "reliability",
            "Reliability diagrams",
            caption,
        )?);
    }
    let organs: Vec<(&str, Vec<(&str, &crate::pooled::RiskCurve)>)> = crate::catalog::ORGANS
        .iter()
        .map(|(organ, _)| {
            let curves = analysis
                .groups
                .iter()
                .filter_map(|g| {
                    pooled
                        .risk_coverage
                        .get(g)
                        .and_then(|o| o.get(*organ))
                        .map(|c| (g.as_str(), c))
                })
                .collect::<Vec<_>>();
            (*organ, curves)
        })
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if !organs.is_empty() {
        let caption = "Risk-coverage curves per organ: the decision 'voxel is this organ' ranked \
                       by its confidence; keeping the most confident fraction of the ROI voxels \
                       (coverage), the share of kept voxels where the annotator disagrees (risk). \
                       Mean over cases and the three annotators; the area under each is the AURC."
            .to_string();
        let plot = RiskCoveragePlot { organs };
        out.push(render(
            &plot,
            "risk_coverage",
            "Risk-coverage curves",
            caption,
        )?);
    }
    Ok(out)
}
