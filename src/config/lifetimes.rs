//! Token lifetimes: the defaults of the configuration and a client's
//! overrides, each between one second and a year.

use serde::Deserialize;

use super::error::{err, ConfigError};

/// A year: no token should outlive that.
const MAX_LIFETIME: u64 = 366 * 86400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimesConfig {
    #[serde(default = "default_hour")]
    pub application_access_token: u64,
    #[serde(default = "default_hour")]
    pub user_access_token: u64,
    #[serde(default = "default_day")]
    pub refresh_token: u64,
}

impl Default for LifetimesConfig {
    fn default() -> Self {
        LifetimesConfig {
            application_access_token: 3600,
            user_access_token: 3600,
            refresh_token: 86400,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifetimeOverrides {
    pub application_access_token: Option<u64>,
    pub user_access_token: Option<u64>,
    pub refresh_token: Option<u64>,
}

fn default_hour() -> u64 {
    3600
}
fn default_day() -> u64 {
    86400
}

pub(super) fn check_lifetimes(field: &str, l: &LifetimesConfig) -> Result<(), ConfigError> {
    for (name, v) in [
        ("application_access_token", l.application_access_token),
        ("user_access_token", l.user_access_token),
        ("refresh_token", l.refresh_token),
    ] {
        if !(1..=MAX_LIFETIME).contains(&v) {
            return Err(err(
                format!("{field}.{name}"),
                format!("must be between 1 and {MAX_LIFETIME} seconds"),
            ));
        }
    }
    Ok(())
}
