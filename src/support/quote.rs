//! Shell quoting: the one rule by which a value becomes a single POSIX
//! `sh` word. Templates use it for `${{ }}` in scripts, the transport for
//! the scripts and commands it sends.

/// Quotes `s` for POSIX sh; words of only safe characters pass unchanged.
pub(crate) fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if safe {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}
