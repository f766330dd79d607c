//! The status dashboard and daily report: one self-contained HTML file.
//!
//! # What the charts show
//!
//! The log is cut into equal time bins (about 240 over the log's span,
//! rounded to 1 min … 1 day). Each solid point is the uploads **in one bin**:
//! the differences of consecutive tick snapshots of one stage run
//! (`later.since(earlier)`, exact), whose later tick falls in the bin,
//! summed over instances. A bin needs
//! [`sustain_min_uploads`](crate::judge::EvaluationSettings::sustain_min_uploads)
//! judged uploads on an arm to get a point, so a 1% stage's sparse traffic
//! shows gaps instead of noise. The thin dashed line is the stage's
//! **cumulative** totals at the end of each bin (what the stage criteria
//! judge). Thresholds are drawn per stage (the stage's criterion) and across
//! the whole chart (the rollback or review trigger); stage changes, rollbacks,
//! reviews and resumes are vertical lines.
//!
//! One concept in one file of about 1136 lines (18 of them its unit tests, 69
//! docs): one self-contained HTML page: its layout, charts and text are
//! generated together.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::time::Duration;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::act::state::RolloutStatus;
use crate::clock::from_unix_ms;
use crate::judge::plan::{LatencyStatistic, RolloutPlan};
use crate::judge::{CheckKind, CheckStatus, Evaluation, Verdict};
use crate::metrics::{Arm, MetricsSnapshot};

use super::check::{interval_text, observed_text, threshold_text};
use super::error::CliError;
use super::fleet::{CheckOutcome, Fleet};
use super::timeline::{BIN_MINUTES, MAX_TABLE_ROWS, MarkKind, Row, TARGET_BINS, bin_at_least};

/// Chart size in pixels.
const CHART_SIZE: (u32, u32) = (1200, 300);
/// Radius of the marker that shows a point with no neighbour to join.
const MARKER_RADIUS: u32 = 3;

const ASYNC_COLOR: RGBColor = RGBColor(31, 119, 180);
const SYNC_COLOR: RGBColor = RGBColor(127, 127, 127);
const TARGET_COLOR: RGBColor = RGBColor(44, 160, 44);
const TRIGGER_COLOR: RGBColor = RGBColor(214, 39, 40);
const REVIEW_COLOR: RGBColor = RGBColor(255, 127, 14);
const MARK_COLOR: RGBColor = RGBColor(148, 103, 189);
const CUMULATIVE_COLOR: RGBColor = RGBColor(23, 190, 207);
/// Spacing of the time axis' labels to choose from, in hours.
const LABEL_HOURS: [u64; 9] = [1, 2, 3, 6, 12, 24, 48, 72, 168];

/// What [`report_html`] needs besides the logs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ReportOptions {
    /// The plan whose thresholds are drawn and whose evaluator judges the
    /// current state.
    pub plan: RolloutPlan,
    /// The verdict table covers this much time before the latest line
    /// (default 24 hours: the day's verdicts).
    pub table_span: Duration,
    /// The page's title.
    pub title: String,
}

impl Default for ReportOptions {
    fn default() -> ReportOptions {
        ReportOptions {
            plan: RolloutPlan::default(),
            table_span: Duration::from_secs(24 * 3600),
            title: "Async upload rollout: status and daily report".to_owned(),
        }
    }
}

