//! The benchmark report: one markdown table of every workload against every
//! implementation, with ratios against both lock baselines, and the goal checks.
//!
//! Reads what `cargo bench` left in `target/criterion/<group>/<id>[/<param>]/new/
//! estimates.json` (criterion's median time per iteration), measures the memory of
//! an empty session itself, and prints the machine, compiler and commit the numbers
//! come from. Ratios are baseline time / implementation time, both from the same
//! run: above 1 means faster than that baseline.
//!
//! ```text
//! cargo bench && cargo run --release --example bench_report [-- CRITERION_DIR]
//! ```

#[path = "../benches/peers/mod.rs"]
mod peers;

use exactly_once::baseline::Baseline;
use exactly_once::{ArcSwapSessionState, SessionState};
use peers::floor::BareAtomicsFloor;
use peers::parking_lot_seed::ParkingLotSeed;
use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Implementations in column order: (criterion id, column title).
const COLUMNS: [(&str, &str); 5] = [
    ("counted", "lock-free, counted slot"),
    ("arcswap", "lock-free, arc-swap slot"),
    ("std", "std Mutex+Condvar"),
    ("parking_lot", "parking_lot Mutex+Condvar"),
    ("floor", "bare-atomics floor (unsound)"),
];
const STD: usize = 2;
const PARKING_LOT: usize = 3;

/// Table rows from criterion: (workload, criterion group, parameters).
const TIMED: [(&str, &str, &[&str]); 10] = [
    ("1 cycle (triage, publish, read back)", "cycle", &[""]),
    (
        "1 cycle through the original's three calls",
        "seed_cycle",
        &[""],
    ),
    ("2 resend of a ready response", "resend_ready", &[""]),
    ("2 resend while processing", "resend_processing", &[""]),
    (
        "3 publish, K parked threads",
        "publish",
        &["0", "16", "256", "1024"],
    ),
    ("4 hand-off round trip", "handoff", &[""]),
    (
        "4 hand-off round trip, no core to spare",
        "handoff_busy",
        &[""],
    ),
    ("5 wake W parked waiters", "wake", &["1", "4", "16"]),
    (
        "5 wake W parked waiters, no core to spare",
        "wake_busy",
        &["1"],
    ),
    (
        "6 cycle per thread, T threads",
        "throughput",
        &["1", "2", "4"],
    ),
];

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(default_criterion_dir);
    let results = Results { dir };
    let memory = memory();

    print_header(&results);
    println!("{}", table(&results, &memory));
    println!("{}", goals(&results, &memory));
}

// ----- criterion's output -----

struct Results {
    dir: PathBuf,
}

impl Results {
    /// Median time per iteration in ns, if that benchmark has run.
    fn ns(&self, group: &str, id: &str, param: &str) -> Option<f64> {
        let mut path = self.dir.join(group).join(id);
        if !param.is_empty() {
            path.push(param);
        }
        let json = std::fs::read_to_string(path.join("new/estimates.json")).ok()?;
        point_estimate(&json, "median")
    }
}

/// Triage latency under reader churn (`benches/triage_churn.rs`): p50, p99 and max in
/// ns with `readers` reader threads, if that bench has run.
fn churn(results: &Results, id: &str, readers: &str) -> Option<[f64; 3]> {
    let path = results.dir.join("triage_churn").join(id).join(readers);
    let json = std::fs::read_to_string(path.join("latency.json")).ok()?;
    let field = |name: &str| {
        let rest = &json[json.find(&format!("\"{name}\":"))? + name.len() + 3..];
        rest[..rest.find([',', '}'])?].trim().parse().ok()
    };
    Some([field("p50")?, field("p99")?, field("max")?])
}

const CHURN_READERS: [&str; 4] = ["0", "8", "64", "512"];

fn churn_rows(results: &Results) -> String {
    derived_rows(
        "8 triage latency p50 / p99 / max, R threads reading",
        "R",
        &CHURN_READERS,
        |id, readers| churn(results, id, readers),
        |[p50, p99, max]| {
            format!(
                "{} / {} / {}",
                format_ns(p50),
                format_ns(p99),
                format_ns(max)
            )
        },
    )
}

/// Rows of values that are not one criterion median: one row per parameter, one cell
/// per column, skipped where no column has a value.
fn derived_rows<V: Copy>(
    workload: &str,
    name: &str,
    params: &[&str],
    value: impl Fn(&str, &str) -> Option<V>,
    show: impl Fn(V) -> String,
) -> String {
    let mut out = String::new();
    for &param in params {
        let values = COLUMNS.map(|(id, _)| value(id, param));
        if values.iter().all(Option::is_none) {
            continue;
        }
        let _ = write!(out, "\n| {workload} | {name} = {param} |");
        for value in values {
            let text = value.map_or("—".to_owned(), &show);
            let _ = write!(out, " {text} |");
        }
    }
    out
}

