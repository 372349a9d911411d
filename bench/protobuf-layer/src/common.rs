//! Timing and memory figures shared by every candidate's binary.

use std::time::{Duration, Instant};

/// Peak and current resident set size of this process, in KiB, from
/// /proc/self/status (VmHWM, VmRSS).
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `load` then `save` `repeat` times (each iteration: load the input from
/// disk, save the result to disk, drop it) and prints one JSON line:
/// per-iteration times and the best (minimum) load+save.
pub fn bench<M>(
    candidate: &str,
    input: &str,
    output: &str,
    repeat: usize,
    load: impl Fn(&str) -> Result<M, String>,
    save: impl Fn(&M, &str) -> Result<(), String>,
) -> Result<(), String> {
    let (_, rss_start) = rss_kib();
    let mut runs = Vec::new();
    for _ in 0..repeat.max(1) {
        let t0 = Instant::now();
        let model = load(input)?;
        let t1 = Instant::now();
        save(&model, output)?;
        let t2 = Instant::now();
        drop(model);
        runs.push((ms(t1 - t0), ms(t2 - t1)));
    }
    let (peak, _) = rss_kib();
    let best = runs
        .iter()
        .copied()
        .min_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)))
        .unwrap();
    let list = |f: fn(&(f64, f64)) -> f64| {
        runs.iter().map(|r| format!("{:.1}", f(r))).collect::<Vec<_>>().join(",")
    };
    println!(
        "{{\"candidate\":\"{candidate}\",\"input\":\"{input}\",\"repeat\":{},\
         \"best_load_ms\":{:.1},\"best_save_ms\":{:.1},\"best_total_ms\":{:.1},\
         \"load_ms\":[{}],\"save_ms\":[{}],\"rss_start_kib\":{rss_start},\"peak_rss_kib\":{peak}}}",
        runs.len(),
        best.0,
        best.1,
        best.0 + best.1,
        list(|r| r.0),
        list(|r| r.1),
    );
    Ok(())
}

/// `PROG IN OUT [--repeat N]`.
pub fn args(usage: &str) -> (Vec<String>, usize) {
    let mut pos = Vec::new();
    let mut repeat = 1;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--repeat" {
            repeat = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{usage}");
                std::process::exit(2)
            });
        } else {
            pos.push(a);
        }
    }
    (pos, repeat)
}
