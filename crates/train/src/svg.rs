//! Plots as SVG: a scatter plot (latent means by digit) and line plots (training curves),
//! with axes, ticks, labels and a legend.

use std::fmt::Write as _;

/// Matplotlib's "tab10" colours, one per series.
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

/// Width and height of every plot.
pub const SIZE: (f64, f64) = (720.0, 540.0);
const MARGIN: (f64, f64, f64, f64) = (70.0, 130.0, 40.0, 55.0); // left, right, top, bottom

/// A named set of points.
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

/// A tick step of 1, 2 or 5 times a power of ten giving about `target` ticks over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    }
}

struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn new(series: &[Series]) -> Self {
        let pts = series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite());
        let (mut x, mut y) = ((f64::INFINITY, f64::NEG_INFINITY), (f64::INFINITY, f64::NEG_INFINITY));
        for &(px, py) in pts {
            x = (x.0.min(px), x.1.max(px));
            y = (y.0.min(py), y.1.max(py));
        }
        let pad = |r: (f64, f64)| {
            if !r.0.is_finite() {
                (0.0, 1.0)
            } else if r.1 - r.0 < 1e-12 {
                (r.0 - 1.0, r.1 + 1.0)
            } else {
                let m = 0.04 * (r.1 - r.0);
                (r.0 - m, r.1 + m)
            }
        };
        Frame { x: pad(x), y: pad(y) }
    }
    fn px(&self, x: f64) -> f64 {
        MARGIN.0 + (x - self.x.0) / (self.x.1 - self.x.0) * (SIZE.0 - MARGIN.0 - MARGIN.1)
    }
    fn py(&self, y: f64) -> f64 {
        SIZE.1 - MARGIN.3 - (y - self.y.0) / (self.y.1 - self.y.0) * (SIZE.1 - MARGIN.2 - MARGIN.3)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The frame, ticks, labels, title and legend around a plot body.
fn chrome(svg: &mut String, f: &Frame, title: &str, xlabel: &str, ylabel: &str, series: &[Series]) {
    let (w, h) = SIZE;
    let (l, r, t, b) = MARGIN;
    let _ = writeln!(
        svg,
        r#"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        w - l - r,
        h - t - b
    );
    for (axis, (lo, hi)) in [(0, f.x), (1, f.y)] {
        let step = nice_step(hi - lo, 6.0);
        let mut v = (lo / step).ceil() * step;
        while v <= hi {
            let label = format!("{}", (v / step).round() * step);
            if axis == 0 {
                let x = f.px(v);
                let _ = writeln!(
                    svg,
                    r#"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" text-anchor="middle" font-size="12">{label}</text>"#,
                    h - b,
                    h - b + 5.0,
                    h - b + 19.0
                );
            } else {
                let y = f.py(v);
                let _ = writeln!(
                    svg,
                    r#"<line x1="{}" y1="{y:.1}" x2="{l}" y2="{y:.1}" stroke="black"/><text x="{}" y="{:.1}" text-anchor="end" font-size="12">{label}</text>"#,
                    l - 5.0,
                    l - 8.0,
                    y + 4.0
                );
            }
            v += step;
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="24" text-anchor="middle" font-size="16">{}</text>"#,
        l + (w - l - r) / 2.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
        l + (w - l - r) / 2.0,
        h - 12.0,
        escape(xlabel)
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" font-size="13" transform="rotate(-90 18 {:.1})">{}</text>"#,
        t + (h - t - b) / 2.0,
        t + (h - t - b) / 2.0,
        escape(ylabel)
    );
    let _ = writeln!(svg, r#"<g class="legend">"#);
    for (i, s) in series.iter().enumerate() {
        let y = t + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{}" y="{:.1}" font-size="13">{}</text>"#,
            w - r + 15.0,
            y - 10.0,
            PALETTE[i % PALETTE.len()],
            w - r + 33.0,
            y,
            escape(&s.name)
        );
    }
    let _ = writeln!(svg, "</g>");
}

fn open() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        SIZE.0, SIZE.1, SIZE.0, SIZE.1
    )
}

/// A scatter plot, one colour per series.
pub fn scatter(title: &str, xlabel: &str, ylabel: &str, series: &[Series]) -> String {
    let f = Frame::new(series);
    let mut svg = open();
    for (i, s) in series.iter().enumerate() {
        let _ = writeln!(svg, r#"<g fill="{}" fill-opacity="0.6">"#, PALETTE[i % PALETTE.len()]);
        for &(x, y) in s.points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
            let _ = writeln!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="1.6"/>"#, f.px(x), f.py(y));
        }
        let _ = writeln!(svg, "</g>");
    }
    chrome(&mut svg, &f, title, xlabel, ylabel, series);
    svg.push_str("</svg>\n");
    svg
}

/// A line plot with markers, one colour per series.
pub fn lines(title: &str, xlabel: &str, ylabel: &str, series: &[Series]) -> String {
    let f = Frame::new(series);
    let mut svg = open();
    for (i, s) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", f.px(x), f.py(y)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        for p in &pts {
            let (x, y) = p.split_once(',').expect("x,y");
            let _ = writeln!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{c}"/>"#);
        }
    }
    chrome(&mut svg, &f, title, xlabel, ylabel, series);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_numbers() {
        for (span, target, want) in [
            (10.0, 5.0, 2.0),
            (0.7, 6.0, 0.1),
            (300.0, 6.0, 50.0),
            (450.0, 6.0, 100.0),
        ] {
            let got = nice_step(span, target);
            assert!((got - want).abs() < 1e-12 * want, "{span}/{target}: {got}");
        }
    }
}
