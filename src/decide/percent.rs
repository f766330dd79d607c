//! [`Percent`]: a validated rollout fraction in parts per million.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Parts per million in one whole percent.
const PPM_PER_PERCENT: u32 = 10_000;
/// Decimal places a [`Percent`] keeps: 1 ppm is 0.0001%.
const MAX_DECIMALS: usize = 4;

/// A rollout fraction from 0% to 100%, stored as parts per million.
///
/// The finest step is 1 ppm = 0.0001%, so a rollout can start with one upload
/// in a million. A `Percent` is always valid: every way to build one checks the
/// range, which is why the hot path never re-checks it.
///
/// An upload id is in the rollout iff its bucket (in `0..1_000_000`) is below
/// [`ppm`](Percent::ppm); see [`Rollout::should_use_async`](crate::Rollout::should_use_async).
///
/// # Examples
///
/// ```
/// use async_upload_rollout::Percent;
///
/// let p: Percent = "12.5%".parse()?;
/// assert_eq!(p.ppm(), 125_000);
/// assert_eq!(p.to_string(), "12.5%");
/// assert_eq!(Percent::from_ppm(5_000)?.to_string(), "0.5%");
/// assert!(" 101 ".parse::<Percent>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// With serde, a `Percent` is written as a number (`10`, `0.5`) and read from a
/// number or from the same text [`FromStr`] accepts (`"10%"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u32);

impl Percent {
    /// Largest value: 100% as parts per million.
    pub const MAX_PPM: u32 = 1_000_000;
    /// 0%: nobody takes the new path.
    pub const ZERO: Percent = Percent(0);
    /// 100%: everybody takes the new path.
    pub const HUNDRED: Percent = Percent(Self::MAX_PPM);

    /// Builds a `Percent` from parts per million (`10_000` is 1%).
    ///
    /// # Errors
    ///
    /// [`PercentOutOfRange`] when `ppm` is above 1,000,000.
    pub const fn from_ppm(ppm: u32) -> Result<Percent, PercentOutOfRange> {
        if ppm <= Self::MAX_PPM {
            Ok(Percent(ppm))
        } else {
            Err(PercentOutOfRange { ppm })
        }
    }

    /// Builds a `Percent` from a whole number of percent (`10` is 10%).
    ///
    /// # Errors
    ///
    /// [`PercentOutOfRange`] when `percent` is above 100.
    pub const fn from_whole(percent: u32) -> Result<Percent, PercentOutOfRange> {
        if percent <= 100 {
            Ok(Percent(percent * PPM_PER_PERCENT))
        } else {
            Err(PercentOutOfRange {
                ppm: percent.saturating_mul(PPM_PER_PERCENT),
            })
        }
    }

    /// The fraction in parts per million, `0..=1_000_000`.
    #[must_use]
    pub const fn ppm(self) -> u32 {
        self.0
    }

    /// The fraction as a percentage, `0.0..=100.0` (for display and metrics).
    #[must_use]
    pub fn as_percent_f64(self) -> f64 {
        f64::from(self.0) / f64::from(PPM_PER_PERCENT)
    }

    /// The fraction as a ratio, `0.0..=1.0`.
    #[must_use]
    pub fn as_ratio(self) -> f64 {
        f64::from(self.0) / f64::from(Self::MAX_PPM)
    }
}

impl fmt::Display for Percent {
    /// Shortest exact form: `10%`, `0.5%`, `12.3456%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / PPM_PER_PERCENT;
        let mut frac = self.0 % PPM_PER_PERCENT;
        if frac == 0 {
            return write!(f, "{whole}%");
        }
        let mut width = MAX_DECIMALS;
        while frac.is_multiple_of(10) {
            frac /= 10;
            width -= 1;
        }
        write!(f, "{whole}.{frac:0width$}%")
    }
}

/// A parts-per-million value above 1,000,000 (100%).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rollout fraction of {ppm} parts per million is over 100% (1000000 ppm)")]
pub struct PercentOutOfRange {
    /// The rejected value, in parts per million.
    pub ppm: u32,
}

/// Text that is not a rollout percent. The message quotes the text.
///
/// Accepted: a decimal number from 0 to 100 with at most four decimals, an
/// optional `%` sign and surrounding whitespace (`10`, `10%`, `0.5`, `12.3456`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rollout percent {text:?}: {kind}")]
pub struct ParsePercentError {
    text: String,
    kind: ParsePercentErrorKind,
}

impl ParsePercentError {
    /// The text that failed to parse, as given.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Why it failed.
    #[must_use]
    pub fn kind(&self) -> ParsePercentErrorKind {
        self.kind
    }
}

/// Why a text is not a [`Percent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParsePercentErrorKind {
    /// Nothing but whitespace (or a lone `%`).
    #[error("it is empty; expected a number from 0 to 100 such as 10 or 0.5")]
    Empty,
    /// A leading `+` or `-`.
    #[error("signs are not allowed; expected a number from 0 to 100")]
    Sign,
    /// More than four digits after the decimal point.
    #[error("at most 4 decimals are allowed (the finest step is 0.0001%)")]
    TooManyDecimals,
    /// A number above 100.
    #[error("it is over 100")]
    OverHundred,
    /// Anything else: letters, exponents, `NaN`, several points, a missing digit.
    #[error("expected a number from 0 to 100 with at most 4 decimals, such as 10, 10% or 0.5")]
    Invalid,
}

