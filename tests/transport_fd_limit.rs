#![cfg(feature = "transport")]
//! A server out of file descriptors backs off (counting each failed `accept` rather than
//! logging it), keeps serving the connections it has, and accepts again once
//! descriptors are free. A test binary of its own: it lowers the process's descriptor
//! limit with `prlimit`.

mod transport_support;

use exactly_once::transport::ServerConfig;
use std::net::TcpStream;
use std::process::Command;
use transport_support::*;

fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The soft limit on open descriptors now.
fn descriptor_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn set_descriptor_limit(soft: u64) -> bool {
    Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string()])
        .arg(format!("--nofile={soft}:"))
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    let server = server(ServerConfig::default());
    let mut other = bystander(&server);
    let Some(before) = descriptor_limit() else {
        eprintln!("no /proc/self/limits: skipped");
        return;
    };
    if !set_descriptor_limit(open_descriptors() + 40) {
        eprintln!("prlimit is not available: skipped");
        return;
    }
    let mut held: Vec<TcpStream> = Vec::new();
    while let Ok(stream) = TcpStream::connect(server.local_addr()) {
        held.push(stream);
        assert!(held.len() < 100, "the limit did not take");
    }
    // Every descriptor is taken: one more client socket leaves the server none.
    held.pop();
    let last = TcpStream::connect(server.local_addr());
    eventually("an accept fails", || server.counters().accept_errors > 0);
    other
        .call(b"still there?")
        .expect("connections already made carry on");
    drop((held, last));
    assert!(set_descriptor_limit(before));
    assert_still_serves(&server, &mut other);
}
