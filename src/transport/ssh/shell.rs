//! What the transport says to the node's `sh`: the start of every command,
//! the step shell's frames, and the end marks it reads back.
//!
//! **The start.** Every exec line runs [`boot`] first, through whatever
//! login shell the account has. It makes the command the leader of a
//! process group of its own (`setsid` where the server did not: dropbear
//! and tinysshd leave it in theirs), so ending a step can signal that group
//! without touching the server. Then it prints a start mark on stdout and
//! a header line on stderr: its pid and group, and for the step shell
//! whether it is usable and whether it took the node lock. What a login
//! shell prints before (a chatty `~/.bashrc`) precedes those marks and is
//! dropped; a login shell that refuses (`nologin`) never prints them, so
//! its words and exit status are its own.
//!
//! **The step shell.** One `sh` per connection reads every step from its
//! stdin. A step then costs one packet out and its output back, where a
//! channel of its own costs an open, an exec, an EOF, an exit status and a
//! close each way, and a fork and exec of the login shell on the node. A
//! step is one command of the shell's input:
//!
//! ```sh
//! fleetfix_stop=; printf %s 'SCRIPT' | SHELL -s 2>&3 3>&- 9<&-; fleetfix_s=$?; printf '\037MARK %d\n' "$fleetfix_s"; printf '\037MARK\n' >&3
//! ```
//!
//! The script reaches the node over the channel's stdin and, since
//! `printf` is a builtin of the shell (checked when it starts), on no
//! command line. `MARK` is random per connection; a step's output is what
//! precedes it on each stream. The shell's own stderr is `/dev/null` (fd 3
//! is the channel's), so a job it reports killed leaves no trace in the
//! step's output; fd 9 holds the node lock and no step inherits it.
//!
//! Read-only steps may be sent ahead, behind the step before them: the
//! shell reads each when the one before ends, so it costs no round trip.
//! Such a step runs only if the exit status of the one before is one its
//! expectation accepts, and no stop was asked for (the shell traps TERM and
//! USR1 to set `fleetfix_stop`); otherwise it prints `skip` at its mark.

use crate::job::StepRef;
use crate::support::quote::shell_quote;
use crate::transport::{Ahead, ExecRequest};

/// Scripts larger than this (uploads) get a channel of their own, where
/// they stream instead of sitting whole in the shell's memory.
const MAX_SCRIPT: usize = 256 * 1024;

/// The separator before a mark (ASCII unit separator).
const SEP: u8 = 0x1f;

/// Exit status of a step shell that did not start: its `printf` is not a
/// builtin (and there is no node lock to hold), or the lock is held.
pub(super) const UNFIT: u32 = 97;
pub(super) const LOCKED: u32 = 75;

/// The first line of the step shell's input: the traps that stop the
/// steps queued in it.
pub(super) const TRAPS: &[u8] = b"trap 'fleetfix_stop=1' TERM USR1\n";

/// The node lock a run takes in each step shell (SPEC section 6).
#[derive(Debug, Clone)]
pub(crate) struct NodeLock {
    /// The lock file's name on the node, in `$FLEETFIX_LOCK_DIR` (the
    /// node's environment) or `/tmp`; `{node}` stands for the node's name.
    pub file: String,
    /// One line naming the holder (run id, user, runner host, start), for
    /// a run that finds the lock busy.
    pub holder: String,
    /// How long to wait for a busy lock (`--lock-wait`), in seconds.
    pub wait_secs: Option<u64>,
}

impl NodeLock {
    /// The lock of node `name`.
    pub(crate) fn on(&self, name: &str) -> NodeLock {
        NodeLock {
            file: self.file.replace("{node}", name),
            holder: self.holder.clone(),
            wait_secs: self.wait_secs,
        }
    }
}

/// A fresh random mark for one connection.
pub(super) fn new_mark() -> String {
    format!("fleetfix-{:032x}", rand::random::<u128>())
}

