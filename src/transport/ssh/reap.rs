//! Ending a command's processes on the node, and checking that they ended.
//!
//! A helper script, run from another channel (or, where the server allows
//! one channel per connection, another connection), signals the processes
//! of the command: its process group when the command leads one (sshd makes
//! every session a group; for dropbear and tinysshd the command makes its
//! own with `setsid`), else the process tree below it as it stood. TERM,
//! up to 2 s, then KILL; then it looks again and says `ended` only when
//! none is left. The step shell itself is spared: TERM only sets its stop
//! flag (so no step queued in it starts), and it reads the next step.
//!
//! The channel's own `signal` request is not used: OpenSSH honours it only
//! for unprivileged users and dropbear delivers it to one pid, which leaves
//! the rest of the group running and unfindable.

use super::shell::Header;
use crate::transport::Ending;

/// What to end: the command that printed `header`; `spare` it when it is
/// the step shell (only its steps end).
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub pid: u32,
    /// The group to signal, when the command leads one.
    pub group: Option<u32>,
    pub spare: bool,
}

impl Target {
    pub(super) fn of(header: &Header, spare: bool) -> Target {
        Target {
            pid: header.pid,
            group: header.leads_group().then_some(header.pid),
            spare,
        }
    }
}

/// Lists live processes as `pid:ppid:pgid` words, from `/proc` (builtins
/// only) or, without it, from `ps`.
const PROCS: &str = r#"if [ -r /proc/$$/stat ]; then
procs() { for d in /proc/[0-9]*; do read -r l 2>/dev/null <"$d/stat" || continue; l=${l##*) }; set -- $l; [ "$1" = Z ] || echo "${d#/proc/}:$2:$3"; done; }
else
procs() { ps -A -o pid= -o ppid= -o pgid= 2>/dev/null | while read -r a b c; do echo "$a:$b:$c"; done; }
fi
"#;

/// The helper that ends `t` and prints `\037MARK ended` or
/// `\037MARK left PIDS`.
pub(super) fn end_script(t: &Target, mark: &str) -> String {
    let group = t.group.map(|g| g.to_string()).unwrap_or_default();
    let spare = if t.spare {
        t.pid.to_string()
    } else {
        String::new()
    };
    format!(
        r#"{{
P={pid}; G={group}; S={spare}
{PROCS}members() {{
  for e in $(procs); do p=${{e%%:*}}; r=${{e#*:}}; g=${{r#*:}}
    [ "$p" = "$S" ] && continue
    if [ -n "$G" ]; then [ "$g" = "$G" ] && printf '%s ' "$p"
    else case "$T" in *" $p "*) printf '%s ' "$p";; esac; fi
  done
}}
if [ -z "$G" ]; then
  all=$(procs); T=" $P "; more=1
  while [ $more = 1 ]; do more=0
    for e in $all; do p=${{e%%:*}}; r=${{e#*:}}; pp=${{r%%:*}}
      case "$T" in *" $pp "*) case "$T" in *" $p "*) ;; *) T="$T$p "; more=1;; esac;; esac
    done
  done
fi
if sleep 0.01 2>/dev/null; then z=0.1; n=20; else z=1; n=2; fi
gone() {{ i=0; while [ $i -lt $1 ]; do m=$(members); [ -z "$m" ] && return 0; sleep $z; i=$((i+1)); done; m=$(members); [ -z "$m" ]; }}
[ -n "$S" ] && kill -TERM "$S" 2>/dev/null
m=$(members)
[ -n "$m" ] && kill -TERM $m 2>/dev/null
if ! gone $n; then kill -KILL $m 2>/dev/null; gone $((n / 2)); fi
if [ -n "$m" ]; then printf '\037{mark} left %s\n' "$m"; else printf '\037{mark} ended\n'; fi
}} </dev/null
"#,
        pid = t.pid,
    )
}

/// The helper that tells the step shell `pid` to start none of the steps
/// queued in it (its USR1 trap).
pub(super) fn stop_script(pid: u32, mark: &str) -> String {
    format!("kill -USR1 {pid} 2>/dev/null; printf '\\037{mark} ended\\n'\n")
}

/// What the helper said, from its stdout (login shell noise included).
pub(super) fn verdict(stdout: &[u8], mark: &str) -> Ending {
    let text = String::from_utf8_lossy(stdout);
    let needle = format!("\x1f{mark} ");
    let Some(at) = text.rfind(&needle) else {
        return Ending::Unchecked("the node did not confirm that they ended".into());
    };
    let said = text[at + needle.len()..].lines().next().unwrap_or_default();
    match said.split_once(' ') {
        Some(("left", pids)) => Ending::Left(pids.trim().to_string()),
        _ if said.trim() == "ended" => Ending::Ended,
        _ => Ending::Unchecked(format!("the node said `{said}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_read_past_login_noise() {
        assert_eq!(verdict(b"motd\n\x1fM ended\n", "M"), Ending::Ended);
        assert_eq!(
            verdict(b"\x1fM left 12 13 \n", "M"),
            Ending::Left("12 13".into())
        );
        assert!(matches!(
            verdict(b"sudo: a password is required\n", "M"),
            Ending::Unchecked(_)
        ));
    }
}
