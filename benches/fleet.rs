//! Fleet benchmark: the same 3-step job over N real OpenSSH sshd hosts on
//! loopback, run by fleetfix and (where installed) parallel-ssh, ssh+xargs
//! with ControlMaster, ansible-playbook and pyinfra.
//!
//! ```text
//! cargo bench --profile dist --bench fleet -- [--nodes 10,50,100] [--tools fleetfix,pssh,xargs,ansible,pyinfra]
//! FLEETFIX_BASE_BIN=/path/to/old/fleetfix cargo bench --profile dist --bench fleet -- --tools fleetfix,fleetfix-base --repeat 5
//! ```
//!
//! `--profile dist` measures the build that is shipped (fat LTO, one
//! codegen unit); `fleetfix-base` is another build run the same way, so an
//! old and a new build are compared in one run, their repeats interleaved.
//!
//! The job is three steps on every host: `uname -r`, `cat /etc/hostname`,
//! `test -d /tmp && echo ok`. Per tool and N it reports wall time, client
//! CPU (user+sys of the tool and every descendant, including ssh
//! ControlPersist masters that outlive the tool: this process is a child
//! subreaper and reaps them with wait4), peak RSS (the largest single client
//! process, as `ru_maxrss`), the CPU the fleet's sshd listeners and all their
//! session processes (including the remote commands, and node-side shells
//! that outlive their session and are re-parented here) spent during the
//! run, and how many hosts printed the expected output (this machine's kernel
//! release and hostname, then `ok`) for all three steps. The table goes to
//! stdout and, as JSON lines, to `target/bench-fleet.jsonl`; the process
//! exits 1 if any host failed for any tool.
//!
//! Every tool verifies host keys against the fleet's known_hosts file and
//! uses the fleet's client key, with HOME in the fleet dir and no ssh-agent.
//!
//! The harness's sshds set `SHLVL=1` in sessions, so root's bash does not
//! source ~/.bashrc per command (here `pyenv init`, ~0.2 s of sshd CPU each),
//! which would otherwise cost every tool alike and hide their differences.
//!
//! ansible and pyinfra are looked up in `$BENCH_VENV/bin` (default
//! `/tmp/bench-venv`, e.g. `python3 -m venv /tmp/bench-venv &&
//! /tmp/bench-venv/bin/pip install ansible-core pyinfra`), then on PATH.
//! `BENCH_TIMEOUT_S` (default 900) bounds each tool run.
//!
//! Must run as root (the sshd harness needs it).

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Fleet;
use nix::libc;
use serde_json::{Value, json};

const FLEETFIX: &str = env!("CARGO_BIN_EXE_fleetfix");
const TIME: &str = "/usr/bin/time";
/// `fleetfix-base` is another fleetfix build (`FLEETFIX_BASE_BIN`), to
/// compare with side by side; skipped without it.
const ALL_TOOLS: [&str; 6] = [
    "fleetfix",
    "fleetfix-base",
    "pssh",
    "xargs",
    "ansible",
    "pyinfra",
];
const DEFAULT_NODES: [usize; 3] = [10, 50, 100];
/// The inventory size of the issue's `fleetfix check` line.
const CHECK_NODES: usize = 1000;
/// Runs of `fleetfix check`; the median is reported.
const CHECK_RUNS: usize = 21;
/// The job: (step name, shell command).
const STEPS: [(&str, &str); 3] = [
    ("kernel", "uname -r"),
    ("hostname", "cat /etc/hostname"),
    ("tmp", "test -d /tmp && echo ok"),
];

// ------------------------------------------------------------------ args

struct Args {
    nodes: Vec<usize>,
    tools: Vec<String>,
    /// Runs of each tool per fleet size (a row each).
    repeat: usize,
    /// Inventory size for the `fleetfix check` timing (0: skip it).
    check_nodes: usize,
}

fn usage() -> String {
    format!(
        "usage: cargo bench --bench fleet -- [--nodes N[,N...]] [--tools TOOL[,TOOL...]] [--repeat K] [--check-nodes M]\n\
         \x20 --nodes  fleet sizes (default {}; '' for none)\n\
         \x20 --tools  any of {} (default all)\n\
         \x20 --repeat runs of each tool per fleet size, a row each (default 1)\n\
         \x20 --check-nodes  times `fleetfix check` on a generated inventory of M nodes (default {CHECK_NODES}; 0 skips)\n\
         env: BENCH_VENV (default /tmp/bench-venv), BENCH_TIMEOUT_S (default 900)",
        DEFAULT_NODES.map(|n| n.to_string()).join(","),
        ALL_TOOLS.join(",")
    )
}

fn parse_args() -> Result<Args, String> {
    let mut nodes: Vec<usize> = DEFAULT_NODES.to_vec();
    let mut tools: Vec<String> = ALL_TOOLS.iter().map(|s| s.to_string()).collect();
    let mut repeat = 1;
    let mut check_nodes = CHECK_NODES;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n{}", usage()))
        };
        match key.as_str() {
            "--nodes" => {
                let v = value("--nodes")?;
                nodes = v
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or_else(|| format!("--nodes: bad count {s:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--tools" => {
                let v = value("--tools")?;
                tools = Vec::new();
                for t in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let t = if t == "parallel-ssh" { "pssh" } else { t };
                    if !ALL_TOOLS.contains(&t) {
                        return Err(format!(
                            "--tools: unknown tool {t:?} (known: {})",
                            ALL_TOOLS.join(",")
                        ));
                    }
                    if !tools.iter().any(|x| x == t) {
                        tools.push(t.to_string());
                    }
                }
            }
            "--repeat" => {
                let v = value("--repeat")?;
                repeat = v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&k| k > 0)
                    .ok_or_else(|| format!("--repeat: bad count {v:?}"))?;
            }
            "--check-nodes" => {
                let v = value("--check-nodes")?;
                check_nodes = v
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| format!("--check-nodes: bad count {v:?}"))?;
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            other => eprintln!("note: ignoring argument {other:?}"),
        }
    }
    if tools.is_empty() || (nodes.is_empty() && check_nodes == 0) {
        return Err(usage());
    }
    Ok(Args {
        nodes,
        tools,
        repeat,
        check_nodes,
    })
}

