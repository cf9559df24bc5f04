//! `-i PATH` recognised by what it holds: fleetfix TOML, an Ansible INI or
//! YAML inventory, `ansible-inventory --list` JSON, an inventory script, or
//! a directory of them; then `host_vars/` and `group_vars/` beside it, as
//! Ansible's `host_group_vars` plugin reads them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Origin, Sources};
use crate::support::error::{Error, SourceFile};

/// What `-i` named.
pub(crate) enum Form {
    /// fleetfix's own format, resolved by `inventory.rs`.
    Toml(SourceFile),
    Ansible(Sources),
}

/// How long an inventory script may run (`--list`, or all its `--host`
/// calls); `FLEETFIX_INVENTORY_TIMEOUT` (a duration) overrides.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads `path` in whichever form it is.
pub(crate) fn read(path: &Path) -> Result<Form, Error> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        // Reading it says why, in the words every input file's error uses.
        Err(e) => {
            return Err(SourceFile::read(path, "inventory")
                .err()
                .unwrap_or_else(|| io_error(path, e)));
        }
    };
    let mut sources = Sources::default();
    if let Some(toml) = read_entry(path, &meta, &mut sources)? {
        return Ok(Form::Toml(toml));
    }
    read_vars_dirs(&base_dir(path, meta.is_dir()), &mut sources)?;
    Ok(Form::Ansible(sources))
}

/// Reads one path (a directory, a script or a file) into `into`; a
/// fleetfix TOML file is handed back instead, for the caller to decide.
fn read_entry(
    path: &Path,
    meta: &std::fs::Metadata,
    into: &mut Sources,
) -> Result<Option<SourceFile>, Error> {
    if meta.is_dir() {
        read_dir(path, into)?;
    } else if is_script(path, meta) {
        run_script(path, into)?;
    } else {
        let source = SourceFile::read(path, "inventory")?;
        match kind(&source) {
            Kind::Toml => return Ok(Some(source)),
            Kind::Ini => super::ini::read(&source, into)?,
            Kind::Yaml => super::yaml::read(&source, into)?,
            Kind::Json => read_json_file(&source, into)?,
        }
    }
    Ok(None)
}

#[derive(Debug, PartialEq)]
enum Kind {
    Toml,
    Ini,
    Yaml,
    Json,
}

/// The format of a file by its content (a `.toml` name is always TOML, so
/// its errors stay TOML's).
fn kind(source: &SourceFile) -> Kind {
    if source.path.extension().is_some_and(|e| e == "toml") {
        return Kind::Toml;
    }
    let mut lines = source
        .text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
    let Some(first) = lines.next() else {
        return Kind::Ini;
    };
    if first.starts_with('{') {
        return Kind::Json;
    }
    let toml_table = |l: &str| {
        ["[nodes.", "[defaults]", "[jump_hosts.", "[vars]"]
            .iter()
            .any(|t| l.starts_with(t))
    };
    if toml_table(first) || first.starts_with("[[") || is_toml_key(first) {
        return Kind::Toml;
    }
    if first.starts_with("---") || first.starts_with("%YAML") || is_yaml_key(first) {
        return Kind::Yaml;
    }
    Kind::Ini
}

/// `key = value` at the top of a file: TOML (an INI host line has no
/// spaces around `=`).
fn is_toml_key(line: &str) -> bool {
    line.split_once(" = ")
        .is_some_and(|(k, _)| !k.is_empty() && !k.contains(char::is_whitespace))
}

/// `all:` or `web: {hosts: …}`: a YAML mapping key (an INI host line's
/// `host:port` has no space or end after the colon).
fn is_yaml_key(line: &str) -> bool {
    let Some((key, rest)) = line.split_once(':') else {
        return false;
    };
    !key.is_empty()
        && !key.contains(char::is_whitespace)
        && (rest.is_empty() || rest.starts_with(char::is_whitespace))
}

/// An executable file that is a program, not a data file with `+x` (files
/// copied from elsewhere often carry it).
fn is_script(path: &Path, meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o111 == 0 {
        return false;
    }
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n].starts_with(b"#!") || head[..n].starts_with(b"\x7fELF")
}

/// A JSON file: what `ansible-inventory --list` prints (`_meta`, groups
/// with lists of hosts), or the YAML plugin's shape written as JSON, which
/// Ansible's YAML reader takes.
fn read_json_file(source: &SourceFile, into: &mut Sources) -> Result<(), Error> {
    use super::tree::Data;
    let root = super::json::parse(source)?;
    let listing = match &root.data {
        Data::Map(entries) => entries.iter().any(|(k, v)| {
            k.as_str() == Some("_meta")
                || matches!(&v.data, Data::Seq(_))
                || matches!(&v.data, Data::Map(body) if body.iter().any(|(bk, bv)| {
                    bk.as_str() == Some("hosts") && matches!(bv.data, Data::Seq(_))
                }))
        }),
        _ => true,
    };
    if !listing {
        return super::yaml::read(source, into);
    }
    let file: Arc<Path> = Arc::from(source.path.as_path());
    // A file cannot be asked `--host`: hosts it gives no variables have none.
    super::json::read(source, |line| Origin::at(&file, line), into).map(|_| ())
}