/// The status dashboard and daily report for `fleet`, as one self-contained
/// HTML page: the current verdict with every check (as `check` prints it),
/// totals per arm, SVG charts over the whole log (rollout percent, success
/// rate, error rate, latency ratio, latency per arm; thresholds as lines,
/// stage changes and rollbacks marked), and a table of the verdicts and
/// actions of the last [`table_span`](ReportOptions::table_span). All text
/// from the logs is HTML-escaped.
///
/// # Errors
///
/// [`CliError::Chart`] when a chart cannot be drawn. A fleet whose current
/// state cannot be judged (no stage, no snapshot) still gets a report, with
/// the reason in place of the verdict.
pub fn report_html(fleet: &Fleet, options: &ReportOptions) -> Result<String, CliError> {
    let data = ReportData::build(fleet, &options.plan);
    let mut html = String::with_capacity(256 * 1024);
    let title = escape(&options.title);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(
        html,
        "<p class=\"meta\">Log span {} – {} (UTC). Generated from {} log{}.</p>",
        date_time(data.t_min),
        date_time(data.t_max),
        fleet.instances().len(),
        if fleet.instances().len() == 1 {
            ""
        } else {
            "s"
        }
    );

    status_section(&mut html, fleet, options);
    instances_section(&mut html, fleet);

    html.push_str("<h2>Over time</h2>\n");
    let _ = writeln!(
        html,
        "<p class=\"note\">Solid lines: the uploads in each {} bin (differences of consecutive tick snapshots within a stage, summed over instances; a bin needs {} judged uploads on an arm to be drawn). Dashed cyan: the async path's cumulative totals of the current stage, which is what the stage criteria judge. Green dashed: the stage's criterion; red dashed: the rollback trigger; orange dashed: the review trigger. Vertical lines: stage changes and operator or controller actions.</p>",
        escape(&humantime::format_duration(Duration::from_millis(data.bin_ms)).to_string()),
        data.min_n
    );
    for chart in [
        Chart::Percent,
        Chart::SuccessRate,
        Chart::ErrorRate,
        Chart::LatencyRatio,
        Chart::Latency,
    ] {
        let (svg, legend) = draw_chart(&data, &options.plan, chart)?;
        let _ = writeln!(
            html,
            "<figure class=\"chart\" id=\"{}\">\n{svg}\n<figcaption class=\"legend\">",
            chart.id()
        );
        for (label, color, dashed) in legend {
            let _ = write!(
                html,
                "<span><svg width=\"28\" height=\"10\"><line x1=\"0\" y1=\"5\" x2=\"28\" y2=\"5\" stroke=\"#{:02x}{:02x}{:02x}\" stroke-width=\"{}\"{}/></svg> {}</span>",
                color.0,
                color.1,
                color.2,
                if dashed { 1.5 } else { 2.5 },
                if dashed {
                    " stroke-dasharray=\"6 4\""
                } else {
                    ""
                },
                escape(&label)
            );
        }
        html.push_str("</figcaption>\n</figure>\n");
    }

    verdict_table(&mut html, fleet, &data, options);
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#222;max-width:1240px}\
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;font-size:13px;margin:8px 0}\
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f4f4f4}td.time{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{font-weight:bold;padding:2px 8px;border-radius:4px;color:#fff}\
.advance{background:#2ca02c}.hold{background:#7f7f7f}.manual_review{background:#ff7f0e}.rollback{background:#d62728}\
.pass{color:#2ca02c}.fail{color:#d62728;font-weight:bold}.not_enough_data{color:#7f7f7f}\
.note,.meta{color:#555;font-size:13px}.warn{color:#b35900}\
figure.chart{margin:12px 0}.legend{font-size:13px;margin-left:80px}.legend span{margin-right:18px;white-space:nowrap}.legend svg{vertical-align:middle}figure.chart svg{max-width:100%;height:auto}";

/// Escapes `text` for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `2025-11-05 06:00` (UTC); past 9999-12-31, which RFC 3339 cannot write,
/// the milliseconds themselves (`18446744073709551615 ms since 1970`).
fn date_time(ms: u64) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    // humantime's Display fails beyond year 9999 (`to_string` panicked on
    // it: issue 11); a log line may say anything.
    if write!(
        text,
        "{}",
        humantime::format_rfc3339_seconds(from_unix_ms(ms))
    )
    .is_err()
    {
        return format!("{ms} ms since 1970");
    }
    text.get(..16).unwrap_or(&text).replace('T', " ")
}

/// `11-05 06:00` (UTC), for axis labels.
fn short_time(ms: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let text = date_time(ms.max(0.0) as u64);
    text.get(5..).unwrap_or(&text).to_owned()
}

fn verdict_class(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Advance => "advance",
        Verdict::Hold => "hold",
        Verdict::ManualReview => "manual_review",
        Verdict::Rollback => "rollback",
    }
}

fn status_class(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "pass",
        CheckStatus::Fail => "fail",
        CheckStatus::NotEnoughData => "not_enough_data",
    }
}

fn verdict_badge(verdict: Verdict) -> String {
    format!(
        "<span class=\"verdict {}\">{}</span>",
        verdict_class(verdict),
        escape(&verdict.to_string())
    )
}

/// The controller's state as a badge: its status, in the verdict colors
/// (rolled back red, awaiting review orange, complete green, others gray).
fn state_badge(status: RolloutStatus) -> String {
    let class = match status {
        RolloutStatus::RolledBack => "rollback",
        RolloutStatus::AwaitingReview => "manual_review",
        RolloutStatus::Complete => "advance",
        RolloutStatus::Running | RolloutStatus::Paused | RolloutStatus::Off => "hold",
    };
    let text = match status {
        RolloutStatus::RolledBack => "ROLLED BACK",
        RolloutStatus::AwaitingReview => "AWAITING REVIEW",
        RolloutStatus::Complete => "COMPLETE",
        RolloutStatus::Running => "RUNNING",
        RolloutStatus::Paused => "PAUSED",
        RolloutStatus::Off => "OFF",
    };
    format!("<span class=\"verdict {class}\" id=\"state-badge\">{text}</span>")
}

fn status_section(html: &mut String, fleet: &Fleet, options: &ReportOptions) {
    html.push_str("<h2>Status now</h2>\n");
    let outcome = match fleet.check(&options.plan, None) {
        Ok(outcome) => outcome,
        Err(err) => {
            let _ = writeln!(
                html,
                "<p class=\"warn\">The current state cannot be judged: {}</p>",
                escape(&err.to_string())
            );
            return;
        }
    };
    controller_paragraph(html, &outcome);
    let e = &outcome.evaluation;
    let _ = writeln!(
        html,
        "<p>Recomputed from the log, stage {} ({}): {} <span class=\"reason\">{}</span></p>",
        e.stage,
        escape(&e.percent.to_string()),
        verdict_badge(e.verdict),
        escape(&e.reason)
    );
    if let Some(comparison) = &outcome.comparison {
        if comparison.agrees() {
            html.push_str("<p class=\"note\">The recomputation agrees with the controller's own evaluation of the same totals.</p>\n");
        } else {
            let _ = write!(
                html,
                "<p class=\"warn\">The recomputation differs from the controller's own evaluation of the same totals (line {}); the controller acted on its own, which judged its full history:</p><ul class=\"warn\">",
                comparison.logged.line
            );
            for d in &comparison.differences {
                let _ = write!(html, "<li>{}</li>", escape(d));
            }
            html.push_str("</ul>\n");
        }
    }
    checks_table(html, e);
    html.push_str("<table class=\"totals\"><tr><th>run totals</th><th>uploads</th><th>judged</th><th>success rate</th><th>error rate</th><th>critical</th><th>complaints</th><th>p50</th><th>p95</th></tr>\n");
    for arm in Arm::ALL {
        let t = &outcome.totals;
        let rate =
            |r: Option<f64>| r.map_or_else(|| "—".to_owned(), |r| format!("{:.2}%", r * 100.0));
        let ms = |q| {
            t.latency_quantile(arm, q).map_or_else(
                || "—".to_owned(),
                |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0),
            )
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            arm.as_str(),
            t.uploads(arm),
            t.judged(arm),
            rate(t.success_rate(arm)),
            rate(t.error_rate(arm)),
            t.critical(arm),
            t.complaints(arm),
            ms(0.5),
            ms(0.95)
        );
    }
    html.push_str("</table>\n");
    for note in &outcome.notes {
        let _ = writeln!(html, "<p class=\"note\">{}</p>", escape(note));
    }
}

/// The controller's answer first: its state as the badge, its last
/// verdict, and what `check` answers.
fn controller_paragraph(html: &mut String, outcome: &CheckOutcome) {
    let verdict = outcome.verdict();
    match &outcome.state {
        Some(state) => {
            let _ = writeln!(
                html,
                "<p class=\"controller\">Controller: {} {} <span class=\"reason\">({}, line {})</span></p>",
                state_badge(state.value.status),
                escape(&state.value.to_string()),
                escape(&state.path.display().to_string()),
                state.line
            );
        }
        None => {
            let _ = writeln!(
                html,
                "<p class=\"controller\">No controller state in the log (plain snapshot lines): {}</p>",
                verdict_badge(verdict)
            );
        }
    }
    for c in &outcome.controllers {
        if let Some(v) = &c.verdict {
            let _ = writeln!(
                html,
                "<p>The controller's last verdict, stage {} ({}, line {}): {} <span class=\"reason\">{}</span></p>",
                v.value.stage,
                escape(&v.path.display().to_string()),
                v.line,
                verdict_badge(v.value.verdict),
                escape(&v.value.reason)
            );
        }
    }
    let _ = writeln!(
        html,
        "<p class=\"note\">What <code>check</code> answers: {} (exit code {}).</p>",
        escape(&verdict.to_string()),
        outcome.exit_code()
    );
}

fn checks_table(html: &mut String, e: &Evaluation) {
    html.push_str("<table class=\"checks\"><tr><th>check</th><th>kind</th><th>status</th><th>observed</th><th>threshold</th><th>interval</th><th>sample</th><th>detail</th></tr>\n");
    for c in &e.checks {
        let kind = match c.kind {
            CheckKind::Criterion => "criterion",
            CheckKind::Review => "review",
            CheckKind::Rollback => "rollback",
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{kind}</td><td class=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            escape(&c.name),
            status_class(c.status),
            escape(&c.status.to_string()),
            escape(&observed_text(c)),
            escape(&threshold_text(c)),
            escape(&interval_text(c)),
            c.sample_size,
            escape(&c.detail)
        );
    }
    html.push_str("</table>\n");
}

fn instances_section(html: &mut String, fleet: &Fleet) {
    html.push_str("<h2>Logs</h2>\n<table class=\"logs\"><tr><th>log</th><th>records</th><th>latest line</th><th>stage</th><th>percent</th><th>state</th><th>notes</th></tr>\n");
    for log in fleet.instances() {
        let dash = || "—".to_owned();
        let (line, at) = log.latest_line().map_or_else(
            || (dash(), dash()),
            |l| (l.line.to_string(), date_time(l.at_unix_ms)),
        );
        let stage = log
            .latest_stage()
            .map_or_else(dash, |s| s.value.to_string());
        let percent = log
            .latest_percent()
            .map_or_else(dash, |p| p.value.to_string());
        let state = log.last_state().map_or_else(dash, |s| s.value.to_string());
        let mut notes = Vec::new();
        if let Some(torn) = log.torn_tail() {
            notes.push(format!(
                "line {}: torn last line skipped ({} bytes): {}",
                torn.line, torn.bytes, torn.reason
            ));
        }
        notes.extend(log.warnings().iter().cloned());
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"num\">{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td class=\"warn\">{}</td></tr>",
            escape(&log.path().display().to_string()),
            log.record_count(),
            escape(&line),
            escape(&at),
            escape(&stage),
            escape(&percent),
            escape(&state),
            escape(&notes.join("; "))
        );
    }
    html.push_str("</table>\n");
}

