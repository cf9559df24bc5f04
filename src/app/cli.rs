//! The command line (SPEC section 2), as clap derive types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "fleetfix",
    version,
    about = "Run TOML playbooks over SSH across a fleet, in parallel, with live progress"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a playbook on the selected nodes
    Run {
        /// The playbook file
        playbook: PathBuf,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        outputs: Outputs,
        /// Connect, run read-only steps and guards, change nothing, report drift (exit 5)
        #[arg(long)]
        check: bool,
        /// Run only the nodes that did not finish ok in that earlier run
        #[arg(long, value_name = "RUN_ID")]
        resume: Option<String>,
        /// Wait this long for a busy lock instead of exiting 4 (e.g. 5m)
        #[arg(long, value_name = "DURATION")]
        lock_wait: Option<String>,
        /// Write Prometheus text-format metrics of the run to FILE when it
        /// ends, for node_exporter's textfile collector (replaced atomically;
        /// name it *.prom in the collector's directory)
        #[arg(long, value_name = "FILE")]
        metrics: Option<PathBuf>,
        #[command(flatten)]
        web: RunWeb,
    },
    /// Validate playbook and inventory; connects to nothing
    Check {
        playbook: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Print, per node, exactly what would run (rendered); connects to nothing
    Plan {
        playbook: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Run one ad-hoc shell command on the selected nodes
    Exec {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        outputs: Outputs,
        /// Stop after this long (e.g. 30s)
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        /// Run it with `sudo -n`
        #[arg(long)]
        sudo: bool,
        /// The command, after `--`
        #[arg(last = true, required = true, num_args = 1..)]
        command: Vec<String>,
    },
    /// List the selected nodes with their resolved settings
    Nodes {
        #[command(flatten)]
        common: Common,
    },
    /// Start an embedded local fleet and run a demo rollout on it
    Demo {
        /// How many nodes
        #[arg(long, default_value_t = crate::demo::DEFAULT_NODES, value_parser = clap::value_parser!(u32).range(1..=20000))]
        nodes: u32,
        /// Nodes whose new version breaks, to be rolled back (repeatable or
        /// comma-separated) [default: the node two thirds in; `none`: no node]
        #[arg(long, value_name = "NODE")]
        fail: Vec<String>,
        /// Keep the fleet up and print its inventory, until Ctrl-C
        #[arg(long)]
        serve: bool,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        outputs: Outputs,
    },
    /// List past runs from the journal, or show one
    Runs {
        /// A run id (or a unique prefix of one)
        id: Option<String>,
        /// Write the run's page to FILE: one self-contained HTML file (needs ID)
        #[arg(long, value_name = "FILE", requires = "id", conflicts_with = "serve")]
        html: Option<PathBuf>,
        /// Serve the journaled runs as read-only web pages until Ctrl-C, on
        /// HOST:PORT or PORT (loopback); any non-loopback address asks for
        /// a token, printed once in the URL on stderr
        #[arg(long, value_name = "ADDR", conflicts_with = "id")]
        serve: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

/// The live web view of a run.
#[derive(Debug, Args, Clone)]
pub struct RunWeb {
    /// Serve a live, read-only web view of this run on HOST:PORT or PORT
    /// (loopback); any non-loopback address asks for a token, printed once
    /// in the URL on stderr
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
    /// With --serve: once the run is over, keep serving its page until
    /// Ctrl-C (the exit code is still the run's)
    #[arg(long, requires = "serve")]
    pub serve_linger: bool,
}

/// Files written at the end of a run, and the confirmation.
#[derive(Debug, Args, Clone)]
pub struct Outputs {
    /// Write the final report as JSON
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write a JUnit XML report: a testsuite per node, a testcase per step
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Output kept per step and stream (stdout, stderr, HTTP body); the rest
    /// is counted and marked as truncated (e.g. 64K, 1M) [default: 256K]
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub output_cap: Option<usize>,
}

/// `4096`, `64K`, `1M` (binary units) as bytes.
/// More output than this per step is kept in memory for every node.
const MAX_OUTPUT_CAP: usize = 256 * 1024 * 1024;

fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 65536, 64K or 1M"))?;
    let factor = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => 1024 * 1024,
        _ => return Err(format!("`{s}`: the unit is K or M")),
    };
    n.checked_mul(factor)
        .filter(|&b| (1..=MAX_OUTPUT_CAP).contains(&b))
        .ok_or_else(|| format!("`{s}` is not from 1 byte to 256M"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert!(parse_size("0").is_err());
        assert!(parse_size("5G").is_err());
        assert!(parse_size("lots").is_err());
    }
}

/// Options every command shares.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Inventory: fleetfix TOML, or an Ansible inventory (INI, YAML,
    /// `ansible-inventory --list` JSON, an inventory script, a directory)
    /// [default: $FLEETFIX_INVENTORY, else ./inventory.toml]
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// Comma-separated node names, group names or globs; `!pat` excludes
    #[arg(short = 'l', long, value_name = "PATTERNS")]
    pub limit: Option<String>,
    /// KEY=VALUE; overrides every other variable source (repeatable)
    #[arg(short = 'e', long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Most nodes in flight at once [default: the playbook's, else 100]
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: Option<u32>,
    /// human, or JSON Lines events on stdout
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Progress bars: only on a terminal by default
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// More log output (repeat for more)
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less log output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Options of commands that connect.
#[derive(Debug, Args, Clone)]
pub struct Connection {
    /// known_hosts file [default: ~/.ssh/known_hosts]
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Trust-on-first-use: learn unknown host keys; a changed key is still refused
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Always,
    Never,
}