/// Files Ansible skips in an inventory directory.
fn ignored(name: &str) -> bool {
    const EXTS: &[&str] = &[
        ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg",
        ".retry",
    ];
    name.starts_with('.')
        || matches!(name, "host_vars" | "group_vars" | "vars_plugins")
        || EXTS.iter().any(|e| name.ends_with(e))
}

/// Every source in a directory, in name order, subdirectories too.
fn read_dir(dir: &Path, into: &mut Sources) -> Result<(), Error> {
    for path in sorted_entries(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if ignored(&name) {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(|e| io_error(&path, e))?;
        if read_entry(&path, &meta, into)?.is_some() {
            return Err(Error::input(
                format!(
                    "{} is a fleetfix TOML inventory inside an Ansible inventory directory",
                    path.display()
                ),
                "pass the TOML file itself with -i; a directory is read as Ansible's",
            ));
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(paths)
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::input(
        format!("cannot read {}: {e}", path.display()),
        "check the path and its permissions",
    )
}

/// Where `host_vars/` and `group_vars/` are looked for: the directory
/// itself, or the one holding the file.
fn base_dir(path: &Path, is_dir: bool) -> PathBuf {
    if is_dir {
        return path.to_path_buf();
    }
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `group_vars/NAME[.yml|.yaml|.json]` or `group_vars/NAME/` (every file
/// in it, in name order), and the same under `host_vars/`, for the groups
/// and hosts the inventory has.
fn read_vars_dirs(base: &Path, into: &mut Sources) -> Result<(), Error> {
    let groups: Vec<String> = into.groups.keys().cloned().collect();
    let group_dir = base.join("group_vars");
    if group_dir.is_dir() {
        for g in groups {
            for file in vars_files(&group_dir, &g)? {
                let vars = super::yaml::read_vars(&SourceFile::read(&file, "group_vars")?)?;
                if let Some(group) = into.groups.get_mut(&g) {
                    group.file_vars.extend(vars);
                }
            }
        }
    }
    let host_dir = base.join("host_vars");
    if host_dir.is_dir() {
        let hosts: Vec<String> = into.hosts.keys().cloned().collect();
        for h in hosts {
            for file in vars_files(&host_dir, &h)? {
                let vars = super::yaml::read_vars(&SourceFile::read(&file, "host_vars")?)?;
                if let Some(host) = into.hosts.get_mut(&h) {
                    host.file_vars.extend(vars);
                }
            }
        }
    }
    Ok(())
}

/// Ansible's `find_vars_files`: `NAME` (a file, or a directory searched
/// recursively), else `NAME.yml`, `NAME.yaml`, `NAME.json`; the first that
/// exists.
fn vars_files(dir: &Path, name: &str) -> Result<Vec<PathBuf>, Error> {
    for ext in ["", ".yml", ".yaml", ".json"] {
        let path = dir.join(format!("{name}{ext}"));
        if path.is_dir() {
            return dir_vars_files(&path);
        }
        if path.is_file() {
            return Ok(vec![path]);
        }
    }
    Ok(Vec::new())
}

fn dir_vars_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut found = Vec::new();
    for path in sorted_entries(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
        match ext.as_deref() {
            None if path.is_dir() => found.extend(dir_vars_files(&path)?),
            None | Some("yml" | "yaml" | "json") if path.is_file() => found.push(path),
            _ => {}
        }
    }
    Ok(found)
}

/// Ansible's dynamic inventory protocol: `SCRIPT --list` prints the
/// inventory as JSON; without `_meta.hostvars` each host is asked with
/// `SCRIPT --host NAME`.
fn run_script(path: &Path, into: &mut Sources) -> Result<(), Error> {
    let deadline = Instant::now() + script_timeout()?;
    let file: Arc<Path> = Arc::from(path);
    let (out, stderr) = run(path, &["--list"], deadline)?;
    let source = SourceFile {
        path: path.to_path_buf(),
        text: Arc::from(out.as_str()),
    };
    let ask = super::json::read(&source, |_| Origin::script(&file), into)
        .map_err(|e| bad_output(e, path, "--list", &stderr))?;
    for host in ask {
        let (out, stderr) = run(path, &["--host", &host], deadline)?;
        let source = SourceFile {
            path: path.to_path_buf(),
            text: Arc::from(out.as_str()),
        };
        super::json::read_host(&source, &host, |_| Origin::script(&file), into)
            .map_err(|e| bad_output(e, path, &format!("--host {host}"), &stderr))?;
    }
    Ok(())
}

/// A script's output that is not the inventory JSON: what is wrong with
/// it, and what the script said on stderr.
fn bad_output(e: Error, path: &Path, args: &str, stderr: &str) -> Error {
    Error::input(
        format!(
            "inventory script {} {args} printed what is not inventory JSON: {}{}",
            path.display(),
            e.one_line(),
            stderr_note(stderr)
        ),
        "an inventory script prints `ansible-inventory --list` JSON on stdout; run it by hand to see",
    )
}

/// The end of a script's stderr, to show with an error.
fn stderr_note(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::from(" (it wrote nothing to stderr)")
    } else {
        format!(
            "; its stderr:\n{}",
            crate::support::text::last_lines(stderr, 20)
        )
    }
}

fn script_timeout() -> Result<Duration, Error> {
    match std::env::var("FLEETFIX_INVENTORY_TIMEOUT") {
        Ok(t) => {
            crate::config::toml_source::duration_text(&t, crate::config::toml_source::Zero::Refused)
                .map_err(|why| {
                    Error::input(
                        format!("FLEETFIX_INVENTORY_TIMEOUT `{t}` {why}"),
                        "give a duration like \"30s\" or \"2m\"",
                    )
                })
        }
        Err(_) => Ok(SCRIPT_TIMEOUT),
    }
}

/// Runs the script with `args`; it must exit 0 before `deadline` and print
/// UTF-8. Returns its stdout and stderr; its stderr is shown in any error.
fn run(path: &Path, args: &[&str], deadline: Instant) -> Result<(String, String), Error> {
    let shown = format!("{} {}", path.display(), args.join(" "));
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::input(
                format!("cannot start inventory script {shown}: {e}"),
                "check its #! line and that it is executable",
            )
        })?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let err_text = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
    let out = stdout.join().unwrap_or_default();
    let stderr_note = stderr_note(&err_text);
    let Some(status) = status else {
        return Err(Error::input(
            format!("inventory script {shown} did not finish in time{stderr_note}"),
            "make the script faster, or allow it more with FLEETFIX_INVENTORY_TIMEOUT=2m",
        ));
    };
    if !status.success() {
        return Err(Error::input(
            format!("inventory script {shown} failed ({status}){stderr_note}"),
            "run the script by hand with the same arguments to see why",
        ));
    }
    let out = String::from_utf8(out).map_err(|e| {
        Error::input(
            format!("inventory script {shown} printed bytes that are not UTF-8 (at byte {}){stderr_note}", e.utf8_error().valid_up_to()),
            "an inventory script prints JSON, which is UTF-8",
        )
    })?;
    Ok((out, err_text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(name: &str, text: &str) -> Kind {
        kind(&SourceFile {
            path: name.into(),
            text: text.into(),
        })
    }

    #[test]
    fn the_format_is_told_by_content() {
        assert_eq!(kind_of("x.toml", "[web]\nh1\n"), Kind::Toml);
        assert_eq!(
            kind_of("inv", "# fleet\n[nodes.a]\nhost = \"x\"\n"),
            Kind::Toml
        );
        assert_eq!(kind_of("inv", "[defaults]\nuser = \"ops\"\n"), Kind::Toml);
        assert_eq!(kind_of("inv", "[web]\nweb1 ansible_host=x\n"), Kind::Ini);
        assert_eq!(kind_of("inv", "web1:2222\n[db]\n"), Kind::Ini);
        assert_eq!(kind_of("hosts", "; c\nweb1 a=b\n"), Kind::Ini);
        assert_eq!(kind_of("inv", "---\nall:\n  hosts:\n"), Kind::Yaml);
        assert_eq!(
            kind_of("inv.yml", "# c\nall:\n  hosts: {a: }\n"),
            Kind::Yaml
        );
        assert_eq!(kind_of("inv", "web: {hosts: {a: }}\n"), Kind::Yaml);
        assert_eq!(kind_of("inv", "  {\"_meta\": {}}"), Kind::Json);
    }

    #[test]
    fn ansible_skips_some_files_in_a_directory() {
        for name in [
            ".hidden",
            "host_vars",
            "group_vars",
            "x.md",
            "hosts~",
            "a.retry",
            "b.cfg",
        ] {
            assert!(ignored(name), "{name}");
        }
        for name in ["hosts", "01-web.ini", "prod.yml", "inventory.py"] {
            assert!(!ignored(name), "{name}");
        }
    }
}
