//! `Percent::from_str` on any text: never panics, and what it accepts
//! prints back to the same percent.
#![no_main]

use async_upload_rollout::Percent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(percent) = text.parse::<Percent>() {
        assert!(percent.ppm() <= 1_000_000, "{text:?} gave {percent:?}");
        let printed = percent.to_string();
        let back: Percent = printed
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} -> {printed:?} does not parse back: {e}"));
        assert_eq!(back, percent, "{text:?} -> {printed:?}");
    }
});
