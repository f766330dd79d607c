//! What the operator reads on stderr: one line per change of the state in
//! force, of the kill switch, and of the state or config becoming unreadable
//! (and readable again).

use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::ControllerView;

use crate::state::AppState;

/// Says on stderr, once per change, what the operator must know: the state
/// in force changed (by this process, the command line, another replica),
/// or it or the config cannot be read (and when that ends).
pub(crate) async fn report_changes(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let mut last: Option<Arc<ControllerView>> = None;
    loop {
        every.tick().await;
        let view = state.inner.monitor.view();
        if let Some(before) = &last {
            for line in changes(before, &view) {
                eprintln!("upload_server: {line}");
            }
        }
        last = Some(view);
    }
}

/// What differs between two views, as lines for stderr.
fn changes(before: &ControllerView, now: &ControllerView) -> Vec<String> {
    let mut lines = Vec::new();
    if before.state != now.state
        && let Some(state) = &now.state
    {
        lines.push(format!("state now {state}; {} in force", now.percent));
    }
    if before.state_error != now.state_error {
        lines.push(match &now.state_error {
            Some(error) => format!("STATE ERROR: {error} (nothing async until it is fixed)"),
            None => "the state can be read again".to_owned(),
        });
    }
    if before.config_error != now.config_error {
        lines.push(match &now.config_error {
            Some(error) => format!("CONFIG ERROR: {error}"),
            None => "the config can be read again".to_owned(),
        });
    }
    if before.kill_switch != now.kill_switch {
        lines.push(format!(
            "kill switch {}: {} in force",
            if now.kill_switch { "ON" } else { "off" },
            now.percent
        ));
    }
    lines
}
