//! Who runs fleetfix, and where: named in the node lock and in `run_started`.

use std::os::unix::fs::MetadataExt;

/// `$USER`, else `$LOGNAME`, else `uid N`.
pub(crate) fn user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(|| {
            // Our own /proc entry is owned by our uid; no extra crate feature.
            std::fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid {}", m.uid()))
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The runner machine's host name, else `unknown`.
pub(crate) fn host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
