//! What the benchmarks with a `main` of their own share: sizes from the
//! environment, and a record of workloads run several rounds, printed as a
//! median with its spread as they come, then as one JSON line each.

/// The number in environment variable `name`, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The workloads measured so far.
#[derive(Default)]
pub struct Results(Vec<(String, f64, f64, &'static str)>);

impl Results {
    /// Records a workload's rounds: prints the median, the spread (max - min,
    /// in % of the median) and every round, `width` wide for the name.
    pub fn record(&mut self, width: usize, name: String, mut values: Vec<f64>, unit: &'static str) {
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        let spread = (values[values.len() - 1] - values[0]) / median * 100.0;
        let each: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
        println!("{name:width$} {median:>12.1} {unit:10} spread {spread:5.1}%  ({})", each.join(", "));
        self.0.push((name, median, spread, unit));
    }

    /// Prints one JSON line per workload.
    pub fn print_json(&self) {
        for (name, median, spread, unit) in &self.0 {
            println!(
                "{{\"workload\":{name:?},\"median\":{median:.3},\"spread_percent\":{spread:.1},\"unit\":{unit:?}}}"
            );
        }
    }
}
