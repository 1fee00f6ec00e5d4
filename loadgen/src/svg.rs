//! SVG plots without a plotting dependency: the latency spectrum (latency by percentile on a log
//! 1/(1-p) axis, like HdrHistogram's plotter) and the per-second rate and p99 over time.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::report::SecondRow;

const W: f64 = 800.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
/// Room right of the plot for half of the last x label (the spectrum's "99.999%", centred on the edge).
const RIGHT: f64 = 40.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
/// The spectrum's x axis runs to 1/(1-p) = 10^5, i.e. p99.999.
const SPECTRUM_DECADES: u32 = 5;
/// At most this many labelled seconds on the timeseries' x axis (about one per 70 px).
const MAX_X_TICKS: u64 = 10;
/// Points per plotted curve (keeps files small whatever the histogram holds).
const POINTS: usize = 400;

fn header(s: &mut String, title: &str) {
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">{}</text>",
        W / 2.0,
        esc(title)
    );
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum at or above `v`.
fn nice(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn y_axis(s: &mut String, x0: f64, y0: f64, h: f64, max: f64, label: &str) {
    for i in 0..=5 {
        let v = max * f64::from(i) / 5.0;
        let y = y0 + h - h * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            "<line x1=\"{x0}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>",
            W - RIGHT
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 - 5.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    let _ = writeln!(
        s,
        "<text transform=\"translate(14,{:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        y0 + h / 2.0,
        esc(label)
    );
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Latency by percentile; `curves` are (name, colour, histogram in µs).
pub fn spectrum(title: &str, curves: &[(&str, &str, &Histogram<u64>)]) -> String {
    let mut s = String::new();
    header(&mut s, title);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let top_q = 1.0 - 10f64.powi(-(SPECTRUM_DECADES as i32));
    let max_ms = curves
        .iter()
        .map(|(_, _, h)| h.value_at_quantile(top_q) as f64 / 1000.0)
        .fold(0.0, f64::max);
    let ymax = nice(max_ms);
    y_axis(&mut s, LEFT, TOP, ph, ymax, "latency (ms)");
    for d in 0..=SPECTRUM_DECADES {
        let x = LEFT + pw * f64::from(d) / f64::from(SPECTRUM_DECADES);
        let label = match d {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            _ => format!("99.{}%", "9".repeat(d as usize - 2)).replace("99.%", "99%"),
        };
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{}\" stroke=\"#ddd\"/>",
            TOP + ph
        );
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            TOP + ph + 16.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile (log 1/(1-p) scale)</text>",
        LEFT + pw / 2.0,
        H - 10.0
    );
    for (i, (name, colour, h)) in curves.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let mut pts = String::new();
        for k in 0..=POINTS {
            let x = f64::from(SPECTRUM_DECADES) * k as f64 / POINTS as f64;
            let q = 1.0 - 10f64.powf(-x);
            let v = h.value_at_quantile(q) as f64 / 1000.0;
            let px = LEFT + pw * x / f64::from(SPECTRUM_DECADES);
            let py = TOP + ph - ph * (v / ymax).min(1.0);
            let _ = write!(pts, "{px:.1},{py:.1} ");
        }
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{pts}\"/>"
        );
        let ly = TOP + 16.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{ly}\" fill=\"{colour}\">{}</text>",
            LEFT + 10.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The step between labelled seconds: 1, 2, 5, 10, 20, 50, ... so that at most MAX_X_TICKS + 1 fit.
fn tick_step(last: u64) -> u64 {
    let mut p = 1u64;
    loop {
        for m in [1, 2, 5] {
            let Some(step) = p.checked_mul(m) else {
                return u64::MAX;
            };
            if last / step <= MAX_X_TICKS {
                return step;
            }
        }
        p = p.saturating_mul(10);
    }
}

/// One plot of the timeseries: top y, axis maximum, label, colour, value of a row.
type Panel<'a> = (f64, f64, &'a str, &'a str, &'a dyn Fn(&SecondRow) -> f64);

/// Requests per second (top) and p99 latency (bottom) over the run.
pub fn timeseries(title: &str, rows: &[SecondRow]) -> String {
    let mut s = String::new();
    header(&mut s, title);
    let pw = W - LEFT - RIGHT;
    let gap = 30.0;
    let ph = (H - TOP - BOTTOM - gap) / 2.0;
    let n = rows.len().max(2) as f64 - 1.0;
    let rmax = nice(rows.iter().map(|r| r.requests as f64).fold(0.0, f64::max));
    let pmax = nice(rows.iter().map(|r| r.p99_ms).fold(0.0, f64::max));
    let panels: [Panel; 2] = [
        (TOP, rmax, "req/s", "#1f77b4", &|r: &SecondRow| {
            r.requests as f64
        }),
        (
            TOP + ph + gap,
            pmax,
            "p99 (ms)",
            "#d62728",
            &|r: &SecondRow| r.p99_ms,
        ),
    ];
    // Vertical grid lines through both panels, labelled in seconds under the lower one.
    let last = rows.len().saturating_sub(1) as u64;
    let bottom = TOP + 2.0 * ph + gap;
    for t in (0..=last.max(1)).step_by(tick_step(last.max(1)) as usize) {
        let x = LEFT + pw * t as f64 / n;
        for y0 in [TOP, TOP + ph + gap] {
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y0:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
                y0 + ph
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t}</text>",
            bottom + 16.0
        );
    }
    for (y0, max, label, colour, f) in panels {
        y_axis(&mut s, LEFT, y0, ph, max, label);
        let mut pts = String::new();
        for (i, r) in rows.iter().enumerate() {
            let px = LEFT + pw * i as f64 / n;
            let py = y0 + ph - ph * (f(r) / max).min(1.0);
            let _ = write!(pts, "{px:.1},{py:.1} ");
        }
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{pts}\"/>"
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">second of the run</text>",
        LEFT + pw / 2.0,
        H - 10.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_steps_keep_the_labels_apart() {
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_step(10), 1);
        assert_eq!(tick_step(11), 2);
        assert_eq!(tick_step(30), 5);
        assert_eq!(tick_step(100), 10);
        assert_eq!(tick_step(3600), 500);
        assert!(u64::MAX / tick_step(u64::MAX) <= MAX_X_TICKS);
    }

    #[test]
    fn timeseries_labels_its_seconds() {
        let rows: Vec<SecondRow> = (0..30)
            .map(|i| SecondRow {
                second: i,
                requests: 100,
                errors: 0,
                p50_ms: 1.0,
                p99_ms: 2.0,
            })
            .collect();
        let svg = timeseries("t", &rows);
        for t in [0, 5, 10, 15, 20, 25] {
            assert!(svg.contains(&format!("\">{t}</text>")), "tick {t}: {svg}");
        }
        assert!(
            !svg.contains("\">30</text>"),
            "no tick past the last second"
        );
    }
}
