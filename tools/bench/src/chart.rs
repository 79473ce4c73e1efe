//! Part C as a bar chart (PNG): per stage, one bar per configuration, so
//! that BENCHMARK.md shows at a glance what the table says.

use samclipseg::PackedLayout;
use samclipseg::image::render::{Canvas, PALETTE};

use crate::reference::Reference;
use crate::report::{FRAME, our_sum, their_sum};
use crate::stages::OursRun;

const W: usize = 1000;
const H: usize = 520;
const LEFT: usize = 70;
const TOP: usize = 90;
const BOTTOM: usize = 60;

/// One bar group per stage: its label and bench_reference.py keys.
const GROUPS: [(&str, &[&str]); 3] = [
    ("image encoder", &["image_encoder"]),
    ("decoder (1 prompt)", &["decoder"]),
    ("whole frame, text cached", &FRAME),
];

/// The chart of `ours` and `refs`, as PNG bytes.
pub fn png(ours: &[OursRun], refs: &[Reference], title: &str) -> Result<Vec<u8>, String> {
    let mut series: Vec<(String, Vec<f64>)> = ours
        .iter()
        .map(|o| {
            let v = GROUPS.iter().map(|(_, keys)| our_sum(o, keys)).collect();
            (o.label(), v)
        })
        .collect();
    series.extend(refs.iter().map(|r| {
        let v = GROUPS.iter().map(|(_, keys)| their_sum(r, keys)).collect();
        (r.name.to_string(), v)
    }));
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0, f64::max)
        * 1.12;
    let mut data = vec![255u8; W * H * 3];
    let mut c = Canvas {
        data: &mut data,
        width: W,
        height: H,
        stride: W * 3,
        layout: PackedLayout::Rgb,
    };
    c.draw_text(LEFT, 16, title, 2, [20, 20, 20]);
    let plot_h = H - TOP - BOTTOM;
    let y_of = |v: f64| TOP + plot_h - ((v / top) * plot_h as f64) as usize;
    // Axis and a grid line every round step.
    let step = nice_step(top / 5.0);
    let mut v = 0.0;
    while v <= top {
        let y = y_of(v);
        c.fill_rect(LEFT, y, W - LEFT - 20, 1, [225, 225, 225], 256);
        c.draw_text(
            4,
            y.saturating_sub(4),
            &format!("{v:>6.0}"),
            1,
            [90, 90, 90],
        );
        v += step;
    }
    c.draw_text(4, TOP - 24, "ms", 1, [90, 90, 90]);
    c.fill_rect(LEFT, TOP, 1, plot_h, [60, 60, 60], 256);
    let group_w = (W - LEFT - 20) / GROUPS.len();
    let bar_w = (group_w - 30) / series.len().max(1);
    for (g, (label, _)) in GROUPS.iter().enumerate() {
        let x0 = LEFT + g * group_w + 15;
        for (s, (_, values)) in series.iter().enumerate() {
            let colour = PALETTE[s % PALETTE.len()];
            let y = y_of(values[g]);
            let x = x0 + s * bar_w;
            c.fill_rect(x + 2, y, bar_w - 4, TOP + plot_h - y, colour, 256);
            let text = format!("{:.0}", values[g]);
            let tx = x + (bar_w.saturating_sub(text.len() * 8)) / 2;
            c.draw_text(tx, y.saturating_sub(12), &text, 1, [30, 30, 30]);
        }
        let lx = x0 + (group_w - 30).saturating_sub(label.len() * 8) / 2;
        c.draw_text(lx, TOP + plot_h + 12, label, 1, [20, 20, 20]);
    }
    // The legend, in rows under the title.
    let mut lx = LEFT;
    let mut ly = 48;
    for (s, (name, _)) in series.iter().enumerate() {
        let w = 24 + name.len() * 8 + 18;
        if lx + w > W - 10 {
            lx = LEFT;
            ly += 16;
        }
        c.fill_rect(lx, ly, 14, 10, PALETTE[s % PALETTE.len()], 256);
        c.draw_text(lx + 20, ly + 1, name, 1, [20, 20, 20]);
        lx += w;
    }
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_raw(W as u32, H as u32, data)
        .ok_or("chart buffer has the wrong size")?
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| format!("PNG: {e}"))?;
    Ok(out.into_inner())
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::STAGES;
    use crate::stats::Stats;
    use samclipseg::Precision;

    #[test]
    fn draws_a_png_of_the_right_size() {
        let run = OursRun {
            precision: Precision::Int8,
            is_auto: true,
            rows: vec![
                Stats {
                    median: 100.0,
                    p90: 100.0
                };
                STAGES.len()
            ],
            kept: 1,
        };
        let png = png(&[run], &[], "test").unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (W as u32, H as u32));
        assert_eq!(nice_step(180.0), 200.0);
        assert_eq!(nice_step(42.0), 50.0);
    }
}
