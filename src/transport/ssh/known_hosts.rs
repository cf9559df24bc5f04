//! Host key verification against a known_hosts file, read once per run.
//!
//! Matches OpenSSH semantics: plain, wildcard (`*`, `?`), negated (`!`) and
//! hashed (`|1|salt|hash`) host patterns, `[host]:port` for non-22 ports,
//! `@revoked` entries. Learned keys (trust-on-first-use) are appended to the
//! file and remembered for the rest of the run.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::ssh_key::{Certificate, HashAlg, PublicKey};
use sha1::Sha1;

use crate::support::error::Error;

/// What known_hosts says about a host and the key it presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The key is recorded for this host.
    Trusted,
    /// Unknown host: no key of any type recorded.
    Unknown,
    /// Other keys are recorded for this host, the first at `line`; the one
    /// presented is not among them (of the same type or another).
    Changed { line: usize },
    /// The key is marked `@revoked`.
    Revoked { line: usize },
}

/// A parsed known_hosts file.
pub(crate) struct KnownHosts {
    path: PathBuf,
    table: Mutex<Table>,
}

/// The entries, with plain host names indexed: a fleet's known_hosts holds
/// a line per node, and every node's lookup must not scan all of them.
#[derive(Default)]
struct Table {
    /// (line number, entry), in file order.
    entries: Vec<(usize, Entry)>,
    /// Lower-cased literal name → entries whose patterns are all literal.
    literal: HashMap<String, Vec<usize>>,
    /// Entries that need matching: hashed, wildcard or negated patterns.
    scan: Vec<usize>,
}

impl Table {
    fn push(&mut self, line: usize, entry: Entry) {
        let i = self.entries.len();
        match entry.host_patterns() {
            HostPatterns::Patterns(list)
                if list
                    .iter()
                    .all(|p| !p.starts_with('!') && !p.contains(['*', '?'])) =>
            {
                for p in list {
                    let slot = self.literal.entry(p.to_ascii_lowercase()).or_default();
                    if !slot.contains(&i) {
                        slot.push(i);
                    }
                }
            }
            _ => self.scan.push(i),
        }
        self.entries.push((line, entry));
    }

    /// The entries whose host patterns match `name`, in file order.
    fn matching(&self, name: &str) -> Vec<&(usize, Entry)> {
        let mut hits: Vec<usize> = self
            .literal
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default();
        hits.extend(
            self.scan
                .iter()
                .copied()
                .filter(|&i| patterns_match(self.entries[i].1.host_patterns(), name)),
        );
        hits.sort_unstable();
        hits.iter().map(|&i| &self.entries[i]).collect()
    }
}

