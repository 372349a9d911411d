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

/// CPU time (user + system) this process has used so far, in ms: less
/// sensitive than wall time to other processes competing for the cores.
pub fn cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// Runs `load` then `save` `repeat` times (each iteration: load the input from
/// disk, save the result to disk, drop it) and prints one JSON line:
/// per-iteration wall times, the best (minimum) wall load+save, and the
/// per-iteration CPU time of load+save with its minimum.
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
    let mut cpu = Vec::new();
    for _ in 0..repeat.max(1) {
        let c0 = cpu_ms();
        let t0 = Instant::now();
        let model = load(input)?;
        let t1 = Instant::now();
        save(&model, output)?;
        let t2 = Instant::now();
        drop(model);
        cpu.push(cpu_ms() - c0);
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
         \"load_ms\":[{}],\"save_ms\":[{}],\"best_cpu_ms\":{:.1},\"cpu_ms\":[{}],\
         \"rss_start_kib\":{rss_start},\"peak_rss_kib\":{peak}}}",
        runs.len(),
        best.0,
        best.1,
        best.0 + best.1,
        list(|r| r.0),
        list(|r| r.1),
        cpu.iter().copied().fold(f64::INFINITY, f64::min),
        cpu.iter().map(|c| format!("{c:.1}")).collect::<Vec<_>>().join(","),
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
