//! The `~/.ssh/config` fallback (SPEC section 3): settings a node leaves
//! unset come from the user's ssh configuration, parsed by `ssh2-config`.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::error::Error;

/// What ssh_config says about one host alias.
#[derive(Debug, Clone, Default)]
pub struct HostSettings {
    pub host_name: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// The first configured identity file that exists.
    pub identity_file: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
    /// `ProxyJump` hops, first hop first.
    pub proxy_jump: Vec<String>,
}

/// A parsed ssh_config, or none.
#[derive(Default)]
pub struct SshConfig {
    parsed: Option<ssh2_config::SshConfig>,
}

impl SshConfig {
    /// `$HOME/.ssh/config` when it exists; a malformed one is bad input.
    pub fn load_user() -> Result<Self, Error> {
        let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
            return Ok(SshConfig::default());
        };
        let path = home.join(".ssh").join("config");
        let Ok(file) = std::fs::File::open(&path) else {
            return Ok(SshConfig::default());
        };
        let mut reader = std::io::BufReader::new(file);
        let rules = ssh2_config::ParseRule::ALLOW_UNKNOWN_FIELDS
            | ssh2_config::ParseRule::ALLOW_UNSUPPORTED_FIELDS;
        let parsed = ssh2_config::SshConfig::default()
            .home_dir(&home)
            .parse(&mut reader, rules)
            .map_err(|e| {
                Error::input(
                    format!("cannot parse {}: {e}", path.display()),
                    "fix the ssh config (ssh -G HOST shows what ssh makes of it)",
                )
            })?;
        Ok(SshConfig {
            parsed: Some(parsed),
        })
    }

    /// The settings for `alias` (all unset without a config).
    pub fn query(&self, alias: &str) -> HostSettings {
        let Some(parsed) = &self.parsed else {
            return HostSettings::default();
        };
        let p = parsed.query(alias);
        HostSettings {
            host_name: p.host_name,
            port: p.port,
            user: p.user,
            identity_file: p
                .identity_file
                .unwrap_or_default()
                .into_iter()
                .find(|f| f.is_file()),
            connect_timeout: p.connect_timeout,
            proxy_jump: p
                .proxy_jump
                .unwrap_or_default()
                .into_iter()
                .filter(|h| h != "none")
                .collect(),
        }
    }
}
