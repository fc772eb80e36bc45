//! The token endpoint's defences against guessing and flooding: brute-force
//! throttling (`throttle`) and the per-worker ration of slow hash work
//! (`slow_hash_budget`). Applied by `crate::authn`.

use serde::Deserialize;

use super::error::{err, ConfigError};

/// Brute-force throttling of failed authentication with slow-hashed
/// credentials (see `crate::authn::throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed per (name, client address) and window; 0 turns
    /// throttling off.
    pub max_failures: u32,
    pub window_seconds: u64,
    /// Failures per name and window, from every address together, that lock
    /// the name for everyone for a growing delay (0: never).
    pub global_max_failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleFile {
    #[serde(default = "default_max_failures")]
    max_failures: u32,
    #[serde(default = "default_throttle_window")]
    window_seconds: u64,
    global_max_failures: Option<u32>,
}

impl Default for ThrottleFile {
    fn default() -> Self {
        ThrottleFile {
            max_failures: default_max_failures(),
            window_seconds: default_throttle_window(),
            global_max_failures: None,
        }
    }
}

fn default_max_failures() -> u32 {
    10
}
fn default_throttle_window() -> u64 {
    60
}
/// The global lock by default: ten times the per-address limit.
const GLOBAL_FACTOR: u32 = 10;

pub fn parse_throttle(t: &ThrottleFile) -> Result<ThrottlePolicy, ConfigError> {
    if t.max_failures > 0 && !(1..=86400).contains(&t.window_seconds) {
        return Err(err(
            "throttle.window_seconds",
            "must be between 1 and 86400",
        ));
    }
    let global = t
        .global_max_failures
        .unwrap_or(t.max_failures.saturating_mul(GLOBAL_FACTOR));
    if global != 0 && global < t.max_failures {
        return Err(err(
            "throttle.global_max_failures",
            "must be 0 (never lock a name for everyone) or at least max_failures",
        ));
    }
    Ok(ThrottlePolicy {
        max_failures: t.max_failures,
        window_seconds: t.window_seconds,
        global_max_failures: global,
    })
}

/// The per-worker ration of slow hash work (applied by `authn::hash_budget`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HashBudgetPolicy {
    /// PBKDF2 iterations per second and worker, on average (0: no limit).
    pub per_second: u64,
    /// How many may run back to back after a quiet spell.
    pub burst: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashBudgetFile {
    #[serde(default = "default_budget_per_second")]
    iterations_per_second: u64,
    #[serde(default = "default_budget_burst")]
    burst_iterations: u64,
}

impl Default for HashBudgetFile {
    fn default() -> Self {
        HashBudgetFile {
            iterations_per_second: default_budget_per_second(),
            burst_iterations: default_budget_burst(),
        }
    }
}

/// About half of one core in Wasm: 5 checks a second at the default 100,000
/// iterations (each about 100 ms).
fn default_budget_per_second() -> u64 {
    500_000
}
/// 20 default-cost checks back to back (a restart's first logins).
fn default_budget_burst() -> u64 {
    2_000_000
}

pub fn parse_hash_budget(b: &HashBudgetFile) -> Result<HashBudgetPolicy, ConfigError> {
    if b.iterations_per_second != 0 && b.burst_iterations < b.iterations_per_second {
        return Err(err(
            "slow_hash_budget.burst_iterations",
            "must be at least iterations_per_second",
        ));
    }
    Ok(HashBudgetPolicy {
        per_second: b.iterations_per_second,
        burst: b.burst_iterations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_field() {
        let t: ThrottleFile =
            serde_json::from_str(r#"{"max_failures": 10, "global_max_failures": 5}"#).unwrap();
        assert_eq!(
            parse_throttle(&t).unwrap_err().field,
            "throttle.global_max_failures"
        );
        let t: ThrottleFile = serde_json::from_str(r#"{"max_failures": 4}"#).unwrap();
        assert_eq!(parse_throttle(&t).unwrap().global_max_failures, 40);
        let b: HashBudgetFile =
            serde_json::from_str(r#"{"iterations_per_second": 10, "burst_iterations": 5}"#)
                .unwrap();
        assert_eq!(
            parse_hash_budget(&b).unwrap_err().field,
            "slow_hash_budget.burst_iterations"
        );
    }
}
