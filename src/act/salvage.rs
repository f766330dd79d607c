//! [`Salvaged`]: what can still be read of a stored state that cannot be
//! read, so that a rollback written over it keeps its stage and moves its
//! epoch past every epoch seen.

/// What could be read of a stored state that does not parse or breaks an
/// invariant: the largest `"epoch"` and the `"stage"` found in its text, and
/// what is wrong with it.
///
/// A rollback is always accepted: over such a state it writes a readable
/// `rolled_back` state whose epoch is above every epoch seen (this one, the
/// services' acknowledgements, the writer's own), so that the rollout never
/// goes back to an earlier epoch, and whose stage is the one found here when
/// it is one of the plan's (else 0, the smallest: a resume then restarts
/// from the first stage).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Salvaged {
    /// The largest number after an `"epoch"` key in the text, if any.
    pub epoch: Option<u64>,
    /// The number after the first `"stage"` key in the text, if any.
    pub stage: Option<usize>,
    /// Why the content cannot be read (the store's message).
    pub problem: String,
}

impl Salvaged {
    /// Scans `bytes` (a state that does not parse, perhaps cut short) for
    /// `"epoch": N` and `"stage": N`; `problem` says what is wrong with it.
    #[must_use]
    pub fn scan(bytes: &[u8], problem: impl Into<String>) -> Salvaged {
        Salvaged {
            epoch: numbers_after(bytes, b"\"epoch\"").max(),
            stage: numbers_after(bytes, b"\"stage\"")
                .next()
                .and_then(|n| usize::try_from(n).ok()),
            problem: problem.into(),
        }
    }
}

/// The integers that follow `key`, optional whitespace and a `:`.
fn numbers_after<'a>(bytes: &'a [u8], key: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
    let mut from = 0;
    std::iter::from_fn(move || {
        while from < bytes.len() {
            let at = bytes[from..].windows(key.len()).position(|w| w == key)? + from;
            from = at + key.len();
            let rest = &bytes[from..];
            let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
            let Some(rest) = rest.strip_prefix(b":") else {
                continue;
            };
            let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if let Some(n) = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|d| d.parse().ok())
            {
                return Some(n);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_stage_are_found_in_a_state_cut_short() {
        let s = Salvaged::scan(br#"{"epoch": 9, "run_epoch": 12, "stage" :2, "stat"#, "cut");
        assert_eq!((s.epoch, s.stage), (Some(9), Some(2)));
        let s = Salvaged::scan(b"\0\0garbage", "binary");
        assert_eq!((s.epoch, s.stage), (None, None));
        let s = Salvaged::scan(br#"{"epoch":"x","epoch": 4}"#, "twice");
        assert_eq!(s.epoch, Some(4));
        let s = Salvaged::scan(br#"{"stage": null}"#, "off");
        assert_eq!(s.stage, None);
    }
}
