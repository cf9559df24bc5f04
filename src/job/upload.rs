//! `upload` steps: the file travels inside the script on stdin (base64), is
//! written to a temporary file beside `dest`, checked, and renamed over it,
//! so `dest` is never half-written. An identical file is left alone.

use sha2::{Digest, Sha256};

use crate::job::form::{Form, Rendered};
use crate::support::quote::shell_quote;

/// The file of an upload step; rendered (for one node) unless said otherwise.
#[derive(Debug, Clone)]
pub struct Upload<F: Form = Rendered> {
    pub content: F::Content,
    pub dest: F::Text,
    pub mode: Option<u32>,
    pub owner: Option<F::Text>,
}

/// What the node reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// `dest` already had this content (and mode): nothing written.
    Same,
    /// `dest` was (or, when checking, would be) written.
    Written,
}

const SAME: &str = "fleetfix-upload: same";
const WRITTEN: &str = "fleetfix-upload: written";
const DIFFERS: &str = "fleetfix-upload: differs";

/// The script that compares, and unless `check_only`, writes atomically.
pub(crate) fn script(u: &Upload, check_only: bool) -> String {
    let hash = hex(&Sha256::digest(&u.content));
    let mode = u.mode.map(|m| format!("{m:o}")).unwrap_or_default();
    let mut s = format!(
        "set -e\n\
         dest={dest}\n\
         want={hash}\n\
         mode={mode}\n\
         if [ -f \"$dest\" ] && [ \"$(sha256sum < \"$dest\" | cut -d' ' -f1)\" = \"$want\" ] \\\n\
         && {{ [ -z \"$mode\" ] || [ \"$(stat -c %a \"$dest\")\" = \"$mode\" ]; }}; then\n\
         echo '{SAME}'; exit 0\n\
         fi\n",
        dest = shell_quote(&u.dest),
    );
    if check_only {
        s.push_str(&format!("echo '{DIFFERS}'\n"));
        return s;
    }
    s.push_str(
        "tmp=\"$dest.fleetfix-tmp.$$\"\n\
         trap 'rm -f \"$tmp\"' EXIT\n\
         base64 -d > \"$tmp\" <<'FLEETFIX_UPLOAD_EOF'\n",
    );
    let encoded = data_encoding::BASE64.encode(&u.content);
    for chunk in encoded.as_bytes().chunks(76) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str("FLEETFIX_UPLOAD_EOF\n");
    s.push_str("[ \"$(sha256sum < \"$tmp\" | cut -d' ' -f1)\" = \"$want\" ] || { echo 'upload arrived corrupted' >&2; exit 1; }\n");
    if !mode.is_empty() {
        s.push_str("chmod \"$mode\" \"$tmp\"\n");
    }
    if let Some(owner) = &u.owner {
        s.push_str(&format!("chown {} \"$tmp\"\n", shell_quote(owner)));
    }
    s.push_str(&format!(
        "mv -f \"$tmp\" \"$dest\"\ntrap - EXIT\necho '{WRITTEN}'\n"
    ));
    s
}

/// Reads the node's answer from the script's stdout.
pub(crate) fn outcome(stdout: &str) -> Option<Outcome> {
    if stdout.contains(SAME) {
        Some(Outcome::Same)
    } else if stdout.contains(WRITTEN) || stdout.contains(DIFFERS) {
        Some(Outcome::Written)
    } else {
        None
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_writes_through_a_temp_file_and_a_rename() {
        let u = Upload {
            content: b"hello\n".to_vec(),
            dest: "/etc/app it's.conf".into(),
            mode: Some(0o640),
            owner: Some("root:root".into()),
        };
        let s = script(&u, false);
        assert!(s.contains("dest='/etc/app it'\\''s.conf'"), "{s}");
        assert!(s.contains("mode=640"), "{s}");
        assert!(s.contains("aGVsbG8K"), "{s}");
        assert!(s.contains("mv -f \"$tmp\" \"$dest\""), "{s}");
        let check = script(&u, true);
        assert!(
            !check.contains("mv -f") && check.contains(DIFFERS),
            "{check}"
        );
        assert_eq!(outcome("fleetfix-upload: same\n"), Some(Outcome::Same));
        assert_eq!(
            outcome("x\nfleetfix-upload: written\n"),
            Some(Outcome::Written)
        );
    }
}