fn verdict_table(html: &mut String, fleet: &Fleet, data: &ReportData, options: &ReportOptions) {
    let span_ms = u64::try_from(options.table_span.as_millis()).unwrap_or(u64::MAX);
    let since = data.t_max.saturating_sub(span_ms);
    let _ = writeln!(
        html,
        "<h2>Verdicts and actions, {} – {} (UTC)</h2>\n<p class=\"note\">One row per run of consecutive ticks with the same stage, state and verdict (the reason is the run's last), and one per action.</p>",
        date_time(since),
        date_time(data.t_max)
    );
    let several = fleet.instances().len() > 1;
    let mut rows: Vec<(String, &Row)> = Vec::new();
    let mut dropped = 0;
    for log in fleet.instances() {
        let instance = if several {
            log.path().display().to_string()
        } else {
            log.path().file_name().map_or_else(
                || log.path().display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        let timeline = &log.timeline;
        dropped += timeline.dropped.iter().filter(|&&to| to >= since).count();
        rows.extend(
            timeline
                .rows
                .iter()
                .filter(|r| r.to >= since)
                .map(|r| (instance.clone(), r)),
        );
    }
    rows.sort_by_key(|(_, r)| (r.from, r.verdict.is_some()));
    let over = rows.len().saturating_sub(MAX_TABLE_ROWS);
    dropped += over;
    if dropped > 0 {
        let _ = writeln!(
            html,
            "<p class=\"warn\">{dropped} earlier rows left out; the latest {MAX_TABLE_ROWS} are shown.</p>"
        );
    }
    html.push_str("<table class=\"verdicts\"><tr><th>from</th><th>to</th><th>log</th><th>what</th><th>percent</th><th>state</th><th>verdict</th><th>ticks</th><th>reason</th></tr>\n");
    for (instance, row) in &rows[over..] {
        let verdict = row.verdict.map(verdict_badge).unwrap_or_default();
        let what = match &row.action {
            Some(label) => format!("action: {label}"),
            None => format!(
                "stage {}",
                row.stage.map_or_else(|| "?".to_owned(), |s| s.to_string())
            ),
        };
        let state = row
            .state
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let _ = writeln!(
            html,
            "<tr><td class=\"time\">{}</td><td class=\"time\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{verdict}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            date_time(row.from),
            date_time(row.to),
            escape(instance),
            escape(&what),
            escape(&row.percent),
            escape(&state),
            if row.verdict.is_some() {
                row.ticks.to_string()
            } else {
                String::new()
            },
            escape(&row.reason)
        );
    }
    html.push_str("</table>\n");
}

fn mark_color(kind: MarkKind) -> RGBColor {
    match kind {
        MarkKind::Stage => MARK_COLOR,
        MarkKind::Rollback => TRIGGER_COLOR,
        MarkKind::Review => REVIEW_COLOR,
        MarkKind::Pause => SYNC_COLOR,
        MarkKind::Complete => TARGET_COLOR,
    }
}

/// One bin's data for one stage.
#[derive(Default)]
struct Bin<'a> {
    /// Uploads in the bin, summed over instances.
    window: MetricsSnapshot,
    /// The stage's cumulative totals at the bin's end, summed over instances
    /// (one instance's own, borrowed).
    cumulative: Option<Cow<'a, MetricsSnapshot>>,
}

/// Everything the charts draw, computed once.
struct ReportData<'a> {
    t_min: u64,
    t_max: u64,
    /// The right end of the time axis: a little after `t_max`, so that
    /// what happened on the last line (a rollback) shows.
    x_end: u64,
    bin_ms: u64,
    min_n: u64,
    /// `(bin, stage)` → data; stage `None` for logs of plain snapshots.
    bins: BTreeMap<(u64, Option<usize>), Bin<'a>>,
    /// Each instance's percent in force over time: `(at, percent %)`.
    percents: Vec<Vec<(u64, f64)>>,
    /// Marked actions: `(at, label, color)`.
    marks: Vec<(u64, String, RGBColor)>,
}

