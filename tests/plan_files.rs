//! Plan files: the default round-trips, and every kind of bad plan is a load
//! error that names the field (and the file).

use async_upload_rollout::{
    RolloutPlan,
    judge::{EvaluationMode, LatencyStatistic, PlanError},
};

const STAGES: &str = r#"
[[stages]]
percent = 10
[[stages]]
percent = 50
"#;

#[test]
fn the_default_plan_is_the_week_2_plan() {
    let plan = RolloutPlan::default();
    let percents: Vec<String> = plan.stages.iter().map(|s| s.percent.to_string()).collect();
    assert_eq!(percents, ["1%", "10%", "50%", "100%"]);
    let ten = &plan.stages[1].criteria;
    assert_eq!(
        (
            ten.min_success_rate,
            ten.max_latency_ratio,
            ten.max_error_rate,
            ten.min_uploads
        ),
        (0.99, 1.05, 0.01, 500)
    );
    let fifty = &plan.stages[2].criteria;
    assert_eq!(
        (
            fifty.min_success_rate,
            fifty.max_latency_ratio,
            fifty.max_error_rate,
            fifty.min_uploads
        ),
        (0.985, 1.02, 0.015, 2000)
    );
    let t = &plan.triggers;
    assert_eq!(
        (t.min_success_rate, t.max_error_rate, t.max_memory_growth),
        (0.95, 0.05, 0.20)
    );
    assert_eq!(t.review_success_band, [0.95, 0.97]);
    assert_eq!(t.review_latency_ratio, 1.20);
    assert_eq!(plan.evaluation.mode, EvaluationMode::Guarded);
    assert_eq!(ten.latency_statistic, LatencyStatistic::Quantile(0.5));
    plan.validate().unwrap();
}

#[test]
fn the_default_plan_round_trips_through_toml_and_json() {
    let plan = RolloutPlan::default();
    let toml = plan.to_toml_string();
    assert_eq!(RolloutPlan::from_toml_str(&toml).unwrap(), plan, "{toml}");
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(RolloutPlan::from_json_str(&json).unwrap(), plan);
}

#[test]
fn every_invalid_plan_names_the_offending_field() {
    // (what is wrong, plan text, text the error must contain)
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown top-level field",
            format!("colour = \"red\"\n{STAGES}"),
            "colour",
        ),
        (
            "unknown stage field",
            "[[stages]]\npercent = 10\nname_typo = 1\n".into(),
            "name_typo",
        ),
        (
            "unknown criteria field",
            "[[stages]]\npercent = 10\ncriteria = { min_sucess_rate = 0.99 }\n".into(),
            "min_sucess_rate",
        ),
        (
            "unknown trigger field",
            format!("[triggers]\nmax_errors = 0.1\n{STAGES}"),
            "max_errors",
        ),
        (
            "rate over 1",
            "[[stages]]\npercent = 10\ncriteria = { min_success_rate = 99.0 }\n".into(),
            "stages[0].criteria.min_success_rate",
        ),
        (
            "negative rate",
            "[[stages]]\npercent = 10\ncriteria = { max_error_rate = -0.01 }\n".into(),
            "stages[0].criteria.max_error_rate",
        ),
        (
            "trigger rate over 1",
            format!("[triggers]\nmax_error_rate = 5.0\n{STAGES}"),
            "triggers.max_error_rate",
        ),
        (
            "percent over 100",
            "[[stages]]\npercent = 150\n".into(),
            "150",
        ),
        (
            "percents out of order",
            "[[stages]]\npercent = 50\n[[stages]]\npercent = 10\n".into(),
            "stages[1].percent",
        ),
        (
            "percents repeated",
            "[[stages]]\npercent = 10\n[[stages]]\npercent = 10\n".into(),
            "stages[1].percent",
        ),
        ("no stages", "stages = []\n".into(), "stages"),
        (
            "review band reversed (max below min)",
            format!("[triggers]\nreview_success_band = [0.97, 0.95]\n{STAGES}"),
            "triggers.review_success_band",
        ),
        (
            "stage accepts less than the rollback floor",
            format!("[triggers]\nmin_success_rate = 0.995\n{STAGES}"),
            "stages[0].criteria.min_success_rate",
        ),
        (
            "stage accepts more errors than the rollback ceiling",
            "[[stages]]\npercent = 10\ncriteria = { max_error_rate = 0.2 }\n".into(),
            "stages[0].criteria.max_error_rate",
        ),
        (
            "stage accepts more latency than review",
            "[[stages]]\npercent = 10\ncriteria = { max_latency_ratio = 1.5 }\n".into(),
            "stages[0].criteria.max_latency_ratio",
        ),
        (
            "zero latency ratio",
            "[[stages]]\npercent = 10\ncriteria = { max_latency_ratio = 0.0 }\n".into(),
            "max_latency_ratio",
        ),
        (
            "confidence of 1",
            format!("[evaluation]\nconfidence = 1.0\n{STAGES}"),
            "evaluation.confidence",
        ),
        (
            "unknown mode",
            format!("[evaluation]\nmode = \"strict\"\n{STAGES}"),
            "strict",
        ),
        (
            "bad duration",
            "[[stages]]\npercent = 10\ncriteria = { min_duration = \"two days\" }\n".into(),
            "two days",
        ),
        (
            "bad latency statistic",
            "[[stages]]\npercent = 10\ncriteria = { latency_statistic = \"p150\" }\n".into(),
            "p150",
        ),
        (
            "missing stages",
            "[evaluation]\nmode = \"literal\"\n".into(),
            "stages",
        ),
    ];
    for (what, text, needle) in cases {
        let err = RolloutPlan::from_toml_str(text).expect_err(what);
        let message = err.to_string();
        assert!(
            message.contains(needle),
            "{what}: {message:?} should contain {needle:?}"
        );
    }
}

#[test]
fn toml_parse_errors_give_the_line() {
    let err = RolloutPlan::from_toml_str(
        "[[stages]]\npercent = 10\n\ncriteria = { min_uploads = \"many\" }\n",
    )
    .unwrap_err();
    assert!(matches!(err, PlanError::Parse { .. }));
    assert!(err.to_string().contains("line 4"), "{err}");
}

#[test]
fn loading_a_file_names_the_file_and_reads_json_or_toml() {
    let dir = std::env::temp_dir().join(format!("aur-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let good = dir.join("plan.toml");
    std::fs::write(&good, format!("[evaluation]\nmode = \"literal\"\n{STAGES}")).unwrap();
    let plan = RolloutPlan::load(&good).unwrap();
    assert_eq!(plan.evaluation.mode, EvaluationMode::Literal);
    assert_eq!(plan.stages.len(), 2);

    let json = dir.join("plan.json");
    std::fs::write(
        &json,
        serde_json::to_string(&RolloutPlan::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(RolloutPlan::load(&json).unwrap(), RolloutPlan::default());

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[stages]]\npercent = 50\n[[stages]]\npercent = 10\n").unwrap();
    let message = RolloutPlan::load(&bad).unwrap_err().to_string();
    assert!(
        message.contains("bad.toml") && message.contains("stages[1].percent"),
        "{message}"
    );

    let missing = dir.join("missing.toml");
    let err = RolloutPlan::load(&missing).unwrap_err();
    assert!(
        matches!(err, PlanError::Read { .. }) && err.to_string().contains("missing.toml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