/// The exec line: `tail` runs as the leader of a process group of its
/// own, after the start mark (stdout) and a header (stderr) whose field
/// after the pid and group is `fields`, a shell word.
fn boot(mark: &str, setup: &str, fields: &str, tail: &str) -> String {
    // `eval "$0"` keeps the text once on the line; `$1` counts the setsid
    // re-exec. Reading our stat with the builtin `read` costs no fork.
    let main = format!(
        "r=$1; g=; if read -r s 2>/dev/null </proc/$$/stat; then s=${{s##*) }}; set -- $s; g=$3; fi\n\
         if [ \"$r\" = 0 ] && [ \"$g\" != $$ ] && command -v setsid >/dev/null 2>&1; then exec setsid sh -c 'eval \"$0\"' \"$0\" 1; fi\n\
         {setup}\
         printf '\\037{mark} start\\n'; printf '\\037{mark} pid %s %s %s\\n' $$ \"${{g:--}}\" {fields} >&2\n\
         {tail}"
    );
    format!("sh -c 'eval \"$0\"' {} 0", shell_quote(&main))
}

/// The exec line of a command with a channel of its own.
pub(super) fn channel_command(req: &ExecRequest, mark: &str) -> String {
    boot(mark, "", "''", &format!("exec {}", req.shell_command()))
}

/// The exec line of the step shell: unless its `printf` is not a builtin
/// (found with no PATH to search; an external one would show the script on
/// its command line) or `lock` is busy, it becomes `sh` reading steps.
/// Without a builtin it exits [`UNFIT`], or holds the lock with `cat`
/// while each step gets a channel of its own.
pub(super) fn step_shell_command(mark: &str, lock: Option<&NodeLock>) -> String {
    let mut setup =
        String::from("u=fit; PATH=/nonexistent printf '' 2>/dev/null || u=unfit\nl=-\n");
    if let Some(lock) = lock {
        // flock(1) on a descriptor of the shell: the kernel releases it when
        // the shell ends with the connection, however that happens.
        setup.push_str(&format!(
            "F=\"${{FLEETFIX_LOCK_DIR:-/tmp}}\"/{file}\n\
             if command -v flock >/dev/null 2>&1; then\n\
             [ -e \"$F\" ] || (umask 0; : >>\"$F\") 2>/dev/null\n\
             if [ -f \"$F\" ] && [ ! -L \"$F\" ] && [ -r \"$F\" ]; then exec 9<\"$F\"\n\
             if flock {how} 9; then l=ok; printf '%s\\n' {holder} 2>/dev/null >\"$F\" || :\n\
             elif [ $? = 1 ]; then h=; read -r h <\"$F\"; l=\"busy $h\"\n\
             else l='none flock could not lock the file'; fi\n\
             else l='none cannot open the lock file'; fi\n\
             else l='none no flock command'; fi\n",
            file = shell_quote(&lock.file),
            holder = shell_quote(&lock.holder),
            how = match lock.wait_secs {
                Some(secs) => format!("-w {secs}"),
                None => "-n".to_string(),
            },
        ));
    }
    let tail = format!(
        "case $l in busy*) exit {LOCKED};; esac\n\
         if [ $u = unfit ]; then case $l in ok) exec cat >/dev/null;; esac; exit {UNFIT}; fi\n\
         exec sh -s 3>&2 2>/dev/null"
    );
    boot(mark, &setup, "\"$u $l\"", &tail)
}

/// A step in the shell's input, or about to be: which step, its frame,
/// and for a step sent ahead, the exit codes of the step before that let
/// it run.
#[derive(Debug)]
pub(super) struct Framed {
    pub step: Option<StepRef>,
    /// The step's own frame: what it is, wherever it goes.
    pub frame: Vec<u8>,
    pub after: Option<Vec<i32>>,
}

impl Framed {
    /// The same step with the same script (sent ahead or not).
    pub(super) fn same(&self, other: &Framed) -> bool {
        self.step == other.step && self.frame == other.frame
    }

    /// What the shell reads for it.
    pub(super) fn input(&self, mark: &str) -> std::borrow::Cow<'_, [u8]> {
        match &self.after {
            None => self.frame.as_slice().into(),
            Some(codes) => conditional(&self.frame, codes, mark).into(),
        }
    }
}

/// What a fresh frame begins with: no stop asked for yet.
const FRESH: &str = "fleetfix_stop=; ";