impl<'a> ReportData<'a> {
    fn build(fleet: &'a Fleet, plan: &RolloutPlan) -> ReportData<'a> {
        let spans: Vec<(u64, u64)> = fleet.instances().iter().filter_map(|l| l.span()).collect();
        let t_min = spans.iter().map(|s| s.0).min().unwrap_or(0);
        let t_max = spans.iter().map(|s| s.1).max().unwrap_or(0).max(t_min);
        let span = t_max - t_min;
        // Bins: about TARGET_BINS over the span, never narrower than the
        // gaps between most ticks (a 30-minute log interval with 10-minute
        // bins would leave two bins in three empty), nor than what the
        // reader merged them into.
        let ticks: Vec<bool> = fleet
            .instances()
            .iter()
            .map(|l| l.timeline.has_ticks())
            .collect();
        let bin_ms = fleet
            .instances()
            .iter()
            .zip(&ticks)
            .map(|(l, &tick)| l.timeline.bin_ms.max(l.timeline.typical_gap_ms(tick)))
            .chain([bin_at_least(span / TARGET_BINS), BIN_MINUTES[0] * 60_000])
            .max()
            .unwrap_or(60_000);
        let x_end = t_max
            .saturating_add((span / 50).max(bin_ms / 2))
            .max(t_min.saturating_add(60_000));
        let mut data = ReportData {
            t_min,
            t_max,
            x_end,
            bin_ms,
            min_n: plan.evaluation.sustain_min_uploads.max(1),
            bins: BTreeMap::new(),
            percents: Vec::new(),
            marks: Vec::new(),
        };

        // Per instance: its bins at the chosen length.
        let mut cells: Vec<BTreeMap<(u64, Option<usize>), &MetricsSnapshot>> = Vec::new();
        for (log, &tick) in fleet.instances().iter().zip(&ticks) {
            let mut lasts = BTreeMap::new();
            for (key, (window, last)) in log.timeline.cells_at(bin_ms, tick) {
                let bin = data.bins.entry(key).or_default();
                bin.window = if bin.window == MetricsSnapshot::default() {
                    window
                } else {
                    bin.window.merge(&window)
                };
                lasts.insert(key, last);
            }
            cells.push(lasts);
        }
        // Cumulative: every instance's latest totals of the bin's stage.
        let keys: Vec<(u64, Option<usize>)> = data.bins.keys().copied().collect();
        let mut carry: Vec<Option<(Option<usize>, &MetricsSnapshot)>> = vec![None; cells.len()];
        for key in keys {
            let mut cumulative: Option<Cow<'a, MetricsSnapshot>> = None;
            for (i, lasts) in cells.iter().enumerate() {
                if let Some(&s) = lasts.get(&key) {
                    carry[i] = Some((key.1, s));
                }
                if let Some((stage, s)) = carry[i]
                    && stage == key.1
                {
                    cumulative = Some(match cumulative {
                        None => Cow::Borrowed(s),
                        Some(c) => Cow::Owned(c.merge(s)),
                    });
                }
            }
            if let Some(bin) = data.bins.get_mut(&key) {
                bin.cumulative = cumulative;
            }
        }

        for log in fleet.instances() {
            let timeline = &log.timeline;
            let mut percents: Vec<(u64, f64)> = timeline.percents.iter().copied().collect();
            if let Some(&(_, p)) = percents.last() {
                // The percent in force holds until the next change: to the
                // axis' end.
                percents.push((x_end, p));
            }
            data.percents.push(percents);
            for (at, label, kind) in &timeline.marks {
                let duplicate = data
                    .marks
                    .iter()
                    .any(|(t, l, _)| l == label && t / bin_ms == at / bin_ms);
                if !duplicate {
                    data.marks.push((*at, label.clone(), mark_color(*kind)));
                }
            }
        }
        data
    }

    /// The middle of `bin`, in ms since the epoch.
    #[allow(clippy::cast_precision_loss)]
    fn bin_time(&self, bin: u64) -> f64 {
        let middle = bin
            .saturating_mul(self.bin_ms)
            .saturating_add(self.bin_ms / 2);
        middle.clamp(self.t_min, self.x_end) as f64
    }

    /// Each stage's runs of consecutive bins: `(stage, first bin, last bin)`.
    fn stage_runs(&self) -> Vec<(Option<usize>, u64, u64)> {
        let mut runs: Vec<(Option<usize>, u64, u64)> = Vec::new();
        for &(bin, stage) in self.bins.keys() {
            match runs.last_mut() {
                Some((s, _, last)) if *s == stage && bin <= *last + 1 => *last = bin,
                _ => runs.push((stage, bin, bin)),
            }
        }
        runs
    }

    /// Lines of `value` over the bins: one run per stretch of consecutive
    /// bins of one stage that all have a value.
    fn series(&self, value: impl Fn(&Bin, Option<usize>) -> Option<f64>) -> Vec<Vec<(f64, f64)>> {
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut last: Option<(u64, Option<usize>)> = None;
        for (&(bin, stage), data) in &self.bins {
            let Some(y) = value(data, stage).filter(|y| y.is_finite()) else {
                last = None;
                continue;
            };
            let continues = last.is_some_and(|(b, s)| s == stage && bin <= b + 1);
            if !continues {
                runs.push(Vec::new());
            }
            if let Some(run) = runs.last_mut() {
                run.push((self.bin_time(bin), y));
            }
            last = Some((bin, stage));
        }
        runs
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Chart {
    Percent,
    SuccessRate,
    ErrorRate,
    LatencyRatio,
    Latency,
}

impl Chart {
    fn id(self) -> &'static str {
        match self {
            Chart::Percent => "chart-percent",
            Chart::SuccessRate => "chart-success-rate",
            Chart::ErrorRate => "chart-error-rate",
            Chart::LatencyRatio => "chart-latency-ratio",
            Chart::Latency => "chart-latency",
        }
    }
}

/// A line to draw: points (one run each), color, dashed, legend label.
struct Line {
    runs: Vec<Vec<(f64, f64)>>,
    color: RGBColor,
    dashed: bool,
    width: u32,
    label: Option<String>,
}

fn statistic_of(plan: &RolloutPlan, stage: Option<usize>) -> LatencyStatistic {
    stage
        .and_then(|s| plan.stages.get(s))
        .map_or_else(LatencyStatistic::default, |s| s.criteria.latency_statistic)
}

fn latency_of(w: &MetricsSnapshot, arm: Arm, statistic: LatencyStatistic) -> Option<Duration> {
    match statistic {
        LatencyStatistic::Mean => w.mean_latency(arm),
        LatencyStatistic::Quantile(q) => w.latency_quantile(arm, q),
    }
}

fn ratio_of(w: &MetricsSnapshot, statistic: LatencyStatistic) -> Option<f64> {
    let (a, s) = (
        latency_of(w, Arm::Async, statistic)?,
        latency_of(w, Arm::Sync, statistic)?,
    );
    (!s.is_zero()).then(|| a.as_secs_f64() / s.as_secs_f64())
}

#[allow(clippy::too_many_lines)]
/// A chart's legend: label, color, dashed.
type Legend = Vec<(String, RGBColor, bool)>;

/// Draws `chart` as SVG; returns it with its legend (drawn in HTML below the
/// chart, so that it never hides data).
fn draw_chart(
    data: &ReportData,
    plan: &RolloutPlan,
    chart: Chart,
) -> Result<(String, Legend), CliError> {
    let min_n = data.min_n;
    let enough = |w: &MetricsSnapshot, arm| w.judged(arm) >= min_n;
    let windowed = |arm: Arm, f: fn(&MetricsSnapshot, Arm) -> Option<f64>| {
        data.series(move |b, _| {
            (enough(&b.window, arm))
                .then(|| f(&b.window, arm))
                .flatten()
        })
    };
    let cumulative = |f: fn(&MetricsSnapshot, Arm) -> Option<f64>| {
        data.series(move |b, _| b.cumulative.as_ref().and_then(|c| f(c, Arm::Async)))
    };
    // Per-stage threshold runs, and whole-chart triggers.
    let per_stage = |f: &dyn Fn(&crate::judge::plan::Stage) -> f64| -> Vec<Vec<(f64, f64)>> {
        data.stage_runs()
            .into_iter()
            .filter_map(|(stage, first, last)| {
                let spec = plan.stages.get(stage?)?;
                let y = f(spec);
                #[allow(clippy::cast_precision_loss)]
                let (x0, x1) = (
                    first.saturating_mul(data.bin_ms).max(data.t_min) as f64,
                    (last + 1)
                        .saturating_mul(data.bin_ms)
                        .clamp(data.t_min, data.x_end) as f64,
                );
                Some(vec![(x0, y), (x1, y)])
            })
            .collect()
    };
    #[allow(clippy::cast_precision_loss)]
    let x_range = data.t_min as f64..data.x_end as f64;
    let across = |y: f64| vec![vec![(x_range.start, y), (x_range.end, y)]];
    let t = &plan.triggers;
    let line = |runs, color, dashed, label: &str| Line {
        runs,
        color,
        dashed,
        width: if dashed { 1 } else { 2 },
        label: (!label.is_empty()).then(|| label.to_owned()),
    };

    let (title, y_label, lines, percent_axis): (String, &str, Vec<Line>, bool) = match chart {
        Chart::Percent => {
            #[allow(clippy::cast_precision_loss)]
            let lines = data
                .percents
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let runs = vec![
                        p.iter()
                            .map(|&(at, pct)| (at as f64, pct / 100.0))
                            .collect(),
                    ];
                    line(
                        runs,
                        ASYNC_COLOR,
                        false,
                        if i == 0 { "percent in force" } else { "" },
                    )
                })
                .collect();
            ("Rollout percent".to_owned(), "percent", lines, true)
        }
        Chart::SuccessRate => (
            "Success rate (judged uploads)".to_owned(),
            "success rate",
            vec![
                line(
                    windowed(Arm::Sync, MetricsSnapshot::success_rate),
                    SYNC_COLOR,
                    false,
                    "sync, per bin",
                ),
                line(
                    windowed(Arm::Async, MetricsSnapshot::success_rate),
                    ASYNC_COLOR,
                    false,
                    "async, per bin",
                ),
                line(
                    cumulative(MetricsSnapshot::success_rate),
                    CUMULATIVE_COLOR,
                    true,
                    "async, stage cumulative",
                ),
                line(
                    per_stage(&|s| s.criteria.min_success_rate),
                    TARGET_COLOR,
                    true,
                    "stage criterion (min)",
                ),
                line(
                    across(t.review_success_band[1]),
                    REVIEW_COLOR,
                    true,
                    "review band top",
                ),
                line(
                    across(t.min_success_rate),
                    TRIGGER_COLOR,
                    true,
                    "rollback below",
                ),
            ],
            true,
        ),
        Chart::ErrorRate => (
            "Error rate (errors + critical / judged)".to_owned(),
            "error rate",
            vec![
                line(
                    windowed(Arm::Sync, MetricsSnapshot::error_rate),
                    SYNC_COLOR,
                    false,
                    "sync, per bin",
                ),
                line(
                    windowed(Arm::Async, MetricsSnapshot::error_rate),
                    ASYNC_COLOR,
                    false,
                    "async, per bin",
                ),
                line(
                    cumulative(MetricsSnapshot::error_rate),
                    CUMULATIVE_COLOR,
                    true,
                    "async, stage cumulative",
                ),
                line(
                    per_stage(&|s| s.criteria.max_error_rate),
                    TARGET_COLOR,
                    true,
                    "stage criterion (max)",
                ),
                line(
                    across(t.max_error_rate),
                    TRIGGER_COLOR,
                    true,
                    "rollback above",
                ),
            ],
            true,
        ),
        Chart::LatencyRatio => {
            let stat = statistic_of(plan, plan.stages.first().map(|_| 0));
            let per_bin = data.series(|b, stage| {
                (enough(&b.window, Arm::Async) && enough(&b.window, Arm::Sync))
                    .then(|| ratio_of(&b.window, statistic_of(plan, stage)))
                    .flatten()
            });
            let cumulative = data.series(|b, stage| {
                b.cumulative
                    .as_ref()
                    .and_then(|c| ratio_of(c, statistic_of(plan, stage)))
            });
            (
                format!("Latency ratio async / sync ({stat})"),
                "async / sync",
                vec![
                    line(per_bin, ASYNC_COLOR, false, "per bin"),
                    line(
                        cumulative,
                        CUMULATIVE_COLOR,
                        true,
                        "async / sync, stage cumulative",
                    ),
                    line(
                        per_stage(&|s| s.criteria.max_latency_ratio),
                        TARGET_COLOR,
                        true,
                        "stage criterion (max)",
                    ),
                    line(
                        across(t.review_latency_ratio),
                        REVIEW_COLOR,
                        true,
                        "review above (sustained)",
                    ),
                ],
                true,
            )
        }
        Chart::Latency => {
            let stat = statistic_of(plan, plan.stages.first().map(|_| 0));
            let per_arm = |arm: Arm| {
                data.series(move |b, stage| {
                    enough(&b.window, arm)
                        .then(|| latency_of(&b.window, arm, statistic_of(plan, stage)))
                        .flatten()
                        .map(|d| d.as_secs_f64() * 1000.0)
                })
            };
            (
                format!("Latency per arm ({stat}, ms)"),
                "ms",
                vec![
                    line(per_arm(Arm::Sync), SYNC_COLOR, false, "sync, per bin"),
                    line(per_arm(Arm::Async), ASYNC_COLOR, false, "async, per bin"),
                ],
                false,
            )
        }
    };

