//! A small SVG line-chart writer for `retort runs plot`: panels with axes, ticks, series and
//! marked vertical events. No fonts or rendering libraries: the browser draws the text.
use std::fmt::Write as _;

/// Colours of successive series.
const PALETTE: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// One line (or dots) in a panel.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Dots instead of a line (few points).
    pub dots: bool,
}

/// One chart: title, axis labels, series and vertical markers `(x, label)`.
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub markers: Vec<(f64, String)>,
    /// Draw the y = x diagonal (reliability diagrams).
    pub diagonal: bool,
    /// Fixed ranges instead of the data's.
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
}

const W: f64 = 760.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 44.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// About five round tick values covering `(lo, hi)`.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 7.0).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() * step;
    (0..=12).map(|i| first + i as f64 * step).take_while(|t| *t <= hi + step * 1e-9).collect()
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        // A margin so that points at the extremes stay inside the frame.
        let pad = (hi - lo) * 0.04;
        (lo - pad, hi + pad)
    }
}

impl Panel {
    fn draw(&self, out: &mut String, y0: f64, colours: &mut Vec<String>) {
        let all = || self.series.iter().flat_map(|s| s.points.iter());
        let (x_lo, x_hi) = self.x_range.unwrap_or_else(|| range(all().map(|p| p.0)));
        let (y_lo, y_hi) = self.y_range.unwrap_or_else(|| range(all().map(|p| p.1)));
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (x - x_lo) / (x_hi - x_lo) * pw;
        let sy = |y: f64| y0 + TOP + ph - (y - y_lo) / (y_hi - y_lo) * ph;
        let _ = write!(
            out,
            r#"<text x="{LEFT}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
            y0 + 20.0,
            escape(&self.title)
        );
        let _ = write!(
            out,
            r##"<rect x="{LEFT}" y="{}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
            y0 + TOP
        );
        for t in ticks(x_lo, x_hi) {
            let x = sx(t);
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
                y0 + TOP,
                y0 + TOP + ph
            );
            let _ = write!(
                out,
                r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
                y0 + TOP + ph + 15.0,
                fmt(t)
            );
        }
        for t in ticks(y_lo, y_hi) {
            let y = sy(t);
            let _ = write!(out, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##, LEFT + pw);
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                fmt(t)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            y0 + H - 8.0,
            escape(&self.x_label)
        );
        let _ = write!(
            out,
            r#"<text x="14" y="{:.1}" font-size="12" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
            y0 + TOP + ph / 2.0,
            y0 + TOP + ph / 2.0,
            escape(&self.y_label)
        );
        if self.diagonal {
            let _ = write!(
                out,
                r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 3"/>"##,
                sx(x_lo.max(y_lo)),
                sy(x_lo.max(y_lo)),
                sx(x_hi.min(y_hi)),
                sy(x_hi.min(y_hi))
            );
        }
        for (x, label) in &self.markers {
            if *x < x_lo || *x > x_hi {
                continue;
            }
            let px = sx(*x);
            let _ = write!(
                out,
                r##"<line x1="{px:.1}" y1="{:.1}" x2="{px:.1}" y2="{:.1}" stroke="#b8860b" stroke-dasharray="5 3"><title>{}</title></line>"##,
                y0 + TOP,
                y0 + TOP + ph,
                escape(label)
            );
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="#b8860b" transform="rotate(-90 {:.1} {:.1})">{}</text>"##,
                px - 3.0,
                y0 + TOP + ph - 4.0,
                px - 3.0,
                y0 + TOP + ph - 4.0,
                escape(label)
            );
        }
        for (i, s) in self.series.iter().enumerate() {
            // One colour per name (its first word) across all panels.
            let key = s.name.split_whitespace().next().unwrap_or("").to_string();
            let idx = colours.iter().position(|c| *c == key).unwrap_or_else(|| {
                colours.push(key);
                colours.len() - 1
            });
            let colour = PALETTE[idx % PALETTE.len()];
            let pts: Vec<(f64, f64)> =
                s.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).map(|&(x, y)| (sx(x), sy(y))).collect();
            if s.dots || pts.len() == 1 {
                for (x, y) in &pts {
                    let _ = write!(out, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{colour}"/>"#);
                }
            }
            if pts.len() > 1 {
                let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let width = if s.dots { 1.0 } else { 1.6 };
                let _ = write!(
                    out,
                    r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="{width}"/>"#,
                    path.join(" ")
                );
            }
            let ly = y0 + TOP + 14.0 + 18.0 * i as f64;
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="14" height="4" fill="{colour}"/>"#,
                W - RIGHT + 12.0,
                ly - 6.0
            );
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{ly:.1}" font-size="12">{}</text>"#,
                W - RIGHT + 32.0,
                escape(&s.name)
            );
        }
    }
}

fn fmt(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1e5) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// The panels stacked into one SVG document.
pub fn document(panels: &[Panel]) -> String {
    let height = H * panels.len() as f64;
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#
    );
    let mut colours = Vec::new();
    for (i, p) in panels.iter().enumerate() {
        p.draw(&mut out, H * i as f64, &mut colours);
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t: Vec<f64> = ticks(0.0, 1.0).iter().map(|x| (x * 1e9).round() / 1e9).collect();
        assert_eq!(t, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        let t = ticks(3.0, 1234.0);
        assert!(t.first().is_some_and(|&a| a >= 3.0) && t.len() >= 3 && t.len() <= 7, "{t:?}");
    }

    #[test]
    fn document_has_every_series_and_marker() {
        let p = Panel {
            title: "loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: vec![Series { name: "a<b".into(), points: vec![(0.0, 1.0), (10.0, 0.5)], dots: false }],
            markers: vec![(5.0, "swap x".into())],
            diagonal: false,
            x_range: None,
            y_range: None,
        };
        let svg = document(&[p]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a&lt;b") && svg.contains("swap x") && svg.contains("<polyline"));
    }
}
