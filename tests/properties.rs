//! Property tests of the decision core: widening, rollback, parsing.

use async_upload_rollout::{Percent, Rollout, RolloutConfig};
use proptest::prelude::*;

fn percent() -> impl Strategy<Value = Percent> {
    prop_oneof![
        Just(Percent::ZERO),
        Just(Percent::HUNDRED),
        (0..=Percent::MAX_PPM).prop_map(|ppm| Percent::from_ppm(ppm).unwrap()),
    ]
}

fn ids() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 1..64)
}

fn cohort(rollout: &Rollout, ids: &[Vec<u8>]) -> Vec<bool> {
    ids.iter().map(|id| rollout.should_use_async(id)).collect()
}

proptest! {
    #[test]
    fn widening_never_drops_an_id(ids in ids(), a in percent(), b in percent(), salt in ".{0,16}") {
        let (p, q) = if a <= b { (a, b) } else { (b, a) };
        let rollout = Rollout::new(RolloutConfig { salt, ..RolloutConfig::with_percent(p) });
        let at_p = cohort(&rollout, &ids);
        rollout.set_percent(q);
        let at_q = cohort(&rollout, &ids);
        for (i, (&in_p, &in_q)) in at_p.iter().zip(&at_q).enumerate() {
            prop_assert!(!in_p || in_q, "id {:?} in at {} but out at {}", ids[i], p, q);
        }
    }

    #[test]
    fn narrowing_back_restores_exactly_the_old_cohort(ids in ids(), p in percent(), q in percent()) {
        let rollout = Rollout::new(RolloutConfig::with_percent(p));
        let before = cohort(&rollout, &ids);
        rollout.set_percent(q);
        rollout.set_percent(Percent::ZERO);
        rollout.set_percent(p);
        prop_assert_eq!(cohort(&rollout, &ids), before);
    }

    #[test]
    fn decision_is_bucket_below_threshold(ids in ids(), p in percent()) {
        let rollout = Rollout::new(RolloutConfig::with_percent(p));
        for id in &ids {
            let bucket = rollout.bucket(id);
            prop_assert!(bucket < 1_000_000);
            prop_assert_eq!(rollout.should_use_async(id), bucket < p.ppm());
        }
    }

    #[test]
    fn percent_display_parses_back_to_the_same_value(p in percent()) {
        prop_assert_eq!(p.to_string().parse::<Percent>(), Ok(p));
    }

    #[test]
    fn percent_serde_round_trips(p in percent()) {
        let json = serde_json::to_string(&p).unwrap();
        prop_assert_eq!(serde_json::from_str::<Percent>(&json).unwrap(), p);
        let quoted = serde_json::to_string(&p.to_string()).unwrap();
        prop_assert_eq!(serde_json::from_str::<Percent>(&quoted).unwrap(), p);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in ".{0,24}") {
        if let Err(err) = text.parse::<Percent>() {
            prop_assert_eq!(err.text(), text.as_str());
        }
    }

    #[test]
    fn parsing_accepts_every_number_with_up_to_four_decimals(whole in 0u32..=100, frac in 0u32..10_000, decimals in 0usize..=4) {
        let frac = frac % 10u32.pow(decimals as u32);
        let text = if decimals == 0 { whole.to_string() } else { format!("{whole}.{frac:0decimals$}") };
        let expected = whole * 10_000 + frac * 10u32.pow(4 - decimals as u32);
        let parsed = text.parse::<Percent>();
        if expected <= 1_000_000 {
            prop_assert_eq!(parsed.map(Percent::ppm), Ok(expected));
        } else {
            prop_assert!(parsed.is_err());
        }
    }
}