    let y_range = y_range_of(&lines, chart);
    let mut svg = String::new();
    let chart_error = |e: &dyn std::fmt::Display| CliError::Chart {
        chart: title.clone(),
        message: e.to_string(),
    };
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| chart_error(&e))?;
        let mut ctx = ChartBuilder::on(&root)
            .caption(&title, ("sans-serif", 24))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.clone(), y_range.clone())
            .map_err(|e| chart_error(&e))?;
        let y_format = |y: &f64| {
            if percent_axis {
                let text = format!("{:.2}", y * 100.0);
                format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
            } else {
                format!("{y:.0}")
            }
        };
        // The time axis gets its own labels, at whole hours or days (UTC).
        ctx.configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(6)
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 16))
            .y_label_formatter(&y_format)
            .y_desc(y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| chart_error(&e))?;
        let (keys, whole_days) = time_keys(&x_range);
        let label_style = ("sans-serif", 16)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for x in keys {
            ctx.draw_series(LineSeries::new(
                [(x, y_range.start), (x, y_range.end)],
                RGBColor(220, 220, 220).stroke_width(1),
            ))
            .map_err(|e| chart_error(&e))?;
            let (px, py) = ctx.backend_coord(&(x, y_range.start));
            let text = if whole_days {
                short_time(x).get(..5).unwrap_or_default().to_owned()
            } else {
                short_time(x)
            };
            root.draw(&Text::new(text, (px, py + 6), label_style.clone()))
                .map_err(|e| chart_error(&e))?;
        }

        for l in &lines {
            let style = l.color.stroke_width(l.width);
            for run in l.runs.iter().filter(|run| !run.is_empty()) {
                if let [point] = run.as_slice() {
                    // A point with no neighbour makes no line: a marker.
                    ctx.draw_series([Circle::new(*point, MARKER_RADIUS, l.color.filled())])
                } else if l.dashed {
                    ctx.draw_series(DashedLineSeries::new(run.iter().copied(), 6, 4, style))
                } else {
                    ctx.draw_series(LineSeries::new(run.iter().copied(), style))
                }
                .map_err(|e| chart_error(&e))?;
            }
        }
        // Stage changes and actions.
        for (k, (at, label, color)) in data.marks.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let x = *at as f64;
            ctx.draw_series(DashedLineSeries::new(
                [(x, y_range.start), (x, y_range.end)],
                3,
                3,
                color.stroke_width(1),
            ))
            .map_err(|e| chart_error(&e))?;
            if chart == Chart::Percent {
                // Labels near the right edge end at their line; rows
                // alternate so that close marks do not overlap.
                let near_end = x > x_range.start + (x_range.end - x_range.start) * 0.9;
                let h = if near_end { HPos::Right } else { HPos::Left };
                #[allow(clippy::cast_precision_loss)]
                let y = y_range.end - (y_range.end - y_range.start) * 0.07 * (k % 3) as f64;
                let (px, py) = ctx.backend_coord(&(x, y));
                let style = ("sans-serif", 16)
                    .into_font()
                    .color(color)
                    .pos(Pos::new(h, VPos::Top));
                let dx = if near_end { -4 } else { 4 };
                root.draw(&Text::new(label.clone(), (px + dx, py + 2), style))
                    .map_err(|e| chart_error(&e))?;
            }
        }
        root.present().map_err(|e| chart_error(&e))?;
    }
    let legend = lines
        .iter()
        .filter_map(|l| l.label.clone().map(|label| (label, l.color, l.dashed)))
        .collect();
    Ok((svg, legend))
}

