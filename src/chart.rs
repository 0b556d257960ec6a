//! The storage trend as an SVG line chart (`storage report --svg FILE`), drawn with plotters'
//! SVG backend: days along the bottom, used space (in the largest unit that keeps the numbers
//! readable) up the side. Nothing here reads the store; it draws what it is given.

use std::path::Path;

use plotters::prelude::*;

use crate::store::storage::TrendPoint;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("no trend data to draw for {0}")]
    Empty(String),
    #[error("cannot draw the chart to {path}: {message}")]
    Draw { path: String, message: String },
}

const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];

/// Draws `points` (oldest first) into an SVG file at `path`, titled `title`.
pub fn trend_svg(points: &[TrendPoint], title: &str, path: &Path) -> Result<(), ChartError> {
    if points.is_empty() {
        return Err(ChartError::Empty(title.to_string()));
    }
    let max = points
        .iter()
        .map(|p| p.used_bytes)
        .max()
        .unwrap_or(0)
        .max(1);
    let power = (0..UNITS.len())
        .rev()
        .find(|p| max >= 1i64 << (10 * p))
        .unwrap_or(0);
    let unit = (1i64 << (10 * power)) as f64;
    let values: Vec<f64> = points.iter().map(|p| p.used_bytes as f64 / unit).collect();
    let top = values.iter().cloned().fold(0.0, f64::max) * 1.1 + f64::EPSILON;
    let err = |e: &dyn std::fmt::Display| ChartError::Draw {
        path: path.display().to_string(),
        message: e.to_string(),
    };

    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let days: Vec<String> = points.iter().map(|p| p.day.clone()).collect();
    let n = days.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0usize..n.saturating_sub(1).max(1), 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_labels(n.min(10))
        .x_label_formatter(&|i| days.get(*i).cloned().unwrap_or_default())
        .y_desc(format!("used ({})", UNITS[power]))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(
            values.iter().enumerate().map(|(i, v)| (i, *v)),
            &BLUE,
        ))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| Circle::new((i, *v), 3, BLUE.filled())),
        )
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
