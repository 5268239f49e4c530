//! Run metrics: one JSON object per step in `metrics.jsonl`, and a PNG of the loss curves.

use plotters::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The font the plot's text uses, embedded so plots need no system fonts (DejaVu Sans Mono,
/// Bitstream Vera licence: assets/fonts/LICENSE-DejaVu.txt).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSansMono.ttf");

/// A metric as a JSON number, or `null` when it is NaN or infinite (JSON has no such numbers).
pub fn json_number(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!(v)
    } else {
        serde_json::Value::Null
    }
}

pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens `path` for appending. When resuming at `resume_step`, records of later steps (written
    /// after the last checkpoint by a run that was then killed) are dropped first, so the log
    /// matches the resumed run.
    pub fn open(path: &Path, resume_step: Option<u64>) -> std::io::Result<Self> {
        match resume_step {
            Some(step) if path.exists() => {
                let text = std::fs::read_to_string(path)?;
                let kept: String = text
                    .lines()
                    .filter(|l| record_step(l).is_some_and(|s| s <= step))
                    .map(|l| format!("{l}\n"))
                    .collect();
                // A new file renamed over the old: a kill mid-write leaves the full history.
                let tmp = path.with_extension("jsonl.tmp");
                std::fs::write(&tmp, kept)?;
                std::fs::rename(&tmp, path)?;
            }
            Some(_) => {}
            None => {
                std::fs::write(path, "")?;
            }
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(MetricsLog { path: path.to_path_buf(), file })
    }

    pub fn append(&mut self, record: &serde_json::Value) -> std::io::Result<()> {
        writeln!(self.file, "{record}")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn record_step(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line).ok()?.get("step")?.as_u64()
}

/// The finite values of `key` by step.
fn series(records: &[serde_json::Value], key: &str) -> Vec<(f64, f64)> {
    records
        .iter()
        .filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(key)?.as_f64()?)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// Plots every `keys` series of the JSONL log at `metrics` into `png` (one panel per series that
/// has data), written to a temporary file and renamed.
pub fn plot(metrics: &Path, png: &Path, keys: &[(&str, &str)]) -> Result<(), String> {
    let text = std::fs::read_to_string(metrics).map_err(|e| format!("{}: {e}", metrics.display()))?;
    let records: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let panels: Vec<(&str, Vec<(f64, f64)>)> = keys
        .iter()
        .map(|(key, title)| (*title, series(&records, key)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if panels.is_empty() {
        return Err(format!("{}: nothing to plot", metrics.display()));
    }
    // plotters picks fonts by family name; registering the embedded one is idempotent.
    let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    let tmp = png.with_extension("png.tmp.png");
    {
        let root = BitMapBackend::new(&tmp, (900, 360 * panels.len() as u32)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        for (area, (title, points)) in root.split_evenly((panels.len(), 1)).iter().zip(&panels) {
            let (x0, x1) = (points[0].0, points[points.len() - 1].0.max(points[0].0 + 1.0));
            let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
            let pad = ((hi - lo) * 0.05).max(1e-3);
            let mut chart = ChartBuilder::on(area)
                .caption(*title, ("sans-serif", 22))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("step")
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| e.to_string())?;
            chart.draw_series(LineSeries::new(points.iter().copied(), &BLUE)).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    std::fs::rename(&tmp, png).map_err(|e| format!("{}: {e}", png.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_drops_records_after_the_checkpoint_and_plot_writes_a_png() {
        let dir = std::env::temp_dir().join(format!("deberta-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, None).unwrap();
        for step in 1..=5u64 {
            log.append(&serde_json::json!({"step": step, "mlm_loss": 5.0 / step as f64, "rtd_loss": null}))
                .unwrap();
        }
        drop(log);
        let mut log = MetricsLog::open(&path, Some(3)).unwrap();
        log.append(&serde_json::json!({"step": 4, "mlm_loss": 1.0})).unwrap();
        let steps: Vec<u64> =
            std::fs::read_to_string(&path).unwrap().lines().filter_map(record_step).collect();
        assert_eq!(steps, vec![1, 2, 3, 4]);
        let png = dir.join("loss.png");
        plot(&path, &png, &[("mlm_loss", "MLM loss"), ("rtd_loss", "RTD loss")]).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
