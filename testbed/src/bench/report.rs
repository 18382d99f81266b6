//! Trials, their medians, and the three outputs: a text table, JSON and an SVG chart.

use serde_json::{json, Value};

use super::harness::Mode;

/// One measured run of one mode.
#[derive(Clone, Debug)]
pub struct Trial {
    pub mode: Mode,
    /// Which series: "fixed" (the rate every mode sustains), "saturation", "rfc2544-<size>".
    pub series: String,
    pub round: usize,
    pub frame_len: usize,
    pub rate: u64,
    pub seconds: f64,
    pub offered: u64,
    pub forwarded: u64,
    pub delivered: u64,
    pub cpu_ns: u64,
    /// tern's own egress counter over the same interval (tern modes).
    pub tern_tx: Option<u64>,
}

impl Trial {
    pub fn ns_per_packet(&self) -> f64 {
        self.cpu_ns as f64 / self.forwarded.max(1) as f64
    }
    pub fn mpps(&self) -> f64 {
        self.forwarded as f64 / self.seconds / 1e6
    }
    pub fn loss(&self) -> f64 {
        1.0 - self.delivered as f64 / self.offered.max(1) as f64
    }
    fn json(&self) -> Value {
        json!({
            "mode": self.mode.name(), "series": self.series, "round": self.round,
            "frame_len": self.frame_len, "rate": self.rate, "seconds": self.seconds,
            "offered": self.offered, "forwarded": self.forwarded, "delivered": self.delivered,
            "dut_cpu_ns": self.cpu_ns, "ns_per_packet": self.ns_per_packet(),
            "tern_tx": self.tern_tx,
        })
    }
}

/// Median, min and max.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(mut v: Vec<f64>) -> Spread {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return Spread {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Spread {
        median,
        min: v[0],
        max: v[n - 1],
    }
}

/// The summary of one (series, mode).
pub struct Row {
    pub series: String,
    pub mode: Mode,
    pub offered_mpps: Spread,
    pub mpps: Spread,
    pub loss: Spread,
    pub ns: Spread,
}

pub fn summarize(trials: &[Trial]) -> Vec<Row> {
    let mut keys: Vec<(String, Mode)> = Vec::new();
    for t in trials {
        if !keys.iter().any(|(s, m)| *s == t.series && *m == t.mode) {
            keys.push((t.series.clone(), t.mode));
        }
    }
    keys.into_iter()
        .map(|(series, mode)| {
            let of: Vec<&Trial> = trials
                .iter()
                .filter(|t| t.series == series && t.mode == mode)
                .collect();
            let col = |f: &dyn Fn(&Trial) -> f64| spread(of.iter().map(|t| f(t)).collect());
            Row {
                offered_mpps: col(&|t| t.offered as f64 / t.seconds / 1e6),
                mpps: col(&|t| t.mpps()),
                loss: col(&|t| t.loss()),
                ns: col(&|t| t.ns_per_packet()),
                series,
                mode,
            }
        })
        .collect()
}

fn find<'a>(rows: &'a [Row], series: &str, mode: Mode) -> Option<&'a Row> {
    rows.iter().find(|r| r.series == series && r.mode == mode)
}

/// The ratios the issue sets targets for, per series: tern-afxdp CPU per packet over the
/// floor's, and tern-afxdp throughput per CPU over the kernel's (= kernel ns / tern ns).
pub fn ratios(rows: &[Row]) -> Vec<(String, Option<f64>, Option<f64>)> {
    let mut series: Vec<String> = rows.iter().map(|r| r.series.clone()).collect();
    series.dedup();
    series
        .into_iter()
        .map(|s| {
            let tern = find(rows, &s, Mode::TernAfxdp).map(|r| r.ns.median);
            let floor = find(rows, &s, Mode::Floor).map(|r| r.ns.median);
            let kernel = find(rows, &s, Mode::Kernel).map(|r| r.ns.median);
            let vs_floor = tern.zip(floor).map(|(t, f)| t / f);
            let vs_kernel = tern.zip(kernel).map(|(t, k)| k / t);
            (s, vs_floor, vs_kernel)
        })
        .collect()
}

/// "median (min–max)", scaled, with `prec` decimals.
fn spread_text(s: &Spread, scale: f64, prec: usize) -> String {
    format!(
        "{:.p$} ({:.p$}–{:.p$})",
        s.median * scale,
        s.min * scale,
        s.max * scale,
        p = prec
    )
}

pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<14} {:<11} {:>9} {:>24} {:>22} {:>26}\n",
        "series", "mode", "offered", "forwarded Mpps", "loss %", "DUT CPU ns/packet"
    );
    for r in rows {
        out += &format!(
            "{:<14} {:<11} {:>9.3} {:>24} {:>22} {:>26}\n",
            r.series,
            r.mode.name(),
            r.offered_mpps.median,
            spread_text(&r.mpps, 1.0, 3),
            spread_text(&r.loss, 100.0, 2),
            spread_text(&r.ns, 1.0, 0)
        );
    }
    for (s, vs_floor, vs_kernel) in ratios(rows) {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or("-".into());
        out += &format!(
            "{s}: tern-afxdp CPU/packet = {}× floor; tern-afxdp throughput per CPU = {}× kernel\n",
            f(vs_floor),
            f(vs_kernel)
        );
    }
    out
}