// ------------------------------------------------------------ fleetfix check

/// `fleetfix check` of one playbook on a generated inventory: wall times
/// of [`CHECK_RUNS`] runs, sorted, in milliseconds.
struct CheckTiming {
    /// The build timed: `fleetfix` or `fleetfix-base`.
    tool: String,
    nodes: usize,
    /// `TOML` or `Ansible INI`: the same fleet written either way.
    format: &'static str,
    playbook: &'static str,
    ms: Vec<f64>,
}

impl CheckTiming {
    fn median(&self) -> f64 {
        self.ms[self.ms.len() / 2]
    }

    fn line(&self) -> String {
        format!(
            "{} check, {}-node {} inventory, {}: median {:.1} ms (min {:.1}, max {:.1}, {} runs)",
            self.tool,
            self.nodes,
            self.format,
            self.playbook,
            self.median(),
            self.ms[0],
            self.ms[self.ms.len() - 1],
            self.ms.len()
        )
    }
}

/// An inventory shaped like the repository's own (defaults, fleet vars,
/// groups and vars per node), `nodes` entries long.
fn generated_inventory(nodes: usize) -> String {
    let mut s = String::from(
        "[defaults]\nuser = \"ubuntu\"\nport = 22\nconnect_timeout = \"10s\"\n\n\
         [vars]\nrelay_dns_domain = \"relaynet.online\"\nrelay_ssl_mode = \"auto\"\n\
         relay_certbot_email = \"ops@relaynet.online\"\n",
    );
    for i in 1..=nodes {
        let _ = write!(
            s,
            "\n[nodes.node{i:04}]\nhost = \"node{i:04}.relaynet.online\"\n\
             groups = [\"relay\", \"dc{}\"]\n\
             vars = {{ relay_dns_subdomain = \"node{i:04}\", public_url = \"https://node{i:04}.relaynet.online\" }}\n",
            i % 8
        );
    }
    s
}

/// [`generated_inventory`]'s fleet as an Ansible INI inventory: the same
/// hosts, groups and variables (`[defaults]` and `[vars]` as `[all:vars]`).
fn generated_ini_inventory(nodes: usize) -> String {
    let mut s = String::from(
        "[all:vars]\nansible_user=ubuntu\nansible_port=22\nansible_timeout=10\n\
         relay_dns_domain=relaynet.online\nrelay_ssl_mode=auto\n\
         relay_certbot_email=ops@relaynet.online\n\n[relay:children]\n",
    );
    for dc in 0..8 {
        let _ = writeln!(s, "dc{dc}");
    }
    for dc in 0..8 {
        let _ = write!(s, "\n[dc{dc}]\n");
        for i in (1..=nodes).filter(|i| i % 8 == dc) {
            let _ = writeln!(
                s,
                "node{i:04} ansible_host=node{i:04}.relaynet.online \
                 relay_dns_subdomain=node{i:04} public_url=https://node{i:04}.relaynet.online"
            );
        }
    }
    s
}

/// The playbooks `check` is timed with: the benchmark's job (no per-node
/// template) and the relay rollout (one step renders a node's own vars).
const CHECKED: [&str; 2] = ["the 3-step job", "playbooks/relay-rollout.toml"];

/// Times `check`, which connects to nothing: parsing, validation and
/// rendering for every node, as a user waits for it (process start included).
fn time_check(program: &Path, nodes: usize) -> Result<Vec<CheckTiming>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let toml = dir.path().join("inventory.toml");
    write(&toml, &generated_inventory(nodes));
    let ini = dir.path().join("hosts.ini");
    write(&ini, &generated_ini_inventory(nodes));
    let job = dir.path().join("job.toml");
    write(&job, &job_playbook());
    let rollout = Path::new(env!("CARGO_MANIFEST_DIR")).join(CHECKED[1]);
    let mut timings = Vec::new();
    for (inventory, format) in [(&toml, "TOML"), (&ini, "Ansible INI")] {
        for (path, label) in [&job, &rollout].into_iter().zip(CHECKED) {
            let mut t = time_check_one(program, inventory, path, nodes, label)?;
            t.format = format;
            timings.push(t);
        }
    }
    Ok(timings)
}

fn time_check_one(
    program: &Path,
    inventory: &Path,
    playbook: &Path,
    nodes: usize,
    label: &'static str,
) -> Result<CheckTiming, String> {
    let home = inventory.parent().unwrap_or(Path::new("/"));
    let want = format!("is valid for {nodes} node(s)");
    let mut ms = Vec::with_capacity(CHECK_RUNS);
    for _ in 0..CHECK_RUNS {
        let started = Instant::now();
        let out = Command::new(program)
            .arg("check")
            .arg("-i")
            .arg(inventory)
            .arg(playbook)
            .env("HOME", home)
            .env("VERCEL_API_TOKEN", "bench")
            .env("VERCEL_TEAM_ID", "bench")
            .env_remove("FLEETFIX_INVENTORY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {}: {e}", program.display()))?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains(&want) {
            return Err(format!(
                "check exited {} with {stdout:?} {:?}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(CheckTiming {
        tool: "fleetfix".into(),
        nodes,
        format: "TOML",
        playbook: label,
        ms,
    })
}

// ------------------------------------------------------------ /proc, rusage

fn my_pid() -> u32 {
    std::process::id()
}

/// Fields of /proc/PID/stat after the command name: index 0 is field 3
/// (state), 1 is ppid, 11..=14 are utime, stime, cutime, cstime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// (pid, ppid, state) of every process.
fn all_procs() -> Vec<(u32, u32, char)> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for entry in rd.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(f) = stat_fields(pid) {
                let ppid = f.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
                let state = f.first().and_then(|s| s.chars().next()).unwrap_or('?');
                out.push((pid, ppid, state));
            }
        }
    }
    out
}

fn children_of(parents: &HashSet<u32>) -> Vec<(u32, char)> {
    all_procs()
        .into_iter()
        .filter(|(_, ppid, _)| parents.contains(ppid))
        .map(|(pid, _, st)| (pid, st))
        .collect()
}

