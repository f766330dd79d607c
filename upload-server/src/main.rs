//! `upload_server`: the HTTP upload service (see the crate's docs, or
//! `upload_server --help`). This file is the process: flags in, the
//! application built and served until Ctrl-C or SIGTERM, an exit code out.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use async_upload_rollout::Rollout;
use tokio::net::TcpListener;
use upload_server::flags::{self, Args, HELP, Parsed};
use upload_server::{AppState, StartError, serve};

/// Parses `args` (the flags, without the program name), starts the server
/// and serves until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// A [`StartError`]: nothing is left running.
async fn run(args: impl IntoIterator<Item = String>) -> Result<(), StartError> {
    let Args { addr, config } = match flags::parse(args)? {
        Parsed::Run(args) => *args,
        Parsed::Help => {
            print!("{HELP}");
            return Ok(());
        }
    };
    let rollout = Arc::new(Rollout::from_env().map_err(|e| StartError::Usage(e.to_string()))?);
    let admin = if config.admin_token.is_some() {
        "on"
    } else {
        "off (403)"
    };
    let (log, store_dir, tick) = (
        config.log_path.display().to_string(),
        config.store_dir.display().to_string(),
        humantime::format_duration(config.tick).to_string(),
    );
    let state = AppState::new(config, rollout)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let view = state.monitor().view();
    let rollout_state = view
        .state
        .as_ref()
        .map_or_else(|| "unknown (nothing async)".to_owned(), ToString::to_string);
    eprintln!(
        "upload_server: listening on http://{addr}, {} in force, state {rollout_state}; \
         controller ticking every {tick} into {log}, uploads stored in {store_dir}, admin routes {admin}",
        view.percent
    );
    let shutdown = async {
        stop_signal().await;
        eprintln!("upload_server: shutting down: finishing requests and accepted uploads");
    };
    serve(listener, state, shutdown)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Ctrl-C, or SIGTERM (what `kill` and container orchestrators send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("upload_server: {err}");
            ExitCode::FAILURE
        }
    }
}
