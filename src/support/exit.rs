//! The process exit codes (SPEC section 2), and the word `fleetfix runs`
//! shows for each, in one place.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a fleetfix process ends. Serialized as its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExitCode {
    /// Every selected node finished ok (changed or unchanged).
    #[default]
    Ok,
    /// At least one node failed a step.
    Failed,
    /// Bad input (CLI, inventory, playbook, template); nothing was run.
    BadInput,
    /// Stopped early: failure budget spent, a gate failed, or interrupted.
    Stopped,
    /// The lock is held by another run.
    Locked,
    /// `--check` found drift and nothing failed.
    Drift,
    /// Some nodes unreachable, none failed a step.
    Unreachable,
}

impl ExitCode {
    pub const ALL: [ExitCode; 7] = [
        ExitCode::Ok,
        ExitCode::Failed,
        ExitCode::BadInput,
        ExitCode::Stopped,
        ExitCode::Locked,
        ExitCode::Drift,
        ExitCode::Unreachable,
    ];

    /// The process exit code.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Failed => 1,
            ExitCode::BadInput => 2,
            ExitCode::Stopped => 3,
            ExitCode::Locked => 4,
            ExitCode::Drift => 5,
            ExitCode::Unreachable => 6,
        }
    }

    pub fn from_code(code: i32) -> Option<ExitCode> {
        ExitCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// One word for a run that ended so, as `fleetfix runs` shows it.
    pub fn word(self) -> &'static str {
        match self {
            ExitCode::Ok => "ok",
            ExitCode::Failed => "failed",
            ExitCode::Stopped => "stopped",
            ExitCode::Drift => "drift",
            ExitCode::Unreachable => "unreachable",
            ExitCode::BadInput | ExitCode::Locked => "error",
        }
    }
}

impl From<ExitCode> for i32 {
    fn from(c: ExitCode) -> i32 {
        c.code()
    }
}

impl PartialEq<i32> for ExitCode {
    fn eq(&self, other: &i32) -> bool {
        self.code() == *other
    }
}

/// The number, as `exit 3` shows it.
impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

impl Serialize for ExitCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.code())
    }
}

impl<'de> Deserialize<'de> for ExitCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = i32::deserialize(d)?;
        ExitCode::from_code(code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown exit code {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_number_and_back() {
        for c in ExitCode::ALL {
            let text = serde_json::to_string(&c).unwrap();
            assert_eq!(text, c.code().to_string());
            assert_eq!(serde_json::from_str::<ExitCode>(&text).unwrap(), c);
        }
        assert!(serde_json::from_str::<ExitCode>("7").is_err());
    }
}