fn descendants_of(root: u32) -> Vec<u32> {
    let procs = all_procs();
    let mut kids: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid, _) in procs {
        kids.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in kids.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime+stime+cutime+cstime of one process, in clock ticks.
fn cpu_ticks_with_children(pid: u32) -> u64 {
    stat_fields(pid)
        .map(|f| {
            (11..=14)
                .map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn send_signal(pid: u32, sig: nix::sys::signal::Signal) {
    if pid > 1 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
    }
}

/// wait4 on one pid; returns (cpu seconds, maxrss kB) when it was reaped.
fn wait4_pid(pid: u32, block: bool) -> Option<(f64, u64)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: valid pointers to locals; pid is positive.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, flags, &mut ru) };
    if r == pid as libc::pid_t {
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some((
            tv(ru.ru_utime) + tv(ru.ru_stime),
            ru.ru_maxrss.max(0) as u64,
        ))
    } else {
        None
    }
}

/// What the processes re-parented to this process during a run cost.
#[derive(Default)]
struct Orphans {
    /// ssh clients (ControlPersist masters): the tool's.
    client_cpu_s: f64,
    client_maxrss_kb: u64,
    clients: usize,
    /// Anything else came from the fleet (a node's shell that outlived its
    /// sshd session): the nodes'.
    node_cpu_s: f64,
}

/// The command name of a process (readable for zombies too).
fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let open = s.find('(')?;
            let close = s.rfind(')')?;
            Some(s[open + 1..close].to_string())
        })
        .unwrap_or_default()
}

