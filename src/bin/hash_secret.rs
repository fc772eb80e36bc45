//! Makes the configuration hash of a client secret or password.
//!
//! - `--generate` (`make client-secret`): makes a new 256-bit client secret
//!   from the OS CSPRNG and prints it, then its fast keyed hash
//!   (`$hmac-sha256$…`): a secret nobody chose cannot be guessed, so it needs
//!   no slow hash.
//! - otherwise (`make hash-secret`): reads a human-chosen secret or password
//!   from standard input (one line; the trailing newline is not part of it)
//!   and prints its PBKDF2 hash (`$pbkdf2-sha256$…`).
//!
//! `cargo run --release --bin hash-secret [-- --iterations N | --generate]`

use std::io::{BufRead, IsTerminal, Write};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use envoy_oauth2::config::secret_hash::{
    hash_generated_secret, hash_secret, DEFAULT_ITERATIONS, GENERATED_SECRET_BYTES, MAX_ITERATIONS,
    MIN_ITERATIONS,
};
use envoy_oauth2::host::{HostRandomness, Randomness};

fn usage() -> ! {
    eprintln!(
        "usage: hash-secret [--iterations {MIN_ITERATIONS}..{MAX_ITERATIONS}] < secret\n       hash-secret --generate"
    );
    std::process::exit(2);
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    if HostRandomness.fill(&mut out).is_err() {
        eprintln!("no randomness available");
        std::process::exit(1);
    }
    out
}

fn main() {
    let mut iterations = DEFAULT_ITERATIONS;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--generate" => {
                let secret = URL_SAFE_NO_PAD.encode(random::<GENERATED_SECRET_BYTES>());
                let salt = random::<16>();
                println!("client_secret: {secret}");
                println!(
                    "secret_hash:   {}",
                    hash_generated_secret(secret.as_bytes(), &salt)
                );
                return;
            }
            "--iterations" => match args.next().and_then(|n| n.parse::<u32>().ok()) {
                Some(n) if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&n) => iterations = n,
                _ => usage(),
            },
            _ => usage(),
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
    let salt = random::<16>();
    println!("{}", hash_secret(secret.as_bytes(), &salt, iterations));
}
