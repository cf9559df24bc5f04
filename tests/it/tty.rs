//! A TTY run shows the bars: `fleetfix run` driven through a pseudo-terminal
//! against real sshd nodes, checking the live per-node lines, the overall
//! bar, the redraws and the final table.

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::Fleet;
use crate::common::cli::playbook;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use regex::Regex;

const ROWS: u16 = 40;
const COLS: u16 = 160;
/// The whole run (spawn to EOF) must end within this, or the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

const PLAYBOOK: &str = r#"
name = "ttyshow"

[[steps]]
name = "prepare"
run = "echo prepared > ${{ marker_dir }}/prepared"

[[steps]]
name = "wait a moment"
run = "sleep 2; echo waited"

[[steps]]
name = "finish"
run = "touch ${{ marker_dir }}/finished"
"#;

/// What a run inside the pty produced.
struct PtyRun {
    code: u32,
    success: bool,
    /// Everything the child wrote to the terminal, escapes included.
    raw: String,
}

impl PtyRun {
    /// The output without escape sequences, `\r\n` as `\n`.
    fn text(&self) -> String {
        strip_ansi(&self.raw)
    }

    fn dump(&self) -> String {
        format!(
            "exit {} (success {})\n--- raw output (escaped) ---\n{}\n--- text ---\n{}",
            self.code,
            self.success,
            self.raw.escape_debug(),
            self.text()
        )
    }
}

/// Removes CSI/OSC escape sequences and normalizes line ends.
fn strip_ansi(s: &str) -> String {
    let re = Regex::new(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]")
        .expect("valid regex");
    re.replace_all(s, "").replace("\r\n", "\n")
}

/// What a terminal of `COLS` columns shows (scrollback included) after the
/// output was written to it: enough of a VT100 for what indicatif and the
/// table write (text, CR/LF, cursor up/down/column, erase line/display,
/// deferred autowrap at the last column). Every char is one column wide.
fn screen(raw: &str, cols: u16) -> Vec<String> {
    let cols = usize::from(cols);
    let rows = usize::from(ROWS);
    let mut lines: Vec<Vec<char>> = vec![Vec::new()];
    let (mut row, mut col, mut pending_wrap) = (0usize, 0usize, false);
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                Some('[') => {
                    let mut params = String::new();
                    let mut fin = None;
                    for p in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&p) {
                            fin = Some(p);
                            break;
                        }
                        params.push(p);
                    }
                    let n: usize = params.parse().unwrap_or(0);
                    let top = lines.len().saturating_sub(rows);
                    pending_wrap = false;
                    match fin {
                        Some('A') => row = row.saturating_sub(n.max(1)).max(top),
                        Some('B') => row += n.max(1),
                        Some('C') => col = (col + n.max(1)).min(cols - 1),
                        Some('D') => col = col.saturating_sub(n.max(1)),
                        Some('G') => col = n.max(1).min(cols) - 1,
                        Some('K') => {
                            let line = &mut lines[row];
                            match n {
                                0 => line.truncate(col),
                                1 => line.iter_mut().take(col + 1).for_each(|ch| *ch = ' '),
                                _ => line.clear(),
                            }
                        }
                        Some('J') if n == 0 => {
                            lines[row].truncate(col);
                            lines.truncate(row + 1);
                        }
                        Some('J') if n == 2 => {
                            for line in &mut lines[top..] {
                                line.clear();
                            }
                        }
                        _ => {} // colours, cursor visibility, ...
                    }
                }
                Some(']') => {
                    // OSC: up to BEL or ST.
                    while let Some(o) = chars.next() {
                        if o == '\x07' || (o == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' => {
                col = 0;
                pending_wrap = false;
            }
            '\n' => {
                row += 1;
                pending_wrap = false;
            }
            '\x08' => col = col.saturating_sub(1),
            c if c.is_control() => {}
            c => {
                if pending_wrap {
                    row += 1;
                    col = 0;
                    pending_wrap = false;
                }
                if lines.len() <= row {
                    lines.resize(row + 1, Vec::new());
                }
                let line = &mut lines[row];
                if line.len() <= col {
                    line.resize(col + 1, ' ');
                }
                line[col] = c;
                if col == cols - 1 {
                    pending_wrap = true;
                } else {
                    col += 1;
                }
            }
        }
        if lines.len() <= row {
            lines.resize(row + 1, Vec::new());
        }
    }
    let mut out: Vec<String> = lines
        .iter()
        .map(|l| l.iter().collect::<String>().trim_end().to_string())
        .collect();
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

