//! The dashboard's chart: requests (bars) and spend (line) per UTC day,
//! drawn here as an SVG from numbers only, so the page needs no script.

use std::fmt::Write;

/// One day of the chart.
pub struct Day {
    /// `MM-DD`.
    pub label: String,
    pub requests: u64,
    /// Spend in nano-dollars.
    pub spent_nanos: i64,
}

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 220.0;
const PAD: f64 = 30.0;

/// The chart of `days`, oldest first.
pub fn svg(days: &[Day]) -> String {
    let most_requests = days.iter().map(|d| d.requests).max().unwrap_or(0);
    let most_spent = days.iter().map(|d| d.spent_nanos).max().unwrap_or(0).max(0);
    let max_requests = most_requests.max(1) as f64;
    let max_spent = most_spent.max(1) as f64;
    let slot = (WIDTH - 2.0 * PAD) / days.len().max(1) as f64;
    let plot = HEIGHT - 2.0 * PAD;
    let mut out = format!(
        r##"<svg id="usage-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="Requests and spend per day" xmlns="http://www.w3.org/2000/svg">"##
    );
    let _ = write!(
        out,
        r##"<line x1="{PAD}" y1="{y}" x2="{x2}" y2="{y}" stroke="#dde3ea"/>"##,
        y = HEIGHT - PAD,
        x2 = WIDTH - PAD
    );
    let mut line = String::new();
    for (i, day) in days.iter().enumerate() {
        let x = PAD + slot * i as f64;
        let h = plot * day.requests as f64 / max_requests;
        let _ = write!(
            out,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#9cbcf7"><title>{}: {} requests, ${}</title></rect>"##,
            x + slot * 0.15,
            HEIGHT - PAD - h,
            slot * 0.7,
            h,
            day.label,
            day.requests,
            money::Money::from_nanos(day.spent_nanos)
        );
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            x + slot / 2.0,
            HEIGHT - PAD + 16.0,
            day.label
        );
        let y = HEIGHT - PAD - plot * day.spent_nanos.max(0) as f64 / max_spent;
        let _ = write!(line, "{:.1},{:.1} ", x + slot / 2.0, y);
    }
    let _ = write!(
        out,
        r##"<polyline points="{}" fill="none" stroke="#d9480f" stroke-width="2"/>"##,
        line.trim_end()
    );
    let _ = write!(
        out,
        r##"<text x="{PAD}" y="16">bars: requests (max {}) · line: spend (max ${})</text></svg>"##,
        most_requests,
        money::Money::from_nanos(most_spent)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_day_scaled_to_the_busiest() {
        let days = vec![
            Day {
                label: "11-25".into(),
                requests: 2,
                spent_nanos: 1_000,
            },
            Day {
                label: "11-26".into(),
                requests: 4,
                spent_nanos: 0,
            },
        ];
        let svg = svg(&days);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("11-26: 4 requests"));
        assert!(svg.contains(&format!("height=\"{:.1}\"", HEIGHT - 2.0 * PAD)));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