impl FromStr for Percent {
    type Err = ParsePercentError;

    fn from_str(text: &str) -> Result<Percent, ParsePercentError> {
        parse_ppm(text)
            .map(Percent)
            .map_err(|kind| ParsePercentError {
                text: text.to_owned(),
                kind,
            })
    }
}

fn parse_ppm(text: &str) -> Result<u32, ParsePercentErrorKind> {
    use ParsePercentErrorKind as K;

    let trimmed = text.trim();
    let number = trimmed.strip_suffix('%').unwrap_or(trimmed).trim_end();
    if number.is_empty() {
        return Err(K::Empty);
    }
    if number.starts_with(['+', '-']) {
        return Err(K::Sign);
    }
    let (whole, frac) = match number.split_once('.') {
        Some((whole, frac)) => (whole, Some(frac)),
        None => (number, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(K::Invalid);
    }
    let frac = frac.unwrap_or("");
    if frac.len() > MAX_DECIMALS {
        return Err(K::TooManyDecimals);
    }
    // Leading zeros are fine ("007"); anything longer than three significant
    // digits is over 100 and must not overflow the accumulator below.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 3 {
        return Err(K::OverHundred);
    }
    let digits = |s: &str| s.bytes().fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    let mut frac_ppm = digits(frac);
    for _ in frac.len()..MAX_DECIMALS {
        frac_ppm *= 10;
    }
    let ppm = digits(whole) * PPM_PER_PERCENT + frac_ppm;
    if ppm > Percent::MAX_PPM {
        return Err(K::OverHundred);
    }
    Ok(ppm)
}

impl Serialize for Percent {
    /// Written as a number of percent: an integer when whole (`10`), else a
    /// float whose shortest form is exact (`0.5`, `12.3456`).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_multiple_of(PPM_PER_PERCENT) {
            serializer.serialize_u32(self.0 / PPM_PER_PERCENT)
        } else {
            serializer.serialize_f64(self.as_percent_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Percent, D::Error> {
        deserializer.deserialize_any(PercentVisitor)
    }
}

struct PercentVisitor;

impl Visitor<'_> for PercentVisitor {
    type Value = Percent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a rollout percent from 0 to 100 with at most 4 decimals, as a number or text like \"10%\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Percent, E> {
        u32::try_from(v)
            .ok()
            .and_then(|v| Percent::from_whole(v).ok())
            .ok_or_else(|| E::custom(format_args!("invalid rollout percent {v}: it is over 100")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Percent, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format_args!(
                "invalid rollout percent {v}: signs are not allowed; expected a number from 0 to 100"
            ))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Percent, E> {
        // `Display` for f64 prints the shortest text that reads back as the
        // same float, so 0.5 becomes "0.5" and 12.3456 becomes "12.3456";
        // the text parser then applies the same rules as everywhere else.
        self.visit_str(&v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let cases: &[(&str, u32)] = &[
            ("0", 0),
            ("10", 100_000),
            ("10%", 100_000),
            (" 10 % ", 100_000),
            ("\t0.5\n", 5_000),
            ("12.3456", 123_456),
            ("0.0001", 1),
            ("100", 1_000_000),
            ("100.0000", 1_000_000),
            ("007", 70_000),
            ("1.5%", 15_000),
        ];
        for &(text, ppm) in cases {
            assert_eq!(
                text.parse::<Percent>().map(Percent::ppm),
                Ok(ppm),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejected_forms_name_the_text_and_the_reason() {
        use ParsePercentErrorKind as K;
        let cases: &[(&str, K)] = &[
            ("", K::Empty),
            ("   ", K::Empty),
            ("%", K::Empty),
            ("-1", K::Sign),
            ("+5", K::Sign),
            ("NaN", K::Invalid),
            ("nan", K::Invalid),
            ("inf", K::Invalid),
            ("1e1", K::Invalid),
            ("1E-2", K::Invalid),
            ("0x10", K::Invalid),
            ("ten", K::Invalid),
            ("1.2.3", K::Invalid),
            (".5", K::Invalid),
            ("5.", K::Invalid),
            ("1 0", K::Invalid),
            ("10%%", K::Invalid),
            ("1,5", K::Invalid),
            ("0.00001", K::TooManyDecimals),
            ("12.34567", K::TooManyDecimals),
            ("100.0001", K::OverHundred),
            ("101", K::OverHundred),
            ("99999999999999999999", K::OverHundred),
        ];
        for &(text, kind) in cases {
            let err = text.parse::<Percent>().unwrap_err();
            assert_eq!(err.kind(), kind, "{text:?}");
            assert_eq!(err.text(), text);
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
    }

    #[test]
    fn display_is_shortest_exact_form() {
        let cases: &[(u32, &str)] = &[
            (0, "0%"),
            (1, "0.0001%"),
            (5_000, "0.5%"),
            (100_000, "10%"),
            (123_450, "12.345%"),
            (1_000_000, "100%"),
        ];
        for &(ppm, text) in cases {
            assert_eq!(Percent::from_ppm(ppm).unwrap().to_string(), text);
        }
    }

    #[test]
    fn out_of_range_constructors_fail() {
        assert_eq!(
            Percent::from_ppm(1_000_001),
            Err(PercentOutOfRange { ppm: 1_000_001 })
        );
        assert!(Percent::from_whole(101).is_err());
        assert_eq!(Percent::from_whole(100), Ok(Percent::HUNDRED));
    }
}