impl KnownHosts {
    /// Reads the file; a missing file is an empty one, an unreadable one an error.
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::input(
                    format!("cannot read known hosts file {}: {e}", path.display()),
                    "fix its permissions, or point --known-hosts at a readable file",
                ));
            }
        };
        let mut table = Table::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // Unknown key types and garbage are skipped, as OpenSSH does.
            if let Ok(e) = line.parse::<Entry>() {
                table.push(i + 1, e);
            }
        }
        Ok(KnownHosts {
            path: path.to_path_buf(),
            table: Mutex::new(table),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Checks `key` presented by `host:port`.
    pub(crate) fn verify(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = host_port(host, port);
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut trusted = false;
        let mut other: Option<usize> = None;
        for (line, entry) in table.matching(&name) {
            let same_key = entry.public_key().key_data() == key.key_data();
            match entry.marker() {
                Some(Marker::Revoked) if same_key => return Verdict::Revoked { line: *line },
                Some(_) => continue,
                None if same_key => trusted = true,
                None => other = other.or(Some(*line)),
            }
        }
        // A known host presenting a key of a type we never recorded is not a
        // new host: trust-on-first-use must not learn it (OpenSSH refuses too).
        match (trusted, other) {
            (true, _) => Verdict::Trusted,
            (false, Some(line)) => Verdict::Changed { line },
            (false, None) => Verdict::Unknown,
        }
    }

    /// Whether an `@cert-authority` line covers this host (then the
    /// handshake asks for host certificates).
    pub(crate) fn has_cert_authority(&self, host: &str, port: u16) -> bool {
        let name = host_port(host, port);
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table
            .matching(&name)
            .iter()
            .any(|(_, e)| e.marker() == Some(&Marker::CertAuthority))
    }

    /// Checks a host certificate: signed by an `@cert-authority` of this
    /// host, a host certificate, valid now, naming `host` as a principal,
    /// neither it nor its CA `@revoked`.
    pub(crate) fn verify_cert(
        &self,
        host: &str,
        port: u16,
        cert: &Certificate,
    ) -> Result<(), String> {
        let name = host_port(host, port);
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut cas = Vec::new();
        for (line, e) in table.matching(&name) {
            let key = e.public_key().key_data();
            match e.marker() {
                Some(Marker::Revoked)
                    if key == cert.public_key() || key == cert.signature_key() =>
                {
                    return Err(format!("its key or CA is marked @revoked at line {line}"));
                }
                Some(Marker::CertAuthority) => {
                    cas.push(e.public_key().fingerprint(HashAlg::Sha256))
                }
                _ => {}
            }
        }
        if cas.is_empty() {
            return Err(format!(
                "no @cert-authority line in {} covers {name}",
                self.path.display()
            ));
        }
        cert.validate(cas.iter())
            .map_err(|e| format!("the certificate is not valid from a trusted CA now: {e}"))?;
        if cert.cert_type() != CertType::Host {
            return Err("it is a user certificate, not a host certificate".into());
        }
        if !cert.valid_principals().iter().any(|p| p == host) {
            return Err(format!(
                "its principals ({}) do not include {host}",
                cert.valid_principals().join(", ")
            ));
        }
        Ok(())
    }

    /// The key types recorded for a host, so the handshake can ask for one
    /// of them first (as OpenSSH does) instead of a type never recorded.
    pub(crate) fn recorded_algorithms(&self, host: &str, port: u16) -> Vec<russh::keys::Algorithm> {
        let name = host_port(host, port);
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for (_, e) in table.matching(&name) {
            if e.marker().is_none() {
                let a = e.public_key().algorithm();
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Appends `host:port key` to the file and remembers it for this run.
    pub(crate) fn learn(&self, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
        let name = host_port(host, port);
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let key_text = key
            .to_openssh()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let line = format!("{name} {key_text}");
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let needs_newline = std::fs::read(&self.path)
            .map(|b| !b.is_empty() && !b.ends_with(b"\n"))
            .unwrap_or(false);
        let sep = if needs_newline { "\n" } else { "" };
        file.write_all(format!("{sep}{line}\n").as_bytes())?;
        if let Ok(entry) = line.parse::<Entry>() {
            let next = table.entries.last().map(|(l, _)| l + 1).unwrap_or(1);
            table.push(next, entry);
        }
        Ok(())
    }
}

/// The name known_hosts records for a host: `host`, or `[host]:port`.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// A key's fingerprint as `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

fn patterns_match(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut matched = false;
            for p in list {
                if let Some(neg) = p.strip_prefix('!') {
                    if wildcard_match(neg, name) {
                        return false;
                    }
                } else if wildcard_match(p, name) {
                    matched = true;
                }
            }
            matched
        }
    }
}

/// `*` and `?` glob matching, case-insensitive like OpenSSH host patterns.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern.eq_ignore_ascii_case(name);
    }
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let n: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key parses")
    }

    fn load(text: &str) -> KnownHosts {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).expect("write");
        let kh = KnownHosts::load(&path).expect("loads");
        drop(dir);
        kh
    }

    #[test]
    fn plain_bracketed_wildcard_and_negated_entries() {
        let kh = load(&format!(
            "# comment\nnode1,10.0.0.1 {KEY_A}\n[node2]:2222 {KEY_A}\n*.dfw,!bad.dfw {KEY_A}\ngarbage line\n"
        ));
        assert_eq!(kh.verify("node1", 22, &key(KEY_A)), Verdict::Trusted);
        assert_eq!(
            kh.verify("10.0.0.1", 22, &key(KEY_B)),
            Verdict::Changed { line: 2 }
        );
        assert_eq!(kh.verify("node2", 2222, &key(KEY_A)), Verdict::Trusted);
        assert_eq!(kh.verify("node2", 22, &key(KEY_A)), Verdict::Unknown);
        assert_eq!(kh.verify("a.dfw", 22, &key(KEY_A)), Verdict::Trusted);
        assert_eq!(kh.verify("bad.dfw", 22, &key(KEY_A)), Verdict::Unknown);
        assert_eq!(kh.verify("NODE1", 22, &key(KEY_A)), Verdict::Trusted);
    }

    #[test]
    fn indexed_and_scanned_entries_keep_file_order() {
        // The first line naming the host is reported, whichever kind it is.
        let kh = load(&format!(
            "web?.dfw {KEY_B}
web1.dfw {KEY_B}
web1.dfw {KEY_A}
"
        ));
        assert_eq!(kh.verify("web1.dfw", 22, &key(KEY_A)), Verdict::Trusted);
        let kh = load(&format!(
            "web?.dfw {KEY_B}
web1.dfw {KEY_B}
"
        ));
        assert_eq!(
            kh.verify("web1.dfw", 22, &key(KEY_A)),
            Verdict::Changed { line: 1 }
        );
    }

    #[test]
    fn hashed_entries_match() {
        // `ssh-keygen -H` output for "[127.0.0.5]:2222".
        let kh = load(
            "|1|Keac1dnsyRpTGi4AMplQPYmA4D0=|8TxZF9a/kI7gxGFsIl/QsDpRHcg= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF\n",
        );
        let k =
            key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF");
        assert_eq!(kh.verify("127.0.0.5", 2222, &k), Verdict::Trusted);
        assert_eq!(kh.verify("127.0.0.5", 22, &k), Verdict::Unknown);
    }

    #[test]
    fn revoked_wins_and_learning_persists() {
        let kh = load(&format!("@revoked * {KEY_B}\n"));
        assert_eq!(
            kh.verify("x", 22, &key(KEY_B)),
            Verdict::Revoked { line: 1 }
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/known_hosts");
        let kh = KnownHosts::load(&path).expect("missing file is empty");
        assert_eq!(kh.verify("h", 2200, &key(KEY_A)), Verdict::Unknown);
        kh.learn("h", 2200, &key(KEY_A)).expect("learns");
        assert_eq!(kh.verify("h", 2200, &key(KEY_A)), Verdict::Trusted);
        let again = KnownHosts::load(&path).expect("reloads");
        assert_eq!(again.verify("h", 2200, &key(KEY_A)), Verdict::Trusted);
    }
}