/// Runs the fleetfix binary with `args` on a 40x160 pseudo-terminal (stdin,
/// stdout and stderr all on the pty), with the environment the `fleetfix()`
/// helper sets plus TERM, and collects everything it writes until EOF.
fn run_in_pty(label: &str, home: &Path, args: &[OsString]) -> PtyRun {
    run_in_pty_answering(label, home, args, None, COLS)
}

/// Like [`run_in_pty`], typing `answer` and Enter at the confirmation prompt.
fn run_in_pty_answering(
    label: &str,
    home: &Path,
    args: &[OsString],
    answer: Option<&str>,
    cols: u16,
) -> PtyRun {
    let mut answer = answer.map(String::from);
    let pty = native_pty_system();
    let pair = pty
        .openpty(PtySize {
            rows: ROWS,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("open a pseudo-terminal");

    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_fleetfix"));
    cmd.args(args);
    cmd.cwd(home);
    cmd.env("HOME", home);
    cmd.env_remove("SSH_AUTH_SOCK");
    cmd.env_remove("FLEETFIX_INVENTORY");
    cmd.env_remove("RUST_LOG");
    cmd.env("NO_COLOR", "1");
    cmd.env("TERM", "xterm-256color");

    let mut child = pair
        .slave
        .spawn_command(cmd)
        .expect("spawn fleetfix on the pty");
    // Only the child may hold the slave side, so its exit ends the reads.
    drop(pair.slave);

    let mut reader = pair.master.try_clone_reader().expect("pty reader");
    let mut writer = pair.master.take_writer().expect("pty writer");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                // EOF, or EIO on Linux once the slave side is closed.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut raw = Vec::new();
    let mut status = None;
    let mut eof = false;
    while !eof || status.is_none() {
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "fleetfix did not finish within {RUN_TIMEOUT:?} (exited: {}, EOF: {eof})\n\
                 --- output so far (escaped) ---\n{}",
                status.is_some(),
                String::from_utf8_lossy(&raw).escape_debug()
            );
        }
        if !eof {
            match rx.recv_timeout(Duration::from_millis(50).min(deadline - now)) {
                Ok(chunk) => {
                    raw.extend_from_slice(&chunk);
                    if String::from_utf8_lossy(&raw).contains("[y/N]")
                        && let Some(a) = answer.take()
                    {
                        writer
                            .write_all(format!("{a}\r").as_bytes())
                            .expect("type the answer");
                        writer.flush().expect("flush the answer");
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => eof = true,
            }
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        if status.is_none() {
            status = child.try_wait().expect("poll the fleetfix child");
        }
    }
    reader_thread.join().expect("pty reader thread");
    drop(writer);
    drop(pair.master);

    // For a look at the raw bytes: FLEETFIX_TTY_RAW_DIR=/tmp cargo test --test tty
    if let Some(dir) = std::env::var_os("FLEETFIX_TTY_RAW_DIR") {
        let _ = std::fs::write(Path::new(&dir).join(format!("{label}.raw")), &raw);
    }
    let status = status.expect("exit status");
    PtyRun {
        code: status.exit_code(),
        success: status.success(),
        raw: String::from_utf8_lossy(&raw).into_owned(),
    }
}

fn run_args(inv: &Path, kh: &Path, pb: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["run".into(), "--yes".into()];
    args.extend(extra.iter().map(OsString::from));
    args.extend([
        "-i".into(),
        inv.into(),
        "--known-hosts".into(),
        kh.into(),
        pb.into(),
    ]);
    args
}

/// The table the run prints last: header, one `changed` row per node, and
/// the closing line.
fn assert_final_table(out: &PtyRun, fleet: &Fleet) {
    let text = out.text();
    let header = Regex::new(
        r"(?m)^.*\bnode\s.*\bstatus\s.*\bok\s.*\bchanged\s.*\bskipped\s.*\bfailed\s.*\btime\b.*$",
    )
    .expect("valid regex");
    let header_at = header
        .find(&text)
        .unwrap_or_else(|| panic!("no summary table header\n{}", out.dump()))
        .start();
    let table = &text[header_at..];
    for node in fleet.nodes() {
        let row = Regex::new(&format!(
            r"(?m)^\W*{}\s+changed\s+0\s+3\s+0\s+0\s+\d",
            regex::escape(&node.name)
        ))
        .expect("valid regex");
        assert!(
            row.is_match(table),
            "no `changed 0 3 0 0` row for {} in the table\n{}",
            node.name,
            out.dump()
        );
    }
    let closing = Regex::new(r"(?m)^5 nodes: 5 changed · \S+ · exit 0\s*$").expect("valid regex");
    assert!(
        closing.is_match(table),
        "no closing line `5 nodes: 5 changed · … · exit 0` after the table\n{}",
        out.dump()
    );
}

fn assert_markers(fleet: &Fleet) {
    for node in fleet.nodes() {
        let dir = fleet.dir().join("markers").join(&node.name);
        assert!(dir.join("prepared").exists(), "{} not prepared", node.name);
        assert!(dir.join("finished").exists(), "{} not finished", node.name);
    }
}

#[test]
fn a_tty_run_shows_the_bars_and_the_final_table() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(fleet.dir(), "tty.toml", PLAYBOOK);
    let out = run_in_pty(
        "bars",
        fleet.dir(),
        &run_args(&inv, fleet.known_hosts(), &pb, &[]),
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.success, "{}", out.dump());
    assert_markers(&fleet);

    let text = out.text();

    // Per-node lines while in flight: spinner, node name, step i/n and name.
    for node in fleet.nodes() {
        let line = Regex::new(&format!(
            r"{}\s+step 2/3 wait a moment\b",
            regex::escape(&node.name)
        ))
        .expect("valid regex");
        assert!(
            line.is_match(&text),
            "no in-flight line `{} step 2/3 wait a moment`\n{}",
            node.name,
            out.dump()
        );
    }

    // The overall bar: nodes done out of 5, at the start and at the end.
    let overall = Regex::new(r"\[[=> ]{30}\] (\d)/5 nodes · (\d+) failed").expect("valid regex");
    let done: Vec<u32> = overall
        .captures_iter(&text)
        .map(|c| c[1].parse().expect("digit"))
        .collect();
    assert!(
        done.contains(&0),
        "no overall bar with 0/5 nodes\n{}",
        out.dump()
    );
    assert!(
        done.contains(&5),
        "no overall bar with 5/5 nodes\n{}",
        out.dump()
    );

    // Redraws: the bars move the cursor up and clear lines, many times over
    // during the 2 s step.
    let up = Regex::new(r"\x1b\[\d*A").expect("valid regex");
    let redraws = up.find_iter(&out.raw).count();
    assert!(
        redraws >= 5,
        "only {redraws} cursor-up sequences: the bars were not redrawn\n{}",
        out.dump()
    );
    assert!(
        out.raw.contains("\x1b[2K"),
        "no erase-line sequence\n{}",
        out.dump()
    );

    // Each finished node is echoed above the bars.
    for node in fleet.nodes() {
        let done = Regex::new(&format!(r"✓ {} changed \(\d", regex::escape(&node.name)))
            .expect("valid regex");
        assert!(
            done.is_match(&text),
            "no `✓ {} changed` line\n{}",
            node.name,
            out.dump()
        );
    }

    assert_final_table(&out, &fleet);

    // What is left on the terminal afterwards: the finished nodes, at most
    // the overall bar (at 5/5), then the table on lines of its own; no node
    // line of the bars survives.
    let screen = screen(&out.raw, COLS);
    let shown = screen.join("\n");
    let leftovers: Vec<&String> = screen
        .iter()
        .filter(|l| l.contains("step ") || l.contains("connecting"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "node lines of the bars left on the terminal: {leftovers:?}\n--- screen ---\n{shown}"
    );
    let bars: Vec<&String> = screen.iter().filter(|l| l.contains(" nodes · ")).collect();
    assert!(
        bars.iter().all(|b| b.contains("] 5/5 nodes · 0 failed · ")) && bars.len() <= 1,
        "want at most one overall bar, at 5/5, left on the terminal\n--- screen ---\n{shown}"
    );
    for node in fleet.nodes() {
        let done = Regex::new(&format!(
            r"^✓ {} changed \(\d[^)]*\)$",
            regex::escape(&node.name)
        ))
        .expect("valid regex");
        assert_eq!(
            screen.iter().filter(|l| done.is_match(l)).count(),
            1,
            "want one `✓ {} changed (…)` line of its own\n--- screen ---\n{shown}",
            node.name
        );
    }
    let top = screen
        .iter()
        .position(|l| l.starts_with('┌'))
        .unwrap_or_else(|| panic!("the table does not start a line\n--- screen ---\n{shown}"));
    let tail: Vec<&str> = screen[top..].iter().map(String::as_str).collect();
    assert_eq!(
        tail.len(),
        10,
        "table + closing line\n--- screen ---\n{shown}"
    );
    assert!(
        tail[1].starts_with("│ node ") && tail[1].contains(" status "),
        "{shown}"
    );
    for (i, node) in fleet.nodes().iter().enumerate() {
        assert!(
            tail[3 + i].starts_with(&format!("│ {} ", node.name))
                && tail[3 + i].contains(" changed "),
            "table row {i}\n--- screen ---\n{shown}"
        );
    }
    assert!(tail[8].starts_with('└'), "{shown}");
    assert!(tail[9].starts_with("5 nodes: 5 changed · "), "{shown}");
}

#[test]
fn a_tty_run_with_progress_never_prints_plain_lines() {
    let fleet = Fleet::start(5);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(fleet.dir(), "tty.toml", PLAYBOOK);
    let out = run_in_pty(
        "never",
        fleet.dir(),
        &run_args(&inv, fleet.known_hosts(), &pb, &["--progress", "never"]),
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    assert!(out.success, "{}", out.dump());
    assert_markers(&fleet);

    let text = out.text();
    for bar_text in [
        "step 1/3",
        "step 2/3",
        "step 3/3",
        "/5 nodes",
        "connecting",
        "✓ ",
    ] {
        assert!(
            !text.contains(bar_text),
            "bar text {bar_text:?} with --progress never\n{}",
            out.dump()
        );
    }
    let up = Regex::new(r"\x1b\[\d*A").expect("valid regex");
    assert!(
        !up.is_match(&out.raw),
        "cursor movement with --progress never\n{}",
        out.dump()
    );

    // One plain line per step result: `node1 changed  wait a moment (2.0s)`.
    for node in fleet.nodes() {
        for step in ["prepare", "wait a moment", "finish"] {
            let line = Regex::new(&format!(
                r"(?m)^{} changed  {} \(\d[^)]*\)$",
                regex::escape(&node.name),
                regex::escape(step)
            ))
            .expect("valid regex");
            assert!(
                line.is_match(&text),
                "no plain line `{} changed  {step} (…)`\n{}",
                node.name,
                out.dump()
            );
        }
    }

    assert_final_table(&out, &fleet);
}

#[test]
fn a_tty_run_that_changes_nodes_asks_once() {
    let fleet = Fleet::start(2);
    let inv = fleet.write_inventory(&[]);
    let pb = playbook(fleet.dir(), "tty.toml", PLAYBOOK);
    let args = |extra: &[&str]| {
        let mut a: Vec<OsString> = vec!["run".into()];
        a.extend(extra.iter().map(OsString::from));
        a.extend([
            "-i".into(),
            inv.clone().into(),
            "--known-hosts".into(),
            fleet.known_hosts().into(),
            pb.clone().into(),
        ]);
        a
    };
    let no = run_in_pty_answering("confirm-no", fleet.dir(), &args(&[]), Some("n"), COLS);
    let text = no.text();
    assert!(
        text.contains("on 2 node(s) in 1 batch(es) (2); it changes them. Continue? [y/N]"),
        "{}",
        no.dump()
    );
    assert_eq!(no.code, 3, "{}", no.dump());
    assert!(text.contains("aborted: nothing was run"), "{}", no.dump());
    assert!(
        !fleet.dir().join("markers/node1/prepared").exists(),
        "ran despite `n`"
    );

    let yes = run_in_pty_answering("confirm-yes", fleet.dir(), &args(&[]), Some("y"), COLS);
    assert_eq!(yes.code, 0, "{}", yes.dump());
    assert_eq!(
        yes.text().matches("[y/N]").count(),
        1,
        "asked more than once"
    );
    assert!(fleet.dir().join("markers/node1/finished").exists());

    // --check changes nothing, so it never asks (its steps would run: drift, 5).
    let check = run_in_pty("confirm-check", fleet.dir(), &args(&["--check"]));
    assert!(!check.text().contains("[y/N]"), "{}", check.dump());
    assert_eq!(check.code, 5, "{}", check.dump());
}

#[test]
fn the_demo_on_a_tty_draws_the_bars_and_the_table() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = run_in_pty(
        "demo",
        home.path(),
        &["demo".into(), "--nodes".into(), "4".into()],
    );
    assert_eq!(out.code, 0, "{}", out.dump());
    let text = out.text();
    let overall = Regex::new(r"\] [0-4]/4 nodes · [01] failed").expect("valid regex");
    assert!(overall.is_match(&text), "no overall bar\n{}", out.dump());
    assert!(
        text.contains("batch 4/4"),
        "no batch in the bar\n{}",
        out.dump()
    );
    let up = Regex::new(r"\x1b\[\d*A").expect("valid regex");
    assert!(
        up.find_iter(&out.raw).count() >= 5,
        "no redraws\n{}",
        out.dump()
    );
    let screen = screen(&out.raw, COLS);
    let shown = screen.join("\n");
    let top = screen
        .iter()
        .position(|l| l.starts_with('┌'))
        .unwrap_or_else(|| panic!("no table\n--- screen ---\n{shown}"));
    let table = &screen[top..];
    assert!(
        table[1].contains(" previous ") && table[1].contains(" serving "),
        "{shown}"
    );
    // node03 (two thirds in) was told to fail and rolled back.
    let row = |name: &str| {
        table
            .iter()
            .find(|l| l.starts_with(&format!("│ {name} ")))
            .unwrap_or_else(|| panic!("no row {name}\n{shown}"))
            .clone()
    };
    assert!(row("node03").contains(" failed "), "{shown}");
    for name in ["node01", "node02", "node04"] {
        assert!(
            row(name).contains(" changed ") && row(name).contains(" 0.2.0 "),
            "{shown}"
        );
    }
    assert!(
        shown.contains("demo: as staged, node03 failed the version check and was rolled back"),
        "{shown}"
    );
}

/// At 80 and 100 columns the demo's table fits the terminal (no header
/// word split), its report values are columns where they fit (100) and a
/// line per node under it where they do not (80), and the failed node's
/// failure is one line under it.
#[test]
fn the_demo_table_fits_a_narrow_terminal() {
    for cols in [80u16, 100] {
        let home = tempfile::tempdir().expect("tempdir");
        let out = run_in_pty_answering(
            "demo-narrow",
            home.path(),
            &["demo".into(), "--nodes".into(), "4".into()],
            None,
            cols,
        );
        assert_eq!(out.code, 0, "{}", out.dump());
        let screen = screen(&out.raw, cols);
        let shown = screen.join("\n");
        let top = screen
            .iter()
            .position(|l| l.starts_with('┌'))
            .unwrap_or_else(|| panic!("no table at {cols}\n{shown}"));
        let bottom = top
            + screen[top..]
                .iter()
                .position(|l| l.starts_with('└'))
                .unwrap_or_else(|| panic!("no table end at {cols}\n{shown}"));
        assert!(
            screen[top + 1].contains(" changed ") && screen[top + 1].contains(" skipped "),
            "{cols}: the header is whole\n{shown}"
        );
        for line in &screen[top..=bottom] {
            assert!(
                line.ends_with('┐')
                    || line.ends_with('│')
                    || line.ends_with('┘')
                    || line.ends_with('╡'),
                "{cols}: a table line wrapped: {line:?}\n{shown}"
            );
        }
        let after = screen[bottom + 1..].join("\n");
        if cols == 80 {
            assert!(
                after.contains("report:\n  node01  previous=0.1.0  serving=0.2.0"),
                "{cols}\n{shown}"
            );
        } else {
            assert!(screen[top + 1].contains(" previous "), "{cols}\n{shown}");
        }
        assert!(
            after.contains("failed:\n  node03  version check: status 503, expected 200"),
            "{cols}\n{shown}"
        );
    }
}