fn default_criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("criterion")
}

/// `estimates.json` is `{"mean":{"confidence_interval":{..},"point_estimate":X,..},
/// "median":{..},..}`: the number after the first `"point_estimate":` that follows
/// `"<statistic>":`.
fn point_estimate(json: &str, statistic: &str) -> Option<f64> {
    let rest = &json[json.find(&format!("\"{statistic}\":"))?..];
    let rest = &rest[rest.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

// ----- memory -----

/// Counts the bytes allocated, to see what building an empty session allocates.
struct CountingAllocator;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; the counter has no effect on it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Bytes per empty session, `size_of` + heap, in column order.
struct Memory {
    size: [usize; 5],
    heap: [usize; 5],
}

fn memory() -> Memory {
    fn measure<I: Default>() -> (usize, usize) {
        let before = ALLOCATED.load(Ordering::Relaxed);
        let session = std::hint::black_box(I::default());
        let heap = ALLOCATED.load(Ordering::Relaxed) - before;
        drop(session);
        (std::mem::size_of::<I>(), heap)
    }
    let all = [
        measure::<SessionState<u64>>(),
        measure::<ArcSwapSessionState<u64>>(),
        measure::<Baseline<u64>>(),
        measure::<ParkingLotSeed<u64>>(),
        measure::<BareAtomicsFloor>(),
    ];
    Memory {
        size: all.map(|(size, _)| size),
        heap: all.map(|(_, heap)| heap),
    }
}

impl Memory {
    fn total(&self, column: usize) -> f64 {
        (self.size[column] + self.heap[column]) as f64
    }
}

// ----- the report -----

fn print_header(results: &Results) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split_once(':')?.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    println!("## Performance\n");
    println!("- machine: {cpus} CPUs (nproc), {model}; load average at report time {load}");
    println!("- compiler: {}", run(&rustc, &["--version"]));
    println!("- commit: {}", commit());
    println!(
        "- numbers: criterion medians from `{}` (`cargo bench`)",
        results.dir.display()
    );
    println!(
        "- cells: time, then `×std / ×pl` = std's time / this time and parking_lot's time / \
         this time, measured in the same run (above 1: faster than that baseline)\n"
    );
}

fn run(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn commit() -> String {
    let hash = run("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !run("git", &["status", "--porcelain"]).is_empty();
    if dirty {
        format!("{hash}-dirty")
    } else {
        hash
    }
}

fn table(results: &Results, memory: &Memory) -> String {
    let mut out = String::from("| workload | parameter |");
    for (_, title) in COLUMNS {
        let _ = write!(out, " {title} |");
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(COLUMNS.len()));
    for (workload, group, params) in TIMED {
        for &param in params {
            let times = COLUMNS.map(|(id, _)| results.ns(group, id, param));
            if times.iter().all(Option::is_none) {
                continue;
            }
            let _ = write!(out, "\n| {workload} | {} |", parameter(group, param));
            for time in times {
                let _ = write!(out, " {} |", cell(time, times, format_ns));
            }
        }
        if group == "throughput" {
            out.push_str(&scaling_rows(results));
        }
    }
    out.push_str(&churn_rows(results));
    let bytes = std::array::from_fn::<_, 5, _>(|c| Some(memory.total(c)));
    out.push_str("\n| 7 memory per empty session | size_of + heap |");
    for (c, total) in bytes.iter().enumerate() {
        let text = cell(*total, bytes, |_| {
            format!("{} + {} B", memory.size[c], memory.heap[c])
        });
        let _ = write!(out, " {text} |");
    }
    out
}

fn parameter(group: &str, param: &str) -> String {
    match group {
        "publish" => format!("K = {param}"),
        "wake" | "wake_busy" => format!("W = {param}"),
        "throughput" => format!("T = {param}"),
        _ => String::new(),
    }
}

/// `time · ×std / ×pl`, or a dash where that benchmark has not run.
fn cell(value: Option<f64>, row: [Option<f64>; 5], show: impl Fn(f64) -> String) -> String {
    let Some(value) = value else {
        return "—".to_owned();
    };
    let ratio = |base: Option<f64>| base.map_or("—".to_owned(), |b| format!("{:.2}×", b / value));
    format!(
        "{} · {} / {}",
        show(value),
        ratio(row[STD]),
        ratio(row[PARKING_LOT])
    )
}

fn format_ns(ns: f64) -> String {
    match ns {
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e4 => format!("{:.1} µs", ns / 1e3),
        ns if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        ns if ns >= 100.0 => format!("{ns:.0} ns"),
        ns => format!("{ns:.1} ns"),
    }
}

/// Throughput with T threads over throughput with one: `T * time(1) / time(T)`.
fn scaling(results: &Results, id: &str, threads: &str) -> Option<f64> {
    let one = results.ns("throughput", id, "1")?;
    let t: f64 = threads.parse().ok()?;
    Some(t * one / results.ns("throughput", id, threads)?)
}

fn scaling_rows(results: &Results) -> String {
    derived_rows(
        "6 throughput scaling (T × time₁ / time_T)",
        "T",
        &["2", "4"],
        |id, threads| scaling(results, id, threads),
        |v| format!("{v:.2}×"),
    )
}

// ----- goals -----

struct Goals {
    out: String,
}

impl Goals {
    /// One goal line: PASS or MISS with the measured value (`digits` decimals), or
    /// "n/a" where a benchmark it needs has not run.
    fn check(
        &mut self,
        name: &str,
        measured: Option<f64>,
        pass: impl Fn(f64) -> bool,
        goal: &str,
        digits: usize,
    ) {
        let (verdict, value) = match measured {
            Some(v) if pass(v) => ("PASS", format!("{v:.digits$}")),
            Some(v) => ("MISS", format!("{v:.digits$}")),
            None => ("n/a", "not measured".to_owned()),
        };
        let _ = write!(self.out, "\n- {verdict} {name}: {value} (goal {goal})");
    }
}

fn goals(results: &Results, memory: &Memory) -> String {
    let mut g = Goals {
        out: String::from("\n### Goal checks (lock-free, counted slot unless named)\n"),
    };
    let ns = |group: &str, id: &str, param: &str| results.ns(group, id, param);
    let ratio = |base: Option<f64>, this: Option<f64>| Some(base? / this?);
    let cycle = ns("cycle", "counted", "");
    g.check(
        "cycle: parking_lot time / counted time",
        ratio(ns("cycle", "parking_lot", ""), cycle),
        |r| r >= 1.2,
        "≥ 1.20",
        2,
    );
    g.check(
        "cycle: std time / counted time",
        ratio(ns("cycle", "std", ""), cycle),
        |r| r >= 4.0,
        "≥ 4.00",
        2,
    );
    g.check(
        "cycle: counted time / floor time",
        ratio(cycle, ns("cycle", "floor", "")),
        |r| r <= 1.3,
        "≤ 1.30",
        2,
    );
    g.check(
        "cycle through the original's calls: parking_lot time / counted time",
        ratio(
            ns("seed_cycle", "parking_lot", ""),
            ns("seed_cycle", "counted", ""),
        ),
        |r| r >= 1.2,
        "≥ 1.20",
        2,
    );
    for (id, name) in [("counted", "counted slot"), ("arcswap", "arc-swap slot")] {
        g.check(
            &format!("publish, {name}: time with K = 1024 / time with K = 0"),
            ratio(ns("publish", id, "1024"), ns("publish", id, "0")),
            |r| r <= 1.5,
            "≤ 1.50",
            2,
        );
    }
    for (group, name) in [
        ("handoff", "hand-off"),
        ("handoff_busy", "hand-off, no core to spare"),
    ] {
        g.check(
            &format!("{name}: parking_lot time / counted time"),
            ratio(ns(group, "parking_lot", ""), ns(group, "counted", "")),
            |r| r >= 1.0,
            "≥ 1.00",
            2,
        );
    }
    g.check(
        "wake W = 1, no core to spare: parking_lot time / counted time",
        ratio(
            ns("wake_busy", "parking_lot", "1"),
            ns("wake_busy", "counted", "1"),
        ),
        |r| r >= 0.95,
        "≥ 0.95",
        2,
    );
    let p99 = |readers: &str| churn(results, "counted", readers).map(|[_, p99, _]| p99);
    g.check(
        "triage under churn: p99 with R = 64 / p99 with R = 0",
        ratio(p99("64"), p99("0")),
        |r| r <= 10.0,
        "≤ 10",
        1,
    );
    for w in ["1", "4", "16"] {
        g.check(
            &format!("wake W = {w}: parking_lot time / counted time"),
            ratio(ns("wake", "parking_lot", w), ns("wake", "counted", w)),
            |r| r >= 0.95,
            "≥ 0.95",
            2,
        );
    }
    g.check(
        "scaling: throughput T = 2 / throughput T = 1",
        scaling(results, "counted", "2"),
        |r| r >= 1.8,
        "≥ 1.80",
        2,
    );
    g.check(
        "size_of SessionState<u64>, bytes",
        Some(memory.size[0] as f64),
        |b| b <= 32.0,
        "≤ 32",
        0,
    );
    g.out
}
