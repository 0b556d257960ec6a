//! `config check`: validate the configuration and print it with secrets redacted.

use clap::Subcommand;

use super::EXIT_INVALID;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted; exits non-zero naming
    /// the offending key on error.
    Check,
}

pub(super) fn check(cfg: &Config) -> anyhow::Result<u8> {
    print!("{}", cfg.to_redacted_toml());
    if let Err(e) = crate::daemon::checks::check_config(cfg) {
        eprintln!("error: {e}");
        return Ok(EXIT_INVALID);
    }
    eprintln!("configuration is valid");
    Ok(0)
}
