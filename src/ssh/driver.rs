//! The node's step shell: one `sh` per connection reads every step from
//! its stdin. A step then costs one packet out and its output back, where a
//! channel of its own costs an open, an exec, an EOF, an exit status and a
//! close each way, and a fork and exec of the login shell on the node.
//!
//! A step is one command of the shell's input:
//!
//! ```sh
//! printf %s 'SCRIPT' | SHELL -s; printf '\037MARK %d\n' "$?"; printf '\037MARK\n' >&2
//! ```
//!
//! The script still reaches the node over the channel's stdin and, since
//! `printf` is a builtin of the shell (checked when it starts), on no
//! command line. The first step is queued with the shell's exec request and
//! leaves once sshd opens the channel's window (OpenSSH opens session
//! channels with none until the command starts). `MARK` is random per
//! connection; a step's output is what precedes it on each stream, and
//! what follows belongs to the next step.
//!
//! Read-only steps may be sent ahead, behind the step before them: the
//! shell reads each when the one before ends, so it costs no round trip.

use super::ExecRequest;
use crate::template::shell_quote;

/// Scripts larger than this (uploads) get a channel of their own, where
/// they stream instead of sitting whole in the shell's memory.
const MAX_SCRIPT: usize = 256 * 1024;

/// The separator before a mark (ASCII unit separator).
const SEP: u8 = 0x1f;

/// The exit status of a step shell that refused to start.
pub(super) const UNFIT: u32 = 97;

/// The exec line of the step shell: it reports its pid (a timeout ends its
/// process group) and becomes `sh`, unless its `printf` is not a builtin
/// (found with no PATH to search); an external one would show the script
/// on its command line. It exits [`UNFIT`] then, before reading any input.
pub(super) fn command(pid_marker: &str) -> String {
    let inner = format!(
        "echo \"{pid_marker}$$\" >&2; PATH=/nonexistent printf '' 2>/dev/null || exit {UNFIT}; exec sh"
    );
    format!("sh -c {}", shell_quote(&inner))
}

/// A fresh random mark for one connection.
pub(super) fn new_mark() -> String {
    format!("fleetfix-end-{:032x}", rand::random::<u128>())
}

/// The step as the shell's input, or `None` when it needs a channel of its
/// own (input that is not text, or is large).
pub(super) fn frame(req: &ExecRequest, mark: &str) -> Option<Vec<u8>> {
    let script = std::str::from_utf8(&req.stdin).ok()?;
    if script.len() > MAX_SCRIPT || script.contains('\0') {
        return None;
    }
    Some(
        format!(
            "printf %s {} | {}; printf '\\037{mark} %d\\n' \"$?\"; printf '\\037{mark}\\n' >&2\n",
            shell_quote(script),
            req.shell_command()
        )
        .into_bytes(),
    )
}

/// At most this many bytes of steps are sent ahead at once: they sit in
/// the channel's window and the shell's input until their turn.
const AHEAD_BYTES: usize = 64 * 1024;

/// A step in the shell's input, or about to be: which step, and its frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Framed {
    pub step: Option<u64>,
    pub frame: Vec<u8>,
}

/// The steps of `next` that may be sent ahead: the leading ones that are a
/// step's own command and fit the shell and, together, [`AHEAD_BYTES`].
pub(super) fn frames_ahead(next: &[ExecRequest], mark: &str) -> Vec<Framed> {
    let mut total = 0;
    next.iter()
        .map_while(|req| {
            Some(Framed {
                step: Some(req.step?),
                frame: frame(req, mark)?,
            })
        })
        .take_while(|f| {
            total += f.frame.len();
            total <= AHEAD_BYTES
        })
        .collect()
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

    /// The mark was seen (its line may be unfinished).
    pub(super) fn found(&self) -> bool {
        self.found
    }

    pub(super) fn ended(&self) -> bool {
        self.end.is_some()
    }

    /// The exit code written after the mark (stdout's).
    pub(super) fn code(&self) -> Option<i32> {
        self.end.as_deref().and_then(|s| s.parse().ok())
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
        let (kept, mut scan) = scan_all("M", &[b"x\x1fM 1\nnext", b" step\x1fM 0\n"]);
        assert_eq!(kept, b"x");
        assert_eq!(scan.code(), Some(1));
        let after = scan.after();
        assert_eq!(after, b"next step\x1fM 0\n");
        let (kept, scan) = scan_all("M", &[&after]);
        assert_eq!(kept, b"next step");
        assert_eq!(scan.code(), Some(0));
    }

    #[test]
    fn an_unfinished_stream_gives_back_what_it_held() {
        let (kept, mut scan) = scan_all("MARK", &[b"tail\x1fMA"]);
        assert_eq!(kept, b"tail");
        assert!(!scan.ended());
        assert_eq!(scan.rest(), b"\x1fMA");
    }

    fn request(script: &[u8]) -> ExecRequest {
        ExecRequest {
            shell: "sh".into(),
            sudo: false,
            stdin: script.to_vec(),
            timeout: None,
            output_cap: 1024,
            cancel: Default::default(),
            step: Some(1),
        }
    }

    #[test]
    fn steps_go_ahead_up_to_one_that_needs_a_channel_or_the_byte_limit() {
        let small = request(b"true\n");
        let binary = request(&[0xff, 0]);
        let ahead = frames_ahead(&[small.clone(), small.clone(), binary, small.clone()], "M");
        assert_eq!(ahead.len(), 2);
        let guard = ExecRequest {
            step: None,
            ..small.clone()
        };
        let ahead = frames_ahead(&[small.clone(), guard, small.clone()], "M");
        assert_eq!(ahead.len(), 1, "only a step's own command goes ahead");
        let big = request(&vec![b'x'; AHEAD_BYTES / 2]);
        let ahead = frames_ahead(&[small.clone(), big.clone(), big, small], "M");
        assert_eq!(
            ahead.len(),
            2,
            "the second half-limit script would pass the limit"
        );
    }

    #[test]
    fn the_script_travels_quoted_and_the_shell_reads_it_from_stdin() {
        let req = ExecRequest {
            shell: "sh".into(),
            sudo: true,
            stdin: b"echo 'it''s'\nexit 3\n".to_vec(),
            timeout: None,
            output_cap: 1024,
            cancel: Default::default(),
            step: None,
        };
        let f = String::from_utf8(frame(&req, "M").expect("framed")).expect("utf-8");
        assert!(
            f.starts_with("printf %s 'echo '\\''it'\\'''\\''s'\\''\nexit 3\n' | sudo -n -- sh -s;")
        );
        assert!(f.ends_with("printf '\\037M\\n' >&2\n"));
        let binary = ExecRequest {
            stdin: vec![0xff, 0],
            ..req
        };
        assert!(frame(&binary, "M").is_none());
    }
}