/// Reaps the processes that were re-parented to this (subreaper) process
/// since `before` was taken: ssh ControlPersist masters (the tool's), and
/// node-side shells whose sshd session ended first (the fleet's). Gives
/// them `grace` to exit, then SIGTERM, then SIGKILL.
fn reap_orphans(before: &HashSet<u32>, grace: Duration) -> Orphans {
    let me: HashSet<u32> = [my_pid()].into();
    let new_kids = || -> Vec<(u32, char)> {
        children_of(&me)
            .into_iter()
            .filter(|(p, _)| !before.contains(p))
            .collect()
    };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && new_kids().iter().any(|&(_, st)| st != 'Z') {
        std::thread::sleep(Duration::from_millis(20));
    }
    let kids = new_kids();
    for &(pid, st) in &kids {
        if st != 'Z' {
            send_signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
    let mut o = Orphans::default();
    for &(pid, _) in &kids {
        let client = comm(pid) == "ssh";
        let until = Instant::now() + Duration::from_secs(3);
        let mut got = None;
        while got.is_none() && Instant::now() < until {
            got = wait4_pid(pid, false);
            if got.is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if got.is_none() {
            send_signal(pid, nix::sys::signal::Signal::SIGKILL);
            got = wait4_pid(pid, true);
        }
        match got {
            Some((c, r)) if client => {
                o.client_cpu_s += c;
                o.client_maxrss_kb = o.client_maxrss_kb.max(r);
                o.clients += 1;
            }
            Some((c, _)) => o.node_cpu_s += c,
            None => o.clients += usize::from(client),
        }
    }
    o
}

/// Reaps leftover zombie children (e.g. sshd session processes re-parented
/// to us when a fleet is stopped).
fn reap_stray_zombies() {
    let me: HashSet<u32> = [my_pid()].into();
    for (pid, st) in children_of(&me) {
        if st == 'Z' {
            let _ = wait4_pid(pid, false);
        }
    }
}

// ------------------------------------------------------------ sshd CPU

struct Sshd {
    listeners: Vec<u32>,
}

impl Sshd {
    fn of(fleet: &Fleet) -> Sshd {
        let mut seen = HashSet::new();
        let mut listeners = Vec::new();
        for node in fleet.nodes() {
            if seen.contains(&node.name) {
                continue;
            }
            for n in fleet.sshd_group(&node.name) {
                seen.insert(n.to_string());
            }
            let pid = fleet.sshd_pid(&node.name);
            if !listeners.contains(&pid) {
                listeners.push(pid);
            }
        }
        Sshd { listeners }
    }

    fn ticks(&self) -> u64 {
        self.listeners
            .iter()
            .map(|&p| cpu_ticks_with_children(p))
            .sum()
    }

    /// Waits until no listener has a child (every session reaped, so its
    /// CPU is in cutime/cstime); false on timeout.
    fn wait_idle(&self, timeout: Duration) -> bool {
        let set: HashSet<u32> = self.listeners.iter().copied().collect();
        let deadline = Instant::now() + timeout;
        loop {
            if children_of(&set).is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// ------------------------------------------------------------ timed runs

#[derive(Default, Debug)]
struct Timed {
    wall_s: f64,
    user_s: f64,
    sys_s: f64,
    maxrss_kb: u64,
    exit: Option<i32>,
    signal: Option<String>,
    orphan_cpu_s: f64,
    orphan_maxrss_kb: u64,
    orphans: usize,
    sshd_cpu_s: f64,
    sshd_idle: bool,
    timed_out: bool,
    stdout: String,
    stderr: String,
}

/// What `/usr/bin/time -v` reported.
#[derive(Default, Debug)]
struct TimeV {
    wall_s: f64,
    user_s: f64,
    sys_s: f64,
    maxrss_kb: u64,
    exit: Option<i32>,
    signal: Option<String>,
}

fn parse_time_v(text: &str) -> TimeV {
    let mut t = TimeV::default();
    for line in text.lines() {
        let line = line.trim();
        let val = |l: &str| l.rsplit_once(": ").map(|(_, v)| v.trim().to_string());
        if line.starts_with("User time (seconds)") {
            t.user_s = val(line).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        } else if line.starts_with("System time (seconds)") {
            t.sys_s = val(line).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        } else if line.starts_with("Elapsed (wall clock) time") {
            if let Some(v) = val(line) {
                t.wall_s = v
                    .split(':')
                    .try_fold(0.0f64, |acc, p| {
                        p.parse::<f64>().ok().map(|x| acc * 60.0 + x)
                    })
                    .unwrap_or(0.0);
            }
        } else if line.starts_with("Maximum resident set size (kbytes)") {
            t.maxrss_kb = val(line).and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if line.starts_with("Exit status") {
            t.exit = val(line).and_then(|v| v.parse().ok());
        } else if line.starts_with("Command terminated by signal") {
            t.signal = Some(line.to_string());
        }
    }
    t
}

fn bench_timeout() -> Duration {
    let s = std::env::var("BENCH_TIMEOUT_S")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(900);
    Duration::from_secs(s)
}

/// A command line to measure plus its environment.
struct Job {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Directories holding ssh ControlMaster sockets: their masters are told
    /// to exit once the tool has finished.
    control_dirs: Vec<PathBuf>,
}

/// Runs `job` under `/usr/bin/time -v` in `work`, with HOME=`home` and no
/// ssh-agent, and measures the fleet's sshd CPU around it.
fn run_timed(work: &Path, home: &Path, sshd: &Sshd, job: &Job) -> Timed {
    fs::create_dir_all(work).expect("create work dir");
    let time_file = work.join("time.txt");
    let out_file = work.join("stdout.txt");
    let err_file = work.join("stderr.txt");
    let me: HashSet<u32> = [my_pid()].into();
    let before_kids: HashSet<u32> = children_of(&me).into_iter().map(|(p, _)| p).collect();
    let sshd_before = sshd.ticks();

    let mut cmd = Command::new(TIME);
    cmd.arg("-v")
        .arg("-o")
        .arg(&time_file)
        .arg(&job.program)
        .args(&job.args)
        .current_dir(work)
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_AGENT_PID")
        .env_remove("FLEETFIX_INVENTORY")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(File::create(&out_file).expect("create stdout file"))
        .stderr(File::create(&err_file).expect("create stderr file"));
    for (k, v) in &job.env {
        cmd.env(k, v);
    }
    let mut t = Timed::default();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            t.stderr = format!("spawn {TIME} {}: {e}", job.program.display());
            return t;
        }
    };
    let deadline = Instant::now() + bench_timeout();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                t.timed_out = true;
                // By pid: the tool's whole tree first, then time itself.
                for pid in descendants_of(child.id()) {
                    send_signal(pid, nix::sys::signal::Signal::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break,
        }
    }
    let tv = parse_time_v(&fs::read_to_string(&time_file).unwrap_or_default());
    t.wall_s = tv.wall_s;
    t.user_s = tv.user_s;
    t.sys_s = tv.sys_s;
    t.maxrss_kb = tv.maxrss_kb;
    t.exit = tv.exit;
    t.signal = tv.signal;

    close_control_masters(&job.control_dirs);
    t.sshd_idle = sshd.wait_idle(Duration::from_secs(15));
    let orphans = reap_orphans(&before_kids, Duration::from_secs(5));
    t.orphan_cpu_s = orphans.client_cpu_s;
    t.orphan_maxrss_kb = orphans.client_maxrss_kb;
    t.orphans = orphans.clients;
    t.sshd_cpu_s = sshd.ticks().saturating_sub(sshd_before) as f64 / clk_tck() + orphans.node_cpu_s;
    t.stdout = fs::read_to_string(&out_file).unwrap_or_default();
    t.stderr = fs::read_to_string(&err_file).unwrap_or_default();
    t
}

/// `ssh -O exit` for every socket in the given directories (in parallel).
fn close_control_masters(dirs: &[PathBuf]) {
    let mut kids = Vec::new();
    for dir in dirs {
        let Ok(rd) = fs::read_dir(dir) else { continue };
        for entry in rd.flatten() {
            let is_sock = {
                use std::os::unix::fs::FileTypeExt;
                entry.file_type().map(|t| t.is_socket()).unwrap_or(false)
            };
            if !is_sock {
                continue;
            }
            let spawned = Command::new("ssh")
                .arg("-O")
                .arg("exit")
                .arg("-o")
                .arg(format!("ControlPath={}", entry.path().display()))
                .arg("bench-control-exit")
                .env_remove("SSH_AUTH_SOCK")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(c) = spawned {
                kids.push(c);
            }
        }
    }
    for mut c in kids {
        let _ = c.wait();
    }
}

// ------------------------------------------------------------ checking

/// What each step prints on every node (all nodes are this machine).
struct Expected {
    kernel: Option<String>,
    hostname: Option<String>,
}

impl Expected {
    fn local() -> Expected {
        let kernel = Command::new("uname")
            .arg("-r")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty());
        let hostname = fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        Expected { kernel, hostname }
    }

    /// All three steps produced output, matching this machine's values
    /// where known, and the third printed "ok".
    fn check(&self, outs: &[Option<String>]) -> bool {
        if outs.len() != STEPS.len() {
            return false;
        }
        let got: Vec<&str> = outs
            .iter()
            .map(|o| o.as_deref().unwrap_or("").trim())
            .collect();
        let matches = |g: &str, want: &Option<String>| {
            !g.is_empty() && want.as_deref().is_none_or(|w| g == w)
        };
        matches(got[0], &self.kernel) && matches(got[1], &self.hostname) && got[2] == "ok"
    }
}

// ------------------------------------------------------------ tools

struct Ctx<'a> {
    fleet: &'a Fleet,
    sshd: &'a Sshd,
    expected: &'a Expected,
    n: usize,
}

struct Outcome {
    timed: Timed,
    hosts_ok: usize,
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn venv_dir() -> PathBuf {
    std::env::var_os("BENCH_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/bench-venv"))
}

fn venv_or_path(name: &str) -> Option<PathBuf> {
    let p = venv_dir().join("bin").join(name);
    if is_executable(&p) {
        Some(p)
    } else {
        which(name)
    }
}

/// Where a tool comes from, or why it is skipped.
fn locate(tool: &str) -> Result<PathBuf, String> {
    match tool {
        // FLEETFIX_BENCH_BIN: another build to measure (a profiling one, say).
        "fleetfix" => Ok(std::env::var_os("FLEETFIX_BENCH_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(FLEETFIX))),
        // FLEETFIX_BASE_BIN: the build to compare with, side by side.
        "fleetfix-base" => std::env::var_os("FLEETFIX_BASE_BIN")
            .map(PathBuf::from)
            .filter(|p| is_executable(p))
            .ok_or_else(|| "FLEETFIX_BASE_BIN names no executable".into()),
        "pssh" => which("parallel-ssh")
            .or_else(|| which("pssh"))
            .ok_or_else(|| "neither parallel-ssh nor pssh is on PATH (Debian: apt-get install pssh)".into()),
        "xargs" => match (which("xargs"), which("ssh")) {
            (Some(x), Some(_)) => Ok(x),
            _ => Err("xargs or ssh is not on PATH".into()),
        },
        "ansible" => venv_or_path("ansible-playbook").ok_or_else(|| {
            format!(
                "ansible-playbook not in {}/bin nor on PATH (python3 -m venv {0} && {0}/bin/pip install ansible-core)",
                venv_dir().display()
            )
        }),
        "pyinfra" => venv_or_path("pyinfra").ok_or_else(|| {
            format!(
                "pyinfra not in {}/bin nor on PATH (python3 -m venv {0} && {0}/bin/pip install pyinfra)",
                venv_dir().display()
            )
        }),
        other => Err(format!("unknown tool {other}")),
    }
}

fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn ssh_verify_opts(ctx: &Ctx) -> Vec<String> {
    vec![
        "-i".into(),
        path_str(ctx.fleet.client_key()),
        "-o".into(),
        format!("UserKnownHostsFile={}", path_str(ctx.fleet.known_hosts())),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
    ]
}

/// The job as a fleetfix playbook.
fn job_playbook() -> String {
    let mut pb = String::from("name = \"bench\"\n");
    for (name, run) in STEPS {
        let _ = write!(
            pb,
            "\n[[steps]]\nname = {}\nrun = {}\nchanges = false\n",
            json!(name),
            json!(run)
        );
    }
    pb
}

fn run_fleetfix(ctx: &Ctx, program: &Path) -> Outcome {
    let work = ctx.fleet.dir().join("bench-fleetfix");
    fs::create_dir_all(&work).expect("work dir");
    let inventory = ctx.fleet.write_inventory(&[]);
    let playbook = work.join("bench.toml");
    write(&playbook, &job_playbook());
    let job = Job {
        program: program.to_path_buf(),
        args: vec![
            "run".into(),
            "-i".into(),
            path_str(&inventory),
            "--known-hosts".into(),
            path_str(ctx.fleet.known_hosts()),
            "--output".into(),
            "json".into(),
            // Its default concurrency (100 in flight): more only adds
            // ~90 KB of SSH session state per connection while the sshds,
            // not the runner, set the pace.
            path_str(&playbook),
        ],
        env: vec![],
        control_dirs: vec![],
    };
    let timed = run_timed(&work, ctx.fleet.dir(), ctx.sshd, &job);
    // node -> (finished ok/changed, stdout per step index)
    let mut status: HashMap<String, bool> = HashMap::new();
    let mut outs: HashMap<String, Vec<Option<String>>> = HashMap::new();
    let mut errors: Vec<String> = Vec::new();
    for line in timed.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let node = ev["node"].as_str().unwrap_or_default().to_string();
        match ev["event"].as_str() {
            Some("node_finished") => {
                let ok = matches!(ev["status"].as_str(), Some("ok" | "changed"));
                if let (false, Some(e)) = (ok, ev["error"].as_str())
                    && errors.len() < 3
                    && !errors.iter().any(|x: &String| x == e)
                {
                    errors.push(e.to_string());
                }
                status.insert(node, ok);
            }
            Some("step_finished") if ev["on_failure"] != Value::Bool(true) => {
                let idx = ev["index"].as_u64().unwrap_or(u64::MAX) as usize;
                let good = matches!(ev["status"].as_str(), Some("ok" | "changed"));
                if idx < STEPS.len() && good {
                    let v = outs.entry(node).or_insert_with(|| vec![None; STEPS.len()]);
                    v[idx] = ev["stdout"].as_str().map(str::to_string);
                }
            }
            _ => {}
        }
    }
    let hosts_ok = ctx
        .fleet
        .nodes()
        .iter()
        .filter(|n| {
            status.get(&n.name).copied().unwrap_or(false)
                && outs.get(&n.name).is_some_and(|o| ctx.expected.check(o))
        })
        .count();
    for e in &errors {
        eprintln!("  fleetfix node error: {e}");
    }
    Outcome { timed, hosts_ok }
}

fn run_pssh(ctx: &Ctx, program: &Path) -> Outcome {
    let work = ctx.fleet.dir().join("bench-pssh");
    fs::create_dir_all(&work).expect("work dir");
    let hosts = work.join("hosts");
    let mut h = String::new();
    for n in ctx.fleet.nodes() {
        let _ = writeln!(h, "{}:{}", n.addr, n.port);
    }
    write(&hosts, &h);
    let x = ssh_verify_opts(ctx)
        .iter()
        .map(|s| sh_quote(s))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = String::from("rc=0\n");
    for (k, (_, run)) in STEPS.iter().enumerate() {
        let _ = writeln!(
            script,
            "{} -h {} -l root -x {} -p {} -t 300 -o {} {} || rc=$?",
            sh_quote(&path_str(program)),
            sh_quote(&path_str(&hosts)),
            sh_quote(&x),
            ctx.n,
            sh_quote(&path_str(&work.join(format!("out{}", k + 1)))),
            sh_quote(run)
        );
    }
    script.push_str("exit $rc\n");
    let script_path = work.join("run.sh");
    write(&script_path, &script);
    let job = Job {
        program: PathBuf::from("/bin/sh"),
        args: vec![path_str(&script_path)],
        env: vec![],
        control_dirs: vec![],
    };
    let timed = run_timed(&work, ctx.fleet.dir(), ctx.sshd, &job);
    let hosts_ok = ctx
        .fleet
        .nodes()
        .iter()
        .filter(|n| {
            let outs: Vec<Option<String>> = (1..=STEPS.len())
                .map(|k| {
                    fs::read_to_string(
                        work.join(format!("out{k}"))
                            .join(format!("{}:{}", n.addr, n.port)),
                    )
                    .ok()
                })
                .collect();
            ctx.expected.check(&outs)
        })
        .count();
    Outcome { timed, hosts_ok }
}

fn run_xargs(ctx: &Ctx, program: &Path) -> Outcome {
    let work = ctx.fleet.dir().join("bench-xargs");
    let ctl = work.join("ctl");
    let out = work.join("out");
    fs::create_dir_all(&ctl).expect("ctl dir");
    fs::create_dir_all(&out).expect("out dir");
    let hosts = work.join("hosts");
    let mut h = String::new();
    for n in ctx.fleet.nodes() {
        let _ = writeln!(h, "{} {} {}", n.name, n.addr, n.port);
    }
    write(&hosts, &h);
    // One ControlMaster per host (ControlPath ctl/NAME); the first ssh call
    // becomes the persistent master, the other two go through it.
    let opts = ssh_verify_opts(ctx)
        .iter()
        .map(|s| sh_quote(s))
        .collect::<Vec<_>>()
        .join(" ");
    let mut host_sh = format!(
        "name=$1 addr=$2 port=$3\n\
         set -- {opts} -o ConnectTimeout=30 -o ControlMaster=auto -o ControlPersist=60 \
         -o ControlPath={}/\"$name\" -p \"$port\" -l root \"$addr\"\n",
        sh_quote(&path_str(&ctl))
    );
    let chain: Vec<String> = STEPS
        .iter()
        .enumerate()
        .map(|(k, (_, run))| {
            format!(
                "ssh \"$@\" {} >{}/\"$name\".{} 2>>{}/\"$name\".err",
                sh_quote(run),
                sh_quote(&path_str(&out)),
                k + 1,
                sh_quote(&path_str(&out))
            )
        })
        .collect();
    host_sh.push_str(&chain.join(" &&\n  "));
    host_sh.push('\n');
    let host_script = work.join("host.sh");
    write(&host_script, &host_sh);
    let job = Job {
        program: PathBuf::from("/bin/sh"),
        args: vec![
            "-c".into(),
            format!(
                "exec {} -P {} -L 1 /bin/sh {} < {}",
                sh_quote(&path_str(program)),
                ctx.n,
                sh_quote(&path_str(&host_script)),
                sh_quote(&path_str(&hosts))
            ),
        ],
        env: vec![],
        control_dirs: vec![ctl],
    };
    let timed = run_timed(&work, ctx.fleet.dir(), ctx.sshd, &job);
    let hosts_ok = ctx
        .fleet
        .nodes()
        .iter()
        .filter(|n| {
            let outs: Vec<Option<String>> = (1..=STEPS.len())
                .map(|k| fs::read_to_string(out.join(format!("{}.{k}", n.name))).ok())
                .collect();
            ctx.expected.check(&outs)
        })
        .count();
    Outcome { timed, hosts_ok }
}

const ANSIBLE_CALLBACK: &str = r#"import json
import sys

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    """One JSON line per task result (host, task, status, rc, stdout)."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "benchjson"

    def _emit(self, result, status):
        r = result.result if hasattr(result, "result") else result._result
        host = result.host if hasattr(result, "host") else result._host
        task = result.task if hasattr(result, "task") else result._task
        line = {
            "host": host.get_name(),
            "task": task.get_name(),
            "status": status,
            "rc": r.get("rc"),
            "stdout": r.get("stdout", ""),
            "msg": str(r.get("msg", "")) if status != "ok" else "",
        }
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    def v2_runner_on_ok(self, result):
        self._emit(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._emit(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._emit(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._emit(result, "skipped")
"#;

fn run_ansible(ctx: &Ctx, program: &Path) -> Outcome {
    let work = ctx.fleet.dir().join("bench-ansible");
    let cb = work.join("callbacks");
    let cp = work.join("cp");
    fs::create_dir_all(&cb).expect("callback dir");
    fs::create_dir_all(&cp).expect("control path dir");
    fs::create_dir_all(work.join("tmp")).expect("tmp dir");
    write(&cb.join("benchjson.py"), ANSIBLE_CALLBACK);
    let mut inv = String::from("[fleet]\n");
    for n in ctx.fleet.nodes() {
        let _ = writeln!(
            inv,
            "{} ansible_host={} ansible_port={}",
            n.name, n.addr, n.port
        );
    }
    let _ = write!(
        inv,
        "\n[fleet:vars]\nansible_user=root\nansible_connection=ssh\n\
         ansible_ssh_private_key_file={}\n\
         ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes'\n",
        path_str(ctx.fleet.client_key()),
        path_str(ctx.fleet.known_hosts())
    );
    let inventory = work.join("inventory.ini");
    write(&inventory, &inv);
    let mut pb = String::from("- hosts: fleet\n  gather_facts: false\n  tasks:\n");
    for (name, run) in STEPS {
        let _ = write!(pb, "    - name: {name}\n      raw: {}\n", json!(run));
    }
    let playbook = work.join("bench.yml");
    write(&playbook, &pb);
    let env = [
        ("ANSIBLE_CALLBACK_PLUGINS", path_str(&cb)),
        ("ANSIBLE_STDOUT_CALLBACK", "benchjson".into()),
        ("ANSIBLE_HOST_KEY_CHECKING", "True".into()),
        ("ANSIBLE_SSH_CONTROL_PATH_DIR", path_str(&cp)),
        ("ANSIBLE_LOCAL_TEMP", path_str(&work.join("tmp"))),
        ("ANSIBLE_RETRY_FILES_ENABLED", "False".into()),
        ("ANSIBLE_DEPRECATION_WARNINGS", "False".into()),
        ("ANSIBLE_NOCOLOR", "1".into()),
        ("ANSIBLE_TIMEOUT", "30".into()),
    ];
    let job = Job {
        program: program.to_path_buf(),
        args: vec![
            "-i".into(),
            path_str(&inventory),
            "-f".into(),
            ctx.n.to_string(),
            path_str(&playbook),
        ],
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        control_dirs: vec![cp],
    };
    let timed = run_timed(&work, ctx.fleet.dir(), ctx.sshd, &job);
    let mut outs: HashMap<String, Vec<Option<String>>> = HashMap::new();
    for line in timed.stdout.lines() {
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let (Some(host), Some(task)) = (ev["host"].as_str(), ev["task"].as_str()) else {
            continue;
        };
        if ev["status"] != "ok" || ev["rc"] != 0 {
            continue;
        }
        if let Some(idx) = STEPS.iter().position(|(name, _)| *name == task) {
            let v = outs
                .entry(host.to_string())
                .or_insert_with(|| vec![None; STEPS.len()]);
            v[idx] = ev["stdout"].as_str().map(str::to_string);
        }
    }
    let hosts_ok = ctx
        .fleet
        .nodes()
        .iter()
        .filter(|n| outs.get(&n.name).is_some_and(|o| ctx.expected.check(o)))
        .count();
    Outcome { timed, hosts_ok }
}

fn run_pyinfra(ctx: &Ctx, program: &Path) -> Outcome {
    let work = ctx.fleet.dir().join("bench-pyinfra");
    let out = work.join("out");
    fs::create_dir_all(&out).expect("out dir");
    let mut inv = format!(
        "_common = {{\"ssh_user\": \"root\", \"ssh_key\": {}, \"ssh_known_hosts_file\": {}, \
         \"ssh_strict_host_key_checking\": \"yes\"}}\n\nfleet = [\n",
        json!(path_str(ctx.fleet.client_key())),
        json!(path_str(ctx.fleet.known_hosts()))
    );
    for n in ctx.fleet.nodes() {
        let _ = writeln!(
            inv,
            "    ({}, dict(_common, ssh_hostname={}, ssh_port={})),",
            json!(n.name),
            json!(n.addr.to_string()),
            n.port
        );
    }
    inv.push_str("]\n");
    let inventory = work.join("inventory.py");
    write(&inventory, &inv);
    // Three server.shell operations, then a local python.call that records
    // each host's outputs for checking (no SSH traffic).
    let mut deploy = format!(
        "import json\nimport os\n\nfrom pyinfra import host\nfrom pyinfra.operations import python, server\n\n\
         OUT = {}\n",
        json!(path_str(&out))
    );
    let mut names = Vec::new();
    for (k, (name, run)) in STEPS.iter().enumerate() {
        let _ = writeln!(
            deploy,
            "r{k} = server.shell(name={}, commands=[{}])",
            json!(name),
            json!(run)
        );
        names.push(format!("r{k}"));
    }
    let _ = write!(
        deploy,
        "\n\ndef _record():\n    outs = [r.stdout for r in ({},)]\n    \
         with open(os.path.join(OUT, host.name + \".json\"), \"w\") as f:\n        \
         json.dump(outs, f)\n\n\npython.call(name=\"record\", function=_record)\n",
        names.join(", ")
    );
    let deploy_path = work.join("deploy.py");
    write(&deploy_path, &deploy);
    let job = Job {
        program: program.to_path_buf(),
        args: vec![
            "-y".into(),
            "--parallel".into(),
            ctx.n.to_string(),
            path_str(&inventory),
            path_str(&deploy_path),
        ],
        env: vec![("PYTHONDONTWRITEBYTECODE".into(), "1".into())],
        control_dirs: vec![],
    };
    let timed = run_timed(&work, ctx.fleet.dir(), ctx.sshd, &job);
    let hosts_ok = ctx
        .fleet
        .nodes()
        .iter()
        .filter(|n| {
            let Ok(text) = fs::read_to_string(out.join(format!("{}.json", n.name))) else {
                return false;
            };
            let Ok(Value::Array(vals)) = serde_json::from_str::<Value>(&text) else {
                return false;
            };
            let outs: Vec<Option<String>> = vals
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect();
            ctx.expected.check(&outs)
        })
        .count();
    Outcome { timed, hosts_ok }
}

// ------------------------------------------------------------ report

struct Row {
    tool: String,
    n: usize,
    wall_s: f64,
    cpu_s: f64,
    rss_mb: f64,
    sshd_cpu_s: f64,
    hosts_ok: usize,
    notes: Vec<String>,
    json: Value,
}

fn row_of(tool: &str, n: usize, o: &Outcome) -> Row {
    let t = &o.timed;
    let cpu_s = t.user_s + t.sys_s + t.orphan_cpu_s;
    let rss_kb = t.maxrss_kb.max(t.orphan_maxrss_kb);
    let rss_mb = rss_kb as f64 / 1024.0;
    let mut notes = Vec::new();
    if t.timed_out {
        notes.push(format!("timed out after {:?}", bench_timeout()));
    }
    if let Some(s) = &t.signal {
        notes.push(s.clone());
    }
    match t.exit {
        Some(0) => {}
        Some(c) => notes.push(format!("exit {c}")),
        None => notes.push("no exit status".into()),
    }
    if !t.sshd_idle {
        notes.push("sshd sessions still open: sshd CPU undercounted".into());
    }
    if o.hosts_ok < n {
        let tail: String = {
            let err = t.stderr.trim();
            let start = err
                .char_indices()
                .rev()
                .nth(400)
                .map(|(i, _)| i)
                .unwrap_or(0);
            err[start..].to_string()
        };
        if !tail.is_empty() {
            notes.push(format!("stderr tail: {tail}"));
        }
    }
    let json = json!({
        "tool": tool,
        "nodes": n,
        "wall_s": round3(t.wall_s),
        "client_cpu_s": round3(cpu_s),
        "client_user_s": round3(t.user_s),
        "client_sys_s": round3(t.sys_s),
        "orphan_cpu_s": round3(t.orphan_cpu_s),
        "orphans_reaped": t.orphans,
        "peak_rss_mb": round3(rss_mb),
        "sshd_cpu_s": round3(t.sshd_cpu_s),
        "hosts_ok": o.hosts_ok,
        "hosts_total": n,
        "exit_code": t.exit,
        "timed_out": t.timed_out,
    });
    Row {
        tool: tool.to_string(),
        n,
        wall_s: t.wall_s,
        cpu_s,
        rss_mb,
        sshd_cpu_s: t.sshd_cpu_s,
        hosts_ok: o.hosts_ok,
        notes,
        json,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn format_row(r: &Row) -> String {
    format!(
        "{:<9} {:>5} {:>8.2} {:>13.2} {:>12.1} {:>11.2} {:>9}",
        r.tool,
        r.n,
        r.wall_s,
        r.cpu_s,
        r.rss_mb,
        r.sshd_cpu_s,
        format!("{}/{}", r.hosts_ok, r.n)
    )
}

fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<9} {:>5} {:>8} {:>13} {:>12} {:>11} {:>9}\n",
        "tool", "N", "wall s", "client CPU s", "peak RSS MB", "sshd CPU s", "hosts ok"
    );
    for r in rows {
        s.push_str(&format_row(r));
        s.push('\n');
    }
    s
}

fn jsonl_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
            }
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench-fleet.jsonl")
}

// ------------------------------------------------------------ main

fn loadavg_1m() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let want = hard.min(1 << 20);
        if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_err() {
            eprintln!("note: could not raise RLIMIT_NOFILE from {soft} to {want}");
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("fleet bench: must run as root (the sshd harness needs it)");
        std::process::exit(2);
    }
    if !is_executable(Path::new(TIME)) {
        eprintln!("fleet bench: {TIME} (GNU time) is required: apt-get install time");
        std::process::exit(2);
    }
    raise_nofile();
    // ssh ControlPersist masters (xargs, ansible) outlive the tool; as a
    // subreaper we inherit them, so their CPU can be counted and they can
    // be stopped by pid.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("note: PR_SET_CHILD_SUBREAPER failed ({e}): detached ssh masters not counted");
    }

    let mut tools: Vec<(String, PathBuf)> = Vec::new();
    for tool in &args.tools {
        match locate(tool) {
            Ok(p) => {
                eprintln!("tool {tool}: {}", p.display());
                tools.push((tool.clone(), p));
            }
            Err(why) => eprintln!("note: skipping {tool}: {why}"),
        }
    }
    if tools.is_empty() {
        eprintln!("fleet bench: no tool to run");
        std::process::exit(1);
    }
    let mut check = Vec::new();
    for (tool, program) in tools.iter().filter(|(t, _)| t.starts_with("fleetfix")) {
        if args.check_nodes == 0 {
            break;
        }
        match time_check(program, args.check_nodes) {
            Ok(timings) => {
                for mut c in timings {
                    c.tool = tool.clone();
                    eprintln!("{}", c.line());
                    check.push(c);
                }
            }
            Err(why) => {
                eprintln!("fleet bench: {tool} check failed: {why}");
                std::process::exit(1);
            }
        }
    }
    let expected = Expected::local();
    let mut rows: Vec<Row> = Vec::new();
    let jsonl = jsonl_path();
    if let Some(dir) = jsonl.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let mut jsonl_file =
        File::create(&jsonl).unwrap_or_else(|e| panic!("create {}: {e}", jsonl.display()));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());

    for &n in &args.nodes {
        let started = Instant::now();
        let fleet = Fleet::builder().nodes(n).start();
        let sshd = Sshd::of(&fleet);
        eprintln!(
            "fleet of {n} nodes up in {:.1}s ({} sshd processes)",
            started.elapsed().as_secs_f64(),
            sshd.listeners.len()
        );
        let ctx = Ctx {
            fleet: &fleet,
            sshd: &sshd,
            expected: &expected,
            n,
        };
        // Repeats interleave the tools, so a drift of the machine's speed
        // falls on all of them alike.
        for (tool, program) in (0..args.repeat).flat_map(|_| tools.iter()) {
            let load_before = loadavg_1m();
            eprintln!("running {tool} on {n} nodes (load average {load_before:.1}) ...");
            if load_before > cpus as f64 {
                eprintln!(
                    "  note: the machine is busy (load {load_before:.1} > {cpus} CPUs): timings are noisy"
                );
            }
            let outcome = match tool.as_str() {
                "fleetfix" | "fleetfix-base" => run_fleetfix(&ctx, program),
                "pssh" => run_pssh(&ctx, program),
                "xargs" => run_xargs(&ctx, program),
                "ansible" => run_ansible(&ctx, program),
                "pyinfra" => run_pyinfra(&ctx, program),
                _ => unreachable!("tools are validated"),
            };
            let mut row = row_of(tool, n, &outcome);
            if let Value::Object(m) = &mut row.json {
                m.insert("cpus".into(), json!(cpus));
                m.insert("loadavg_1m_before".into(), json!(load_before));
                m.insert("notes".into(), json!(row.notes));
            }
            eprintln!("{}", format_row(&row));
            for note in &row.notes {
                eprintln!("  note: {note}");
            }
            let _ = writeln!(jsonl_file, "{}", row.json);
            rows.push(row);
        }
        drop(fleet); // stops this size's sshds before the next one starts
        reap_stray_zombies();
    }

    for c in &check {
        let _ = writeln!(
            jsonl_file,
            "{}",
            json!({"tool": format!("{} check", c.tool), "playbook": c.playbook, "n": c.nodes, "median_ms": round3(c.median()), "ms": c.ms.iter().map(|&x| round3(x)).collect::<Vec<_>>()})
        );
    }
    println!();
    for c in &check {
        println!("{}", c.line());
    }
    if !check.is_empty() {
        println!();
    }
    if rows.is_empty() {
        return;
    }
    print!("{}", table(&rows));
    println!(
        "(client CPU = user+sys of the tool and all its processes, incl. ssh masters; \
         peak RSS = largest single client process; sshd CPU = the fleet's sshd listeners \
         and their sessions, incl. the remote commands; {cpus} CPUs)"
    );
    println!("JSON lines: {}", jsonl.display());
    let failed: Vec<String> = rows
        .iter()
        .filter(|r| r.hosts_ok < r.n)
        .map(|r| format!("{} N={} ({}/{})", r.tool, r.n, r.hosts_ok, r.n))
        .collect();
    if !failed.is_empty() {
        println!("WARNING: not every host succeeded: {}", failed.join(", "));
        std::process::exit(1);
    }
}