/// The step as the shell's input, or `None` when it needs a channel of its
/// own (input that is not text, or is large).
pub(super) fn frame(req: &ExecRequest, mark: &str) -> Option<Vec<u8>> {
    let script = std::str::from_utf8(&req.stdin).ok()?;
    if script.len() > MAX_SCRIPT || script.contains('\0') {
        return None;
    }
    Some(
        format!(
            "{FRESH}printf %s {} | {} 2>&3 3>&- 9<&-; fleetfix_s=$?; printf '\\037{mark} %d\\n' \"$fleetfix_s\"; printf '\\037{mark}\\n' >&3\n",
            shell_quote(script),
            req.shell_command()
        )
        .into_bytes(),
    )
}

/// `frame` sent ahead: it runs only if the step before it exited with one
/// of `codes` and no stop was asked for; otherwise it prints `skip`.
fn conditional(frame: &[u8], codes: &[i32], mark: &str) -> Vec<u8> {
    let run = &frame[FRESH.len()..frame.len() - 1];
    let pattern = codes
        .iter()
        .map(|c| format!(":{c}"))
        .collect::<Vec<_>>()
        .join("|");
    let mut out = Vec::with_capacity(frame.len() + 120);
    out.extend_from_slice(format!("case $fleetfix_stop:$fleetfix_s in {pattern}) ").as_bytes());
    out.extend_from_slice(run);
    out.extend_from_slice(
        format!(
            ";; *) fleetfix_s=x; printf '\\037{mark} skip\\n'; printf '\\037{mark}\\n' >&3;; esac\n"
        )
        .as_bytes(),
    );
    out
}

/// At most this many bytes of steps are sent ahead at once: they sit in
/// the channel's window and the shell's input until their turn.
const AHEAD_BYTES: usize = 64 * 1024;

/// The steps of `next` that may be sent ahead: the leading ones that are a
/// step's own command, may run after some exit status of the step before,
/// and fit the shell and, together, [`AHEAD_BYTES`].
pub(super) fn frames_ahead(next: &[Ahead], mark: &str) -> Vec<Framed> {
    let mut total = 0;
    next.iter()
        .map_while(|a| {
            if a.after.is_empty() {
                return None;
            }
            Some(Framed {
                step: Some(a.req.step?),
                frame: frame(&a.req, mark)?,
                after: Some(a.after.clone()),
            })
        })
        .take_while(|f| {
            total += f.frame.len();
            total <= AHEAD_BYTES
        })
        .collect()
}

/// The header a command prints on stderr when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Header {
    pub pid: u32,
    /// Its process group, when the node has `/proc` to tell.
    pub pgid: Option<u32>,
    /// The rest of the line: `fit|unfit` and the lock for a step shell.
    pub rest: String,
}

impl Header {
    fn parse(line: &str) -> Option<Header> {
        let mut words = line.splitn(4, ' ');
        if words.next()? != "pid" {
            return None;
        }
        let pid = words.next()?.parse().ok()?;
        let pgid = words.next()?.parse().ok();
        Some(Header {
            pid,
            pgid,
            rest: words.next().unwrap_or_default().to_string(),
        })
    }

    /// The command leads a process group of its own: ending it may signal
    /// the group. Otherwise (no `setsid`, no `/proc`) its process tree.
    pub(super) fn leads_group(&self) -> bool {
        self.pgid == Some(self.pid)
    }

    /// The step shell has a builtin `printf`.
    pub(super) fn fit(&self) -> bool {
        self.rest.split(' ').next() == Some("fit")
    }

    /// What the step shell says of the node lock.
    pub(super) fn lock(&self) -> LockState {
        let lock = self.rest.split_once(' ').map(|(_, l)| l).unwrap_or("-");
        match lock.split_once(' ').unwrap_or((lock, "")) {
            ("ok", _) => LockState::Held,
            ("busy", holder) => LockState::Busy(holder.to_string()),
            ("none", why) => LockState::Unavailable(why.to_string()),
            _ => LockState::NotAsked,
        }
    }
}

