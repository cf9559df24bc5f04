//! Reading a command's output: login-shell noise dropped, the header
//! taken out, each stream capped, and the end of a step found on the
//! step shell's streams.

use super::shell::{EndScan, Header, Preamble};
use crate::transport::{Captured, ExecOutput, ExitStatus};

/// What a command's channel delivers, fed in as it comes.
pub(super) trait Reader {
    /// Bytes of stdout (`err` false) or stderr.
    fn data(&mut self, err: bool, bytes: &[u8]);
    fn exit(&mut self, code: u32);
    fn signal(&mut self, name: String);
    /// Everything this command needs has arrived (its channel may stay).
    fn done(&self) -> bool;
    /// The command's header, once it started.
    fn header(&self) -> Option<Header>;
    /// Steps are queued behind this one.
    fn queued(&self) -> bool {
        false
    }
}

/// The two streams of one command, capped, and how it ended.
#[derive(Default)]
pub(super) struct Output {
    pub cap: usize,
    pub stdout: Captured,
    pub stderr: Captured,
    pub code: Option<i32>,
    pub signal: Option<String>,
}

impl Output {
    pub(super) fn new(cap: usize) -> Self {
        Output {
            cap,
            ..Default::default()
        }
    }

    pub(super) fn push(&mut self, err: bool, bytes: &[u8]) {
        let cap = self.cap;
        if err {
            self.stderr.push(bytes, cap);
        } else {
            self.stdout.push(bytes, cap);
        }
    }

    /// The result, given how ending it went (`None`: nobody ended it).
    pub(super) fn finish(self, ended: Option<(bool, crate::transport::Ending)>) -> ExecOutput {
        let status = match (ended, self.code, self.signal) {
            (Some((true, e)), _, _) => ExitStatus::Interrupted(e),
            (Some((false, e)), _, _) => ExitStatus::TimedOut(e),
            (None, Some(c), _) => ExitStatus::Code(c),
            (None, None, Some(s)) => ExitStatus::Signal(s),
            _ => ExitStatus::Unknown,
        };
        ExecOutput {
            status,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

/// Both streams' preambles, until the command started on each.
pub(super) struct Start {
    pre: [Preamble; 2],
}

impl Start {
    pub(super) fn new(mark: &str) -> Self {
        Start {
            pre: [Preamble::stdout(mark), Preamble::stderr(mark)],
        }
    }

    /// The bytes of `err`'s stream that belong to the command, once it
    /// started there.
    pub(super) fn feed(&mut self, err: bool, bytes: &[u8]) -> Option<Vec<u8>> {
        self.pre[err as usize].feed(bytes)
    }

    pub(super) fn started(&self) -> bool {
        self.pre.iter().all(Preamble::found)
    }

    pub(super) fn header(&self) -> Option<Header> {
        self.pre[1].header()
    }

    /// The login shell did not run the command: what it said instead.
    pub(super) fn refusal(&self, code: Option<i32>) -> ExitStatus {
        let said = [self.pre[0].unclaimed(), self.pre[1].unclaimed()]
            .iter()
            .map(|b| String::from_utf8_lossy(b).trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        ExitStatus::NotStarted { code, said }
    }
}

/// A command with a channel of its own: everything after its start is
/// its output.
pub(super) struct ChannelReader {
    pub start: Start,
    pub out: Output,
}

impl Reader for ChannelReader {
    fn data(&mut self, err: bool, bytes: &[u8]) {
        if let Some(mine) = self.start.feed(err, bytes) {
            self.out.push(err, &mine);
        }
    }

    fn exit(&mut self, code: u32) {
        self.out.code = Some(code as i32);
    }

    fn signal(&mut self, name: String) {
        self.out.signal = Some(name);
    }

    fn done(&self) -> bool {
        false
    }

    fn header(&self) -> Option<Header> {
        self.start.header()
    }
}

/// One step's result on the step shell's streams, after `discard` results
/// of steps sent ahead that are not wanted (they skip, or run for nothing).
pub(super) struct ShellReader<'a> {
    /// The fresh shell's start, until both streams passed it.
    pub start: &'a mut Option<Start>,
    pub header: &'a mut Option<Header>,
    pub queued: bool,
    pub discard: usize,
    pub ends: [EndScan; 2],
    pub mark: &'a str,
    pub out: Output,
    /// The channel's own exit status (the shell ended).
    pub exit: Option<i32>,
}

impl ShellReader<'_> {
    fn feed_step(&mut self, err: bool, bytes: &[u8]) {
        let i = err as usize;
        if self.discard > 0 {
            self.ends[i].feed(bytes, &mut |_: &[u8]| {});
        } else {
            let out = &mut self.out;
            self.ends[i].feed(bytes, &mut |b: &[u8]| out.push(err, b));
        }
        // A finished unwanted result hands what followed it to the next.
        while self.discard > 0 && self.ends.iter().all(EndScan::ended) {
            if !self.ends[0].skipped() {
                tracing::debug!("a step sent ahead ran but was not asked for");
            }
            self.discard -= 1;
            let after = [self.ends[0].after(), self.ends[1].after()];
            self.ends = [EndScan::new(self.mark), EndScan::new(self.mark)];
            for (i, a) in after.iter().enumerate() {
                if self.discard > 0 {
                    self.ends[i].feed(a, &mut |_: &[u8]| {});
                } else {
                    let out = &mut self.out;
                    self.ends[i].feed(a, &mut |b: &[u8]| out.push(i == 1, b));
                }
            }
        }
    }
}

impl Reader for ShellReader<'_> {
    fn data(&mut self, err: bool, bytes: &[u8]) {
        let Some(start) = self.start.as_mut() else {
            return self.feed_step(err, bytes);
        };
        let Some(mine) = start.feed(err, bytes) else {
            return;
        };
        if err {
            *self.header = start.header();
        }
        if start.started() {
            *self.start = None;
        }
        self.feed_step(err, &mine);
    }

    fn exit(&mut self, code: u32) {
        self.exit = Some(code as i32);
    }

    fn signal(&mut self, name: String) {
        self.out.signal = Some(name);
    }

    /// The step's result is in, or the shell said it cannot run steps
    /// (it then holds the node lock, or ends).
    fn done(&self) -> bool {
        let unfit = self.start.is_none() && self.header.as_ref().is_some_and(|h| !h.fit());
        unfit || (self.start.is_none() && self.discard == 0 && self.ends.iter().all(EndScan::ended))
    }

    fn header(&self) -> Option<Header> {
        self.header.clone()
    }

    fn queued(&self) -> bool {
        self.queued
    }
}
