//! `[secrets]`: values read from the runner's environment, available as
//! `secret.NAME`, and masked as `******` in everything fleetfix writes.

use std::borrow::Cow;

use crate::config::playbook::SecretSpec;
use crate::support::error::{Error, SourceFile};
use crate::support::quote::shell_quote;

/// What every secret is replaced with.
pub(crate) const MASK: &str = "******";

/// The shortest start of a secret masked where a text was cut: shorter
/// ones are too common in any text to tell.
const PARTIAL: usize = 3;

/// Secret values by name, and warnings about the ones left unset.
pub(crate) type Resolved = (Vec<(String, String)>, Vec<String>);

/// Reads each secret's environment variable. A missing one is bad input
/// when the secrets are `required` (a run); otherwise (`check`, `plan`,
/// which send nothing) it stands in as `******` and yields a warning.
pub(crate) fn resolve(
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

    /// `text` with every secret replaced by `******`, and the start of one
    /// where the text was cut (its end, the `…` of a shortened text, the
    /// mark of output past the cap) masked too.
    pub fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let whole = self.needles.iter().any(|n| text.contains(n.as_str()));
        if !whole
            && self
                .cut_points(text)
                .all(|at| self.partial_before(text, at).is_none())
        {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        // Back to front, so earlier cut points keep their offsets.
        let mut cuts: Vec<usize> = self.cut_points(&out).collect();
        cuts.sort_unstable();
        cuts.dedup();
        for at in cuts.into_iter().rev() {
            if let Some(from) = self.partial_before(&out, at) {
                out.replace_range(from..at, MASK);
            }
        }
        Cow::Owned(out)
    }

    /// Where `text` may have been cut: its end, before a `…`, and before
    /// the mark of output dropped past the cap.
    fn cut_points<'a>(&self, text: &'a str) -> impl Iterator<Item = usize> + 'a {
        let marks = text
            .match_indices(['…', '\u{fffd}'])
            .map(|(i, _)| i)
            .chain(text.find(crate::support::text::TRUNCATED))
            .filter(|&i| i > 0);
        std::iter::once(text.len()).chain(marks)
    }

    /// The start of the longest end of `text[..at]` (after a broken
    /// character, if any) that begins a secret and is at least
    /// [`PARTIAL`] characters long.
    fn partial_before(&self, text: &str, at: usize) -> Option<usize> {
        let head = text[..at].trim_end_matches('\u{fffd}');
        self.needles.iter().find_map(|n| {
            let longest = head.len().min(n.len().saturating_sub(1));
            (PARTIAL..=longest)
                .rev()
                .filter(|&k| head.is_char_boundary(head.len() - k) && n.is_char_boundary(k))
                .find(|&k| head[head.len() - k..] == n[..k])
                .map(|k| head.len() - k)
        })
    }

    /// The error with secret values masked in its message (the error layer
    /// knows nothing of secrets; masking is this module's one job).
    pub fn mask_error(&self, error: Error) -> Error {
        match error {
            Error::Input(mut e) => {
                self.mask_in_place(&mut e.message);
                Error::Input(e)
            }
            Error::Runtime { mut message } => {
                self.mask_in_place(&mut message);
                Error::Runtime { message }
            }
            other => other,
        }
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
    use crate::transport::Captured;

    /// No start or end of `secret` longer than PARTIAL - 1 chars in `text`.
    fn assert_no_part(text: &str, secret: &str, context: &str) {
        let chars: Vec<char> = secret.chars().collect();
        for k in PARTIAL..=chars.len() {
            let head: String = chars[..k].iter().collect();
            let tail: String = chars[chars.len() - k..].iter().collect();
            assert!(
                !text.contains(&head),
                "{context}: {head:?} survived in {text:?}"
            );
            assert!(
                !text.contains(&tail),
                "{context}: {tail:?} survived in {text:?}"
            );
        }
    }

    /// The output cap cuts a secret at every position, whatever chunks the
    /// stream came in: nothing of it longer than a few chars survives.
    #[test]
    fn a_secret_cut_by_the_output_cap_leaves_nothing_at_any_position() {
        let secrets = [
            "Zq8-vercel-token-7f3a9c1e-Y2kX-0b1d5e9a4f",
            "pässwörd-ünd-µore-ĉhars",
        ];
        // Every cut position under a small cap; some under the default one.
        let cases = secrets.iter().flat_map(|s| {
            let every = (0..=s.len()).map(move |b| (*s, 4096, b));
            let default =
                [0, s.len() / 2, s.len()].map(|b| (*s, crate::executor::DEFAULT_OUTPUT_CAP, b));
            every.chain(default)
        });
        for (secret, cap, before_cap) in cases {
            let masker = Masker::new([secret]);
            let filler = ".".repeat(cap - before_cap);
            let rest = format!("{secret} and after");
            for chunk in [1usize, 3, 7, rest.len()] {
                let mut captured = Captured::default();
                captured.push(filler.as_bytes(), cap);
                for part in rest.as_bytes().chunks(chunk) {
                    captured.push(part, cap);
                }
                let text = captured.text();
                let masked = masker.mask(&text);
                // Only the end can hold any of it: the rest is filler.
                let from = masked.char_indices().rev().nth(200).map_or(0, |(i, _)| i);
                let shown = &masked[from..];
                let context = format!("{before_cap} bytes before the cap, chunks of {chunk}");
                assert_no_part(shown, secret, &context);
                if before_cap >= PARTIAL + 2 {
                    assert!(shown.contains(MASK), "{context}");
                }
            }
        }
    }

    #[test]
    fn a_shortened_text_masks_the_start_of_a_secret_at_its_cut() {
        let m = Masker::new(["secret-value-42"]);
        assert_eq!(m.mask("body: secret-va…"), "body: ******…");
        assert_eq!(m.mask("ends with secr"), "ends with ******");
        assert_eq!(
            m.mask("two chars: se"),
            "two chars: se",
            "too short to tell"
        );
        assert!(matches!(m.mask("nothing at all"), Cow::Borrowed(_)));
    }

    #[test]
    fn masks_raw_and_quoted_forms() {
        let m = Masker::new(["tok'en 1", "abc"]);
        assert_eq!(m.mask("x tok'en 1 y abc"), "x ****** y ******");
        assert_eq!(m.mask("export T='tok'\\''en 1'"), "export T=******");
        assert!(matches!(m.mask("nothing"), Cow::Borrowed(_)));
        assert!(Masker::new([""]).is_empty());
    }
}
