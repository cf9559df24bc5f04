//! Small text helpers shared by every layer: cutting at a character
//! boundary, the mark of cut output, durations and tails for people.

/// What marks output dropped past the cap (the masker finds cuts by it).
pub(crate) const TRUNCATED: &str = "\n[… truncated:";

/// The largest char boundary of `text` at or below `i` (spans computed on
/// decoded strings may land inside a multi-byte character).
pub(crate) fn floor_char_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Shortens text to its last `n` non-empty lines (for failure details).
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `1.2s`, `850ms`, `2m03s`.
pub(crate) fn human_duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
