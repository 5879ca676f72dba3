//! TLS termination on the proxy's listeners (`[proxy.tls]`, `[proxy.admin_tls]`).
//!
//! Each listener's certificate sits in a [`ReloadableCert`] behind one rustls server
//! configuration (ALPN `h2`, `http/1.1`): replacing it changes what *new* handshakes get,
//! while open connections keep the session they have — no connection is dropped. The files are
//! read again on SIGHUP and reload ([`Certs::reread`], through `Control::reload`) and when they
//! change on disk ([`watch`]: their directories are watched, so a rename into place — how
//! cert-manager and certbot write — is seen). A pair that does not load (a certificate written
//! before its key) keeps the previous certificate in service and is logged; the next change
//! tries again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ficus_tls::ReloadableCert;
use notify::{RecursiveMode, Watcher};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch as watch_channel};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::ListenerTls;
use crate::error::ProxyError;

/// ALPN protocols offered on the data-plane listener, preferred first.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// The admin API speaks HTTP/1.1 only.
const ADMIN_ALPN: &[&[u8]] = &[b"http/1.1"];
/// Changes closer together than this are one reload (a certificate and its key are written
/// one after the other).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// One listener's TLS: its files, the certificate served, the acceptor.
pub(crate) struct Served {
    /// Which listener (`proxy.tls` / `proxy.admin_tls`), for logs.
    pub field: &'static str,
    pub settings: ListenerTls,
    pub cert: Arc<ReloadableCert>,
    pub acceptor: TlsAcceptor,
}

impl Served {
    fn load(
        field: &'static str,
        settings: &ListenerTls,
        alpn: &[&[u8]],
    ) -> Result<Served, ProxyError> {
        let tls_err = |e: ficus_tls::TlsError| ProxyError::Tls {
            field,
            message: e.to_string(),
        };
        let key =
            ficus_tls::certified_key(&settings.cert_file, &settings.key_file).map_err(tls_err)?;
        let cert = ReloadableCert::new(key);
        let config = ficus_tls::server_config(cert.clone(), alpn).map_err(tls_err)?;
        Ok(Served {
            field,
            settings: settings.clone(),
            cert,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again; serves them from now on when they load. Whether the served
    /// certificate changed.
    fn reread(&self) -> Result<bool, ficus_tls::TlsError> {
        let key = ficus_tls::certified_key(&self.settings.cert_file, &self.settings.key_file)?;
        let before = self.cert.leaf();
        self.cert.replace(key);
        Ok(self.cert.leaf() != before)
    }
}

/// The TLS of both listeners.
#[derive(Default)]
pub(crate) struct Certs {
    pub data: Option<Served>,
    pub admin: Option<Served>,
}

impl Certs {
    /// Loads what `[proxy.tls]` and `[proxy.admin_tls]` name.
    pub fn load(
        tls: Option<&ListenerTls>,
        admin: Option<&ListenerTls>,
    ) -> Result<Certs, ProxyError> {
        Ok(Certs {
            data: tls
                .map(|t| Served::load("proxy.tls", t, ALPN))
                .transpose()?,
            admin: admin
                .map(|t| Served::load("proxy.admin_tls", t, ADMIN_ALPN))
                .transpose()?,
        })
    }

    /// Reads every listener's files again (SIGHUP, reload, a change on disk), logging what
    /// changed and what could not be loaded (the previous certificate then stays).
    pub fn reread(&self) {
        for s in [&self.data, &self.admin].into_iter().flatten() {
            match s.reread() {
                Ok(true) => {
                    tracing::info!(listener = s.field, cert = %s.settings.cert_file.display(),
                    "TLS certificate reloaded; new connections get it")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(listener = s.field, error = %e,
                    "TLS certificate not reloaded; the previous one stays in service"),
            }
        }
    }

    fn files(&self) -> BTreeSet<PathBuf> {
        [&self.data, &self.admin]
            .into_iter()
            .flatten()
            .flat_map(|s| [s.settings.cert_file.clone(), s.settings.key_file.clone()])
            .collect()
    }
}

/// The TLS handshake of an accepted connection, bounded by `limit` (a client that never
/// finishes it holds nothing for long). `None` when it failed (logged at debug: scanners and
/// plain-HTTP clients hitting a TLS port are routine).
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    limit: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(after = ?limit, "TLS handshake timed out");
            None
        }
    }
}

/// Watches the certificate and key files' directories until `stop`, re-reading on a change.
pub(crate) async fn watch(certs: Arc<Certs>, mut stop: watch_channel::Receiver<bool>) {
    let files = certs.files();
    if files.is_empty() {
        return;
    }
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    let names: BTreeSet<_> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let ours = ev
                .paths
                .iter()
                .any(|p| p.file_name().is_some_and(|n| names.contains(n)));
            if ours && !ev.kind.is_access() {
                let _ = tx.send(());
            }
        }
    };
    // The watcher lives as long as this task.
    let _watcher = match notify::recommended_watcher(handler) {
        Ok(mut w) => {
            for d in &dirs {
                if let Err(e) = w.watch(d, RecursiveMode::NonRecursive) {
                    tracing::warn!(error = %e, dir = %d.display(),
                        "cannot watch the TLS certificate directory; certificates reload on SIGHUP only");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the certificate watcher; certificates reload on SIGHUP only");
            None
        }
    };
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            Some(()) = rx.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
                certs.reread();
            }
        }
    }
}
