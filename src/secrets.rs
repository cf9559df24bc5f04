//! `[secrets]`: values read from the runner's environment, available as
//! `secret.NAME`, and masked as `******` in everything fleetfix writes.

use std::borrow::Cow;

use crate::error::{Error, SourceFile};
use crate::playbook::SecretSpec;
use crate::quote::shell_quote;

/// What every secret is replaced with.
pub const MASK: &str = "******";

/// Secret values by name, and warnings about the ones left unset.
pub type Resolved = (Vec<(String, String)>, Vec<String>);

/// Reads each secret's environment variable. A missing one is bad input
/// when the secrets are `required` (a run); otherwise (`check`, `plan`,
/// which send nothing) it stands in as `******` and yields a warning.
pub fn resolve(
    specs: &[SecretSpec],
    source: &SourceFile,
    required: bool,
) -> Result<Resolved, Error> {
    let mut values = Vec::new();
    let mut warnings = Vec::new();
    for s in specs {
        match std::env::var(&s.env) {
            Ok(v) if !v.is_empty() => values.push((s.name.clone(), v)),
            _ => {
                let err = Error::at(
                    source.locate(s.span.clone()),
                    format!(
                        "secret `{}` needs the environment variable {}, which is not set",
                        s.name, s.env
                    ),
                    format!(
                        "export {}=… on the runner before the run (it is never written anywhere)",
                        s.env
                    ),
                );
                if required {
                    return Err(err);
                }
                warnings.push(format!("warning: {}", err.one_line()));
                values.push((s.name.clone(), MASK.to_string()));
            }
        }
    }
    Ok((values, warnings))
}

/// Replaces secret values in text. Built once per run.
#[derive(Debug, Default, Clone)]
pub struct Masker {
    /// Raw values and their shell-quoted forms, longest first.
    needles: Vec<String>,
}

impl Masker {
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for v in values.into_iter().filter(|v| !v.is_empty()) {
            for form in [v.to_string(), shell_quote(v)] {
                if !needles.contains(&form) {
                    needles.push(form);
                }
            }
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Masker { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every secret replaced by `******`.
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if !self.needles.iter().any(|n| text.contains(n.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        Cow::Owned(out)
    }

    /// Masks a string in place.
    pub fn mask_in_place(&self, text: &mut String) {
        if let Cow::Owned(masked) = self.mask(text) {
            *text = masked;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_raw_and_quoted_forms() {
        let m = Masker::new(["tok'en 1", "abc"]);
        assert_eq!(m.mask("x tok'en 1 y abc"), "x ****** y ******");
        assert_eq!(m.mask("export T='tok'\\''en 1'"), "export T=******");
        assert!(matches!(m.mask("nothing"), Cow::Borrowed(_)));
        assert!(Masker::new([""]).is_empty());
    }
}