/// Axis labels at whole multiples (UTC) of the smallest spacing that gives
/// at most 8 labels, and whether that spacing is whole days.
fn time_keys(range: &Range<f64>) -> (Vec<f64>, bool) {
    let span_h = (range.end - range.start) / 3_600_000.0;
    #[allow(clippy::cast_precision_loss)]
    let step_h = LABEL_HOURS
        .into_iter()
        .find(|&h| span_h / h as f64 <= 8.0)
        .unwrap_or(LABEL_HOURS[LABEL_HOURS.len() - 1]);
    // Beyond 8 weeks: whole weeks, still at most 8 labels (a corrupt stamp
    // of year 500 million once asked for billions of labels: issue 11).
    #[allow(clippy::cast_precision_loss)]
    let step = (step_h as f64 * 3_600_000.0).max((range.end - range.start) / 8.0);
    let mut keys = Vec::new();
    let mut x = (range.start / step).ceil() * step;
    // A label at the very right edge would be cut off.
    while x <= range.end - (range.end - range.start) * 0.03 && keys.len() < 16 {
        keys.push(x);
        x += step;
    }
    (keys, step_h % 24 == 0)
}

/// A y range that shows every drawn value and threshold with some room.
fn y_range_of(lines: &[Line], chart: Chart) -> Range<f64> {
    let ys = lines
        .iter()
        .flat_map(|l| l.runs.iter().flatten().map(|&(_, y)| y));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    match chart {
        Chart::Percent => {
            let hi = if hi.is_finite() && hi > 0.0 { hi } else { 1.0 };
            0.0..(hi * 1.25).min(1.1)
        }
        Chart::SuccessRate => {
            let lo = if lo.is_finite() { lo } else { 0.9 };
            (((lo - 0.01) * 100.0).floor() / 100.0).max(0.0)..1.002
        }
        Chart::ErrorRate => {
            let hi = if hi.is_finite() { hi } else { 0.1 };
            0.0..(((hi + 0.01) * 100.0).ceil() / 100.0).min(1.0)
        }
        Chart::LatencyRatio => {
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.9, 1.3) };
            (lo.min(0.9) - 0.05).max(0.0)..hi.max(1.25) + 0.05
        }
        Chart::Latency => {
            let hi = if hi.is_finite() { hi } else { 100.0 };
            0.0..hi * 1.15
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"rate < 95% & "x" > 'y'"#),
            "rate &lt; 95% &amp; &quot;x&quot; &gt; &#39;y&#39;"
        );
    }

    #[test]
    fn date_times_are_utc_minutes() {
        assert_eq!(date_time(1_762_300_800_000), "2025-11-05 00:00");
        assert_eq!(short_time(1_762_300_860_000.0), "11-05 00:01");
    }
}