/// The node lock as the step shell found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LockState {
    NotAsked,
    Held,
    /// Held by another run; the holder's line.
    Busy(String),
    /// The node cannot lock (no `flock`): the run goes on without.
    Unavailable(String),
}

/// Finds where a command starts on one stream: what comes before the
/// start mark (stdout) or the header (stderr) is the login shell's.
pub(super) struct Preamble {
    needle: Vec<u8>,
    /// The word that ends the needle begins the line kept.
    word: usize,
    held: Vec<u8>,
    /// The rest of the mark's line, once complete.
    line: Option<String>,
}

impl Preamble {
    pub(super) fn stdout(mark: &str) -> Self {
        Self::new(mark, "start")
    }

    pub(super) fn stderr(mark: &str) -> Self {
        Self::new(mark, "pid")
    }

    fn new(mark: &str, word: &str) -> Self {
        let mut needle = vec![SEP];
        needle.extend_from_slice(mark.as_bytes());
        needle.push(b' ');
        needle.extend_from_slice(word.as_bytes());
        Preamble {
            needle,
            word: word.len(),
            held: Vec::new(),
            line: None,
        }
    }

    /// Takes bytes until the mark's line is complete; returns what follows
    /// it (the command's own output) once it is.
    pub(super) fn feed(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if self.line.is_some() {
            return Some(data.to_vec());
        }
        self.held.extend_from_slice(data);
        let at = find(&self.held, &self.needle)?;
        let from = at + self.needle.len() - self.word;
        let nl = self.held[from..].iter().position(|&b| b == b'\n')? + from;
        self.line = Some(String::from_utf8_lossy(&self.held[from..nl]).into_owned());
        let noise = &self.held[..at];
        if !noise.is_empty() {
            tracing::debug!(
                "dropped {} bytes the login shell printed before the command",
                noise.len()
            );
        }
        let rest = self.held.split_off(nl + 1);
        self.held = Vec::new();
        Some(rest)
    }

    pub(super) fn found(&self) -> bool {
        self.line.is_some()
    }

    /// The header, once the stderr mark's line is complete.
    pub(super) fn header(&self) -> Option<Header> {
        Header::parse(self.line.as_deref()?)
    }

    /// Everything seen while the mark never came: the login shell's words.
    pub(super) fn unclaimed(&self) -> &[u8] {
        if self.line.is_some() { &[] } else { &self.held }
    }
}

/// Finds the end of a step on one stream of the shell.
pub(super) struct EndScan {
    /// `SEP` and the mark.
    needle: Vec<u8>,
    /// Bytes that may begin the mark, or (once found) what follows it.
    held: Vec<u8>,
    found: bool,
    /// What stood between the mark and its newline, once complete.
    end: Option<String>,
    /// Bytes after the end: the next step's (or a background process's).
    after: Vec<u8>,
}

impl EndScan {
    pub(super) fn new(mark: &str) -> Self {
        let mut needle = vec![SEP];
        needle.extend_from_slice(mark.as_bytes());
        EndScan {
            needle,
            held: Vec::new(),
            found: false,
            end: None,
            after: Vec::new(),
        }
    }

    /// Takes the stream's next bytes; the step's own go to `keep`. Bytes
    /// after the end are held for the next step ([`EndScan::after`]).
    pub(super) fn feed(&mut self, data: &[u8], keep: &mut impl FnMut(&[u8])) {
        if self.end.is_some() {
            self.after.extend_from_slice(data);
            return;
        }
        self.held.extend_from_slice(data);
        if !self.found {
            if let Some(pos) = find(&self.held, &self.needle) {
                keep(&self.held[..pos]);
                self.held.drain(..pos + self.needle.len());
                self.found = true;
            } else {
                let mine = self.held.len() - partial_suffix(&self.held, &self.needle);
                keep(&self.held[..mine]);
                self.held.drain(..mine);
                return;
            }
        }
        if let Some(nl) = self.held.iter().position(|&b| b == b'\n') {
            self.end = Some(String::from_utf8_lossy(&self.held[..nl]).trim().to_string());
            self.after = self.held.split_off(nl + 1);
            self.held = Vec::new();
        }
    }

