//! The `--name value` flags of the bench binaries that read their own arguments
//! (`handoff_rounds`, `http`, `grpc`); `http` and `grpc` include it by `#[path]`, with
//! `rounds.rs`.

use std::str::FromStr;

/// The word after `--name` on the command line, if there is one.
pub fn value_of(name: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != name);
    args.next()?;
    args.next()
}

/// `--name`'s value, or `default` when it is missing or does not parse.
pub fn flag<T: FromStr>(name: &str, default: T) -> T {
    value_of(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