/// The same as [`table`], as a Markdown table ready for BENCHMARKS.md, with the command.
pub fn markdown(rows: &[Row], command: &str) -> String {
    let mut out = format!(
        "`{command}`\n\n| series | mode | offered Mpps | forwarded Mpps | loss % | DUT CPU ns/packet |\n|---|---|---|---|---|---|\n"
    );
    for r in rows {
        out += &format!(
            "| {} | {} | {:.3} | {} | {} | {} |\n",
            r.series,
            r.mode.name(),
            r.offered_mpps.median,
            spread_text(&r.mpps, 1.0, 3),
            spread_text(&r.loss, 100.0, 2),
            spread_text(&r.ns, 1.0, 0)
        );
    }
    out += "\n";
    for (s, vs_floor, vs_kernel) in ratios(rows) {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.2}×")).unwrap_or("–".into());
        out += &format!(
            "- {s}: tern-afxdp CPU/packet = {} floor; throughput per CPU = {} kernel\n",
            f(vs_floor),
            f(vs_kernel)
        );
    }
    out
}

pub fn to_json(trials: &[Trial], rows: &[Row], setup: Value) -> Value {
    let sp = |s: &Spread| json!({"median": s.median, "min": s.min, "max": s.max});
    json!({
        "setup": setup,
        "summary": rows.iter().map(|r| json!({
            "series": r.series, "mode": r.mode.name(), "offered_mpps": sp(&r.offered_mpps),
            "forwarded_mpps": sp(&r.mpps), "loss": sp(&r.loss), "ns_per_packet": sp(&r.ns),
        })).collect::<Vec<_>>(),
        "ratios": ratios(rows).into_iter().map(|(s, f, k)| json!({
            "series": s, "tern_afxdp_cpu_vs_floor": f, "tern_afxdp_throughput_per_cpu_vs_kernel": k,
        })).collect::<Vec<_>>(),
        "trials": trials.iter().map(Trial::json).collect::<Vec<_>>(),
    })
}

/// A bar chart per series: DUT CPU ns/packet per mode (median bar, min–max whisker).
pub fn svg(rows: &[Row]) -> String {
    let mut series: Vec<String> = rows.iter().map(|r| r.series.clone()).collect();
    series.dedup();
    let (bar, gap, group_gap, left, top, height) = (34.0, 6.0, 40.0, 70.0, 40.0, 260.0);
    let max = rows
        .iter()
        .map(|r| r.ns.max)
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max)
        * 1.1;
    let colors = |m: Mode| match m {
        Mode::Kernel => "#888888",
        Mode::TernAfxdp => "#1f77b4",
        Mode::TernTap => "#9ecae1",
        Mode::Floor => "#2ca02c",
        Mode::DpdkL3fwd => "#ff7f0e",
    };
    let width =
        left + series.len() as f64 * (Mode::ALL.len() as f64 * (bar + gap) + group_gap) + 150.0;
    let y = |v: f64| top + height - v / max * height;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <text x=\"{left}\" y=\"20\" font-size=\"13\">DUT CPU ns per forwarded packet (median, min–max)</text>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{:.0}\" stroke=\"black\"/>\n",
        top + height + 40.0,
        top + height
    );
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        out += &format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{v:.0}</text>\n",
            left - 4.0,
            y(v) + 4.0
        );
    }
    let mut x = left + 10.0;
    for s in &series {
        let start = x;
        for m in Mode::ALL {
            if let Some(r) = find(rows, s, m) {
                out += &format!(
                    "<rect x=\"{x:.0}\" y=\"{:.1}\" width=\"{bar}\" height=\"{:.1}\" fill=\"{}\"/>\n\
                     <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n\
                     <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text>\n",
                    y(r.ns.median),
                    top + height - y(r.ns.median),
                    colors(m),
                    x + bar / 2.0,
                    y(r.ns.min),
                    x + bar / 2.0,
                    y(r.ns.max),
                    x + bar / 2.0,
                    y(r.ns.max) - 3.0,
                    r.ns.median
                );
            }
            x += bar + gap;
        }
        out += &format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{s}</text>\n",
            (start + x) / 2.0,
            top + height + 16.0
        );
        x += group_gap;
    }
    for (i, m) in Mode::ALL.iter().enumerate() {
        let ly = top + 10.0 + i as f64 * 16.0;
        out += &format!(
            "<rect x=\"{:.0}\" y=\"{ly:.0}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\">{}</text>\n",
            x + 10.0,
            colors(*m),
            x + 24.0,
            ly + 9.0,
            m.name()
        );
    }
    out + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        let s = spread(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(spread(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }
}
