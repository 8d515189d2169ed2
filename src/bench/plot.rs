//! `bench --plot FILE.svg`: one panel per measured operation, a bar per path; the bars are
//! ratios to the reference path (kernel, else overlay, else ceph-fuse; >1: slower), or the
//! medians themselves where no reference ran. `scaling`'s points make one panel of curves
//! instead, throughput against the number of containers, one per path (the papers'
//! contention curve). Drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use super::{BenchError, PlotError, Report, Row};

const COLUMNS: usize = 4;
const PANEL: (u32, u32) = (360, 240);
const LEGEND: u32 = 44;

/// The figure each bar shows, and whether it is a ratio.
fn bar(report: &Report, r: &Row, base: Option<&str>) -> (f64, bool) {
    let reference = base.and_then(|b| report.rows.iter().find(|x| x.workload == r.workload && x.op == r.op && x.path == b));
    match reference {
        Some(b) if b.median > 0.0 && r.median > 0.0 => (r.slowdown(b), true),
        _ => (r.median, false),
    }
}

/// `scaling`'s medians as (containers, ops/s) points, one curve per path (by its place in
/// the report's paths); points measured once are left out, as single figures are from the
/// bar panels.
fn scaling_curves(report: &Report) -> Vec<(usize, Vec<(f64, f64)>)> {
    let mut curves: Vec<(usize, Vec<(f64, f64)>)> = Vec::new();
    for r in report.rows.iter().filter(|r| r.workload == "scaling" && r.samples > 1) {
        let (Some(i), Some(n)) = (report.paths.iter().position(|p| *p == r.path), r.op.split(' ').next().and_then(|n| n.parse::<f64>().ok())) else { continue };
        match curves.iter_mut().find(|(p, _)| *p == i) {
            Some((_, c)) => c.push((n, r.median)),
            None => curves.push((i, vec![(n, r.median)])),
        }
    }
    for (_, c) in &mut curves {
        c.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    curves
}

/// Draws `report` into `file`.
pub fn draw(report: &Report, file: &Path) -> Result<(), BenchError> {
    // Panels: every (workload, operation) measured more than once on some path.
    let mut panels: Vec<(&str, &str, &str)> = Vec::new();
    for r in report.rows.iter().filter(|r| r.samples > 1) {
        if !panels.iter().any(|(w, o, _)| *w == r.workload && *o == r.op) {
            panels.push((&r.workload, &r.op, &r.unit));
        }
    }
    panels.retain(|(w, _, _)| *w != "scaling");
    let curves = scaling_curves(report);
    let count = panels.len() + usize::from(!curves.is_empty());
    if count == 0 {
        return Err(BenchError::NothingToPlot);
    }
    let rows = count.div_ceil(COLUMNS);
    let size = (PANEL.0 * COLUMNS as u32, LEGEND + PANEL.1 * rows as u32);
    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(file, size).into_drawing_area();
        root.fill(&WHITE)?;
        let (legend, body) = root.split_vertically(LEGEND);
        let title = format!("polytropon bench, {} ({}); bars: ratio to kernel/overlay/ceph-fuse, >1 slower", report.date, report.machine);
        legend.draw(&Text::new(title, (8, 4), ("sans-serif", 13)))?;
        for (i, p) in report.paths.iter().enumerate() {
            let x = 8 + i as i32 * 130;
            legend.draw(&Rectangle::new([(x, 24), (x + 12, 36)], Palette99::pick(i).filled()))?;
            legend.draw(&Text::new(p.clone(), (x + 16, 24), ("sans-serif", 12)))?;
        }
        let areas = body.split_evenly((rows, COLUMNS));
        for (area, (w, op, unit)) in areas.iter().zip(&panels) {
            let rows: Vec<&Row> = report.rows.iter().filter(|r| r.workload == *w && r.op == *op).collect();
            let base = ["kernel", "overlay", "ceph-fuse"].into_iter().find(|b| rows.iter().any(|r| r.path == *b));
            let bars: Vec<(usize, f64, bool)> = rows
                .iter()
                .filter_map(|r| report.paths.iter().position(|p| *p == r.path).map(|i| (i, bar(report, r, base))))
                .map(|(i, (v, ratio))| (i, v, ratio))
                .collect();
            let top = bars.iter().map(|b| b.1).filter(|v| v.is_finite()).fold(1.0f64, f64::max) * 1.15;
            let ratio = bars.iter().all(|b| b.2);
            let caption = if ratio { format!("{w}: {op} ({unit}), x {}", base.unwrap_or("")) } else { format!("{w}: {op} ({unit})") };
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 12))
                .margin(6)
                .x_label_area_size(6)
                .y_label_area_size(44)
                .build_cartesian_2d(0f64..report.paths.len() as f64, 0f64..top)?;
            chart.configure_mesh().disable_x_mesh().x_labels(0).y_labels(5).label_style(("sans-serif", 10)).draw()?;
            chart.draw_series(bars.iter().filter(|b| b.1.is_finite()).map(|&(i, v, _)| {
                Rectangle::new([(i as f64 + 0.15, 0.0), (i as f64 + 0.85, v)], Palette99::pick(i).filled())
            }))?;
            if ratio {
                chart.draw_series(std::iter::once(PathElement::new(vec![(0.0, 1.0), (report.paths.len() as f64, 1.0)], BLACK)))?;
            }
        }
        if let Some(area) = areas.get(panels.len()).filter(|_| !curves.is_empty()) {
            let right = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)).fold(1.0f64, f64::max) * 1.05;
            let top = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(1.0f64, f64::max) * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption("scaling: ops/s by containers at once", ("sans-serif", 12))
                .margin(6)
                .x_label_area_size(18)
                .y_label_area_size(44)
                .build_cartesian_2d(0f64..right, 0f64..top)?;
            chart.configure_mesh().x_labels(6).y_labels(5).label_style(("sans-serif", 10)).draw()?;
            for (i, curve) in &curves {
                let color = Palette99::pick(*i);
                chart.draw_series(std::iter::once(PathElement::new(curve.clone(), color.stroke_width(2))))?;
                chart.draw_series(curve.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| BenchError::Draw { path: file.to_path_buf(), source: PlotError(e.to_string()) })
}
