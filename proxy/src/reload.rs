//! Configuration hot reload: on SIGHUP and, with `watch_config`, when the file changes (the
//! parent directory is watched, so editors that write a temporary file and rename it are seen).
//! An invalid file is rejected with an error naming the field and line, the previous
//! configuration stays in force, and `ficus_config_reloads_total{result}` counts both outcomes.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::control::Control;

/// Changes closer together than this are one reload (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(150);

pub(crate) async fn run(control: Arc<Control>, mut stop: watch::Receiver<bool>, watch_file: bool) {
    let Some(path) = control.config_path.clone() else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();

    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload on signal disabled");
            None
        }
    };

    // The watcher lives as long as this task.
    let _watcher = if watch_file {
        let name = path.file_name().map(|n| n.to_os_string());
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let tx = tx.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                let ours = ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
                if ours && !ev.kind.is_access() {
                    let _ = tx.send(());
                }
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; reload on SIGHUP only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the file watcher; reload on SIGHUP only");
                None
            }
        }
    } else {
        None
    };

    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading configuration");
                let _ = control.reload_from_file();
            }
            Some(()) = rx.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
                // Errors are logged and counted inside; the old configuration stays.
                let _ = control.reload_from_file();
            }
        }
    }
}
