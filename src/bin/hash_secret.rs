//! Prints the configuration hash of a client secret or password read from
//! standard input (one line; the trailing newline is not part of the secret).
//!
//! `make hash-secret` or `cargo run --release --bin hash-secret [-- --iterations N]`

use std::io::{BufRead, IsTerminal, Write};

use envoy_oauth2::config::secret_hash::{
    hash_secret, DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS,
};
use envoy_oauth2::host::{HostRandomness, Randomness};

fn main() {
    let mut iterations = DEFAULT_ITERATIONS;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|n| n.parse::<u32>().ok())) {
            ("--iterations", Some(n)) if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&n) => {
                iterations = n
            }
            _ => {
                eprintln!(
                    "usage: hash-secret [--iterations {MIN_ITERATIONS}..{MAX_ITERATIONS}] < secret"
                );
                std::process::exit(2);
            }
        }
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("secret: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() {
        eprintln!("could not read the secret from standard input");
        std::process::exit(1);
    }
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        eprintln!("empty secret");
        std::process::exit(1);
    }
    let mut salt = [0u8; 16];
    if HostRandomness.fill(&mut salt).is_err() {
        eprintln!("no randomness available");
        std::process::exit(1);
    }
    println!("{}", hash_secret(secret.as_bytes(), &salt, iterations));
}