    /// What came after the end on this stream, for the next step's scan.
    pub(super) fn after(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.after)
    }

    pub(super) fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// The exit code written after the mark (stdout's).
    pub(super) fn code(&self) -> Option<i32> {
        self.end.as_deref().and_then(|s| s.parse().ok())
    }

    /// The shell skipped this step (sent ahead behind a failure or a stop).
    pub(super) fn skipped(&self) -> bool {
        self.end.as_deref() == Some("skip")
    }

    /// What is still held when the stream stopped without its end.
    pub(super) fn rest(&mut self) -> Vec<u8> {
        if self.found {
            Vec::new()
        } else {
            std::mem::take(&mut self.held)
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The length of the longest end of `hay` that begins `needle`.
fn partial_suffix(hay: &[u8], needle: &[u8]) -> usize {
    let longest = hay.len().min(needle.len() - 1);
    (1..=longest)
        .rev()
        .find(|&k| hay[hay.len() - k..] == needle[..k])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(mark: &str, chunks: &[&[u8]]) -> (Vec<u8>, EndScan) {
        let mut scan = EndScan::new(mark);
        let mut kept = Vec::new();
        for c in chunks {
            scan.feed(c, &mut |b: &[u8]| kept.extend_from_slice(b));
        }
        (kept, scan)
    }

    #[test]
    fn output_without_a_final_newline_ends_at_the_mark() {
        let (kept, scan) = scan_all("M1", &[b"partial\x1fM1 3\n"]);
        assert_eq!(kept, b"partial");
        assert_eq!(scan.code(), Some(3));
    }

    #[test]
    fn a_mark_split_across_packets_is_found_and_never_kept() {
        let (kept, scan) = scan_all("MARK", &[b"out\n\x1fMA", b"R", b"K 0", b"\n"]);
        assert_eq!(kept, b"out\n");
        assert!(scan.ended());
        assert_eq!(scan.code(), Some(0));
    }

    #[test]
    fn a_lone_separator_or_a_near_miss_is_output() {
        let (kept, scan) = scan_all("MARK", &[b"a\x1fMAR", b"Z b\x1f", b"\x1fMARK\n"]);
        assert_eq!(kept, b"a\x1fMARZ b\x1f");
        assert!(scan.ended());
        assert_eq!(scan.code(), None);
    }

    #[test]
    fn bytes_after_the_end_are_held_for_the_next_step() {
        let (kept, mut scan) = scan_all("M", &[b"x\x1fM 1\nnext", b" step\x1fM skip\n"]);
        assert_eq!(kept, b"x");
        assert_eq!(scan.code(), Some(1));
        let after = scan.after();
        assert_eq!(after, b"next step\x1fM skip\n");
        let (kept, scan) = scan_all("M", &[&after]);
        assert_eq!(kept, b"next step");
        assert!(scan.skipped());
        assert_eq!(scan.code(), None);
    }

    #[test]
    fn an_unfinished_stream_gives_back_what_it_held() {
        let (kept, mut scan) = scan_all("MARK", &[b"tail\x1fMA"]);
        assert_eq!(kept, b"tail");
        assert!(!scan.ended());
        assert_eq!(scan.rest(), b"\x1fMA");
    }

    #[test]
    fn what_the_login_shell_prints_before_the_start_is_not_the_commands() {
        let mut out = Preamble::stdout("M");
        assert_eq!(out.feed(b"Welcome!\n\x1fM st"), None);
        assert_eq!(out.feed(b"art\nstep output"), Some(b"step output".to_vec()));
        assert_eq!(out.feed(b" more"), Some(b" more".to_vec()));
        let mut err = Preamble::stderr("M");
        assert_eq!(
            err.feed(b"bashrc: noise\n\x1fM pid 41 41 fit ok\nerr"),
            Some(b"err".to_vec())
        );
        let h = err.header().expect("header");
        assert_eq!((h.pid, h.pgid, h.fit()), (41, Some(41), true));
        assert!(h.leads_group());
        assert_eq!(h.lock(), LockState::Held);
        let mut refused = Preamble::stderr("M");
        assert_eq!(
            refused.feed(b"This account is currently not available.\n"),
            None
        );
        assert_eq!(
            refused.unclaimed(),
            b"This account is currently not available.\n"
        );
    }

    #[test]
    fn the_header_tells_group_fitness_and_lock() {
        let h = Header::parse("pid 7 3 unfit busy run 1, user a").expect("parses");
        assert!(!h.leads_group() && !h.fit());
        assert_eq!(h.lock(), LockState::Busy("run 1, user a".into()));
        let h = Header::parse("pid 7 - fit none no flock command").expect("parses");
        assert_eq!(h.pgid, None);
        assert_eq!(h.lock(), LockState::Unavailable("no flock command".into()));
        let h = Header::parse("pid 9 9 ").expect("channel header");
        assert_eq!(h.lock(), LockState::NotAsked);
    }

    fn request(script: &[u8]) -> ExecRequest {
        ExecRequest {
            shell: "sh".into(),
            sudo: false,
            stdin: script.to_vec(),
            timeout: None,
            output_cap: 1024,
            cancel: Default::default(),
            interrupt: Default::default(),
            step: Some(StepRef {
                on_failure: false,
                index: 1,
            }),
        }
    }

    fn ahead(req: ExecRequest) -> Ahead {
        Ahead {
            req,
            after: vec![0],
        }
    }

    #[test]
    fn steps_go_ahead_up_to_one_that_needs_a_channel_or_the_byte_limit() {
        let small = ahead(request(b"true\n"));
        let binary = ahead(request(&[0xff, 0]));
        let got = frames_ahead(&[small.clone(), small.clone(), binary, small.clone()], "M");
        assert_eq!(got.len(), 2);
        let mut guard = small.clone();
        guard.req.step = None;
        let got = frames_ahead(&[small.clone(), guard, small.clone()], "M");
        assert_eq!(got.len(), 1, "only a step's own command goes ahead");
        let mut never = small.clone();
        never.after.clear();
        assert!(
            frames_ahead(&[never], "M").is_empty(),
            "no exit lets it run"
        );
        let big = ahead(request(&vec![b'x'; AHEAD_BYTES / 2]));
        let got = frames_ahead(&[small.clone(), big.clone(), big, small], "M");
        assert_eq!(
            got.len(),
            2,
            "the second half-limit script would pass the limit"
        );
    }

    #[test]
    fn a_step_sent_ahead_runs_only_after_an_exit_that_passes_the_one_before() {
        let req = request(b"echo hi\n");
        let fresh = frame(&req, "M").expect("framed");
        let f = String::from_utf8(conditional(&fresh, &[0, 3], "M")).unwrap();
        assert!(
            f.starts_with("case $fleetfix_stop:$fleetfix_s in :0|:3) printf %s "),
            "{f}"
        );
        assert!(
            f.contains("*) fleetfix_s=x; printf '\\037M skip\\n'"),
            "{f}"
        );
        assert!(f.ends_with(";; esac\n"), "{f}");
        let fresh = String::from_utf8(fresh).unwrap();
        assert!(fresh.starts_with("fleetfix_stop=; printf %s "), "{fresh}");
        let run = &fresh["fleetfix_stop=; ".len()..fresh.len() - 1];
        assert!(
            f.contains(&format!(":3) {run};; *)")),
            "the same command: {f}"
        );
    }

    #[test]
    fn the_script_travels_quoted_and_the_shell_reads_it_from_stdin() {
        let req = ExecRequest {
            sudo: true,
            stdin: b"echo 'it''s'\nexit 3\n".to_vec(),
            step: None,
            ..request(b"")
        };
        let f = String::from_utf8(frame(&req, "M").expect("framed")).expect("utf-8");
        assert!(f.starts_with(
            "fleetfix_stop=; printf %s 'echo '\\''it'\\'''\\''s'\\''\nexit 3\n' | sudo -n -- sh -s 2>&3 3>&- 9<&-;"
        ));
        assert!(f.ends_with("printf '\\037M\\n' >&3\n"));
        let binary = ExecRequest {
            stdin: vec![0xff, 0],
            ..req
        };
        assert!(frame(&binary, "M").is_none());
    }
}
