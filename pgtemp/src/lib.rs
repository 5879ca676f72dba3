//! A real, throwaway PostgreSQL for tests and for `ficus demo`.
//!
//! [`fresh_database`] hands a test its own empty database:
//! - if `FICUS_TEST_DATABASE_URL` is set, a new database is created on that server;
//! - otherwise one cluster is started per process (initdb into a directory under the cargo
//!   `target/` dir, fsync off, listening on 127.0.0.1 on a free port, run as user `postgres`
//!   when the process is root) and every call creates one more database on it. The cluster is
//!   stopped and its directory removed when the process exits; clusters left behind by a killed
//!   process are reaped by the next one.
//!
//! [`Cluster`] is the same machinery for a caller that owns the lifetime (the demo).
//!
//! # Unsafe code
//!
//! A few small `unsafe` blocks call libc where std has no equivalent: `atexit` (stop the
//! shared cluster when the test process exits), `kill` (probe or signal a process by pid),
//! `geteuid` and `getpwnam` (run the server as `postgres` under root). Each is allowed where it
//! stands and says why it is sound; the crate otherwise keeps the workspace's
//! `unsafe_code = "deny"`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Environment variable naming an existing server to use instead of starting one.
pub const DATABASE_URL_ENV: &str = "FICUS_TEST_DATABASE_URL";

/// What can go wrong getting a database.
#[derive(Debug, thiserror::Error)]
pub enum PgTempError {
    /// No `initdb`/`postgres` binaries on this machine.
    #[error(
        "no PostgreSQL server binaries found (looked at `pg_config --bindir` and /usr/lib/postgresql/*/bin); \
         install them (Debian: apt-get install -y postgresql) or set {DATABASE_URL_ENV}=postgres://user@host:port/db"
    )]
    NoBinaries,
    /// A step (initdb, starting the server, ...) failed.
    #[error("{step} failed: {detail}")]
    Command {
        /// What was being done.
        step: String,
        /// What it said.
        detail: String,
    },
    /// The server did not accept connections in time.
    #[error("PostgreSQL at {url} did not accept connections within {secs} s: {last}")]
    NotReady {
        /// Where it was expected.
        url: String,
        /// How long it was given.
        secs: u64,
        /// The last connection error.
        last: String,
    },
    /// A URL without a host (`FICUS_TEST_DATABASE_URL` or an argument).
    #[error("{DATABASE_URL_ENV} is not a usable postgres URL: {0}")]
    BadUrl(String),
    /// An error from the server.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A file or socket operation failed.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file, directory or address concerned.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, PgTempError>;

/// One database on a real PostgreSQL, dropped (best effort) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// Connection URL of this database, e.g. `postgres://postgres@127.0.0.1:5433/t_3`.
    pub url: String,
    /// Database name.
    pub name: String,
    admin_url: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Best effort: a failed drop only leaves an empty database on a throwaway server.
        let _ = run_async(async move {
            let client = connect(&admin).await?;
            client.batch_execute(&sql).await?;
            Ok(())
        });
    }
}

/// A fresh empty database for the calling test (see the module docs for where it lives).
pub fn fresh_database(prefix: &str) -> Result<TestDatabase> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let admin_url = match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => shared_cluster()?.url("postgres"),
    };
    let name = format!(
        "{}_{}_{}",
        sanitize(prefix),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let url = with_database(&admin_url, &name)?;
    let create = format!("CREATE DATABASE \"{name}\"");
    let admin = admin_url.clone();
    run_async(async move {
        let client = connect(&admin).await?;
        client.batch_execute(&create).await?;
        Ok(())
    })?;
    Ok(TestDatabase {
        url,
        name,
        admin_url,
    })
}

fn sanitize(prefix: &str) -> String {
    let s: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if s.is_empty() {
        "t".into()
    } else {
        s
    }
}

/// Replace the database name in a postgres URL.
pub fn with_database(url: &str, db: &str) -> Result<String> {
    let scheme_end = url
        .find("://")
        .ok_or_else(|| PgTempError::BadUrl(url.to_string()))?
        + 3;
    let (head, rest) = url.split_at(scheme_end);
    let (rest, query) = match rest.find('?') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match rest.find('/') {
        Some(i) => &rest[..i],
        None => rest,
    };
    if authority.is_empty() {
        return Err(PgTempError::BadUrl(url.to_string()));
    }
    Ok(format!("{head}{authority}/{db}{query}"))
}

fn shared_cluster() -> Result<&'static Cluster> {
    static CLUSTER: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();
    static GUARD: Mutex<()> = Mutex::new(());
    let _g = GUARD.lock().unwrap_or_else(|e| e.into_inner());
    let res = CLUSTER.get_or_init(|| {
        let root = scratch_root();
        reap_stale(&root);
        let dir = root.join(format!("cluster-{}", std::process::id()));
        let c = Cluster::start(&dir).map_err(|e| e.to_string())?;
        // Stop the shared cluster when the test process exits.
        extern "C" fn stop_at_exit() {
            if let Some(Ok(c)) = CLUSTER.get() {
                c.stop();
            }
        }
        // SAFETY: `atexit` only stores the function pointer; `stop_at_exit` is a plain
        // `extern "C" fn` with no arguments that never unwinds across the FFI boundary (it
        // reads a `OnceLock` that is already initialised by the time it can run, and
        // `Cluster::stop` catches poisoned locks and ignores every error). Registering it
        // more than once cannot happen: this closure runs once per process.
        #[allow(unsafe_code)]
        unsafe {
            libc::atexit(stop_at_exit);
        }
        Ok(c)
    });
    res.as_ref().map_err(|e| PgTempError::Command {
        step: "starting the test PostgreSQL cluster".into(),
        detail: e.clone(),
    })
}

/// `target/pgtemp` of the running test or binary when it can be found, else the temp dir.
fn scratch_root() -> PathBuf {
    target_dir()
        .map(|t| t.join("pgtemp"))
        .unwrap_or_else(|| std::env::temp_dir().join("ficus-pgtemp"))
}

/// The cargo target directory of the running test or binary: `$CARGO_TARGET_DIR` when set,
/// else the parent of the `debug` or `release` directory the executable is in; `None` for an
/// executable outside a cargo target directory.
pub fn target_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .find(|a| {
            let name = a.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "debug" || name == "release"
        })
        .and_then(|a| a.parent())
        .map(Path::to_path_buf)
}

/// Remove clusters whose owning process is gone (a killed test run leaves them behind).
fn reap_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix("cluster-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: `kill` with signal 0 sends nothing; it only asks whether a process with
        // this pid exists. It takes plain integers and touches no memory of ours.
        #[allow(unsafe_code)]
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if alive {
            continue; // owner alive
        }
        let pm = e.path().join("data/postmaster.pid");
        if let Ok(text) = std::fs::read_to_string(&pm) {
            if let Some(pg) = text
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok())
            {
                // SAFETY: `kill` takes plain integers and touches no memory of ours. The pid
                // is the postmaster of a cluster whose owning test process is gone (read from
                // that cluster's own `postmaster.pid`); SIGQUIT makes it exit at once.
                #[allow(unsafe_code)]
                unsafe {
                    libc::kill(pg, libc::SIGQUIT);
                }
            }
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}

/// A running PostgreSQL cluster in a directory this value owns.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
    /// Where this crate's own connections go: TCP, or the Unix socket of a cluster whose
    /// `pg_hba.conf` was given (it may refuse plain TCP).
    admin_host: Option<PathBuf>,
}

/// How to start a [`Cluster`] other than the default (plain TCP, trust for everyone).
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// `ssl = on` with this certificate and key (PEM), and `ssl_ca_file` when client
    /// certificates are to be checked.
    pub tls: Option<ServerTls>,
    /// The whole `pg_hba.conf` (e.g. `hostssl` lines only). When set, the server also listens
    /// on a Unix socket in the cluster's directory, with `local all all trust` put first, so
    /// this crate can still create databases.
    pub hba: Option<String>,
}

/// The server side of TLS, as PEM text.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// `ssl_cert_file`: the server certificate (chain).
    pub cert_pem: String,
    /// `ssl_key_file`.
    pub key_pem: String,
    /// `ssl_ca_file`: CAs whose client certificates are accepted (for `cert` auth).
    pub client_ca_pem: Option<String>,
}

impl Cluster {
    /// initdb into `dir/data` and start the server on a free loopback port.
    pub fn start(dir: &Path) -> Result<Cluster> {
        Cluster::start_with(dir, &Options::default())
    }

    /// Like [`Cluster::start`], with TLS and/or a `pg_hba.conf` of the caller's. Keep `dir`
    /// short when `hba` is set: the Unix socket path in it must fit in 107 bytes.
    pub fn start_with(dir: &Path, options: &Options) -> Result<Cluster> {
        let bindir = find_bindir()?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PgTempError::Io { path, source }
        };
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let data = dir.join("data");
        let as_user = postgres_user_if_root();
        if let Some((uid, gid)) = as_user {
            chown(dir, uid, gid)?;
        }
        let mut initdb = Command::new(bindir.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null());
        run_checked(&mut initdb, as_user, "initdb")?;
        let mut extra: Vec<String> = Vec::new();
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = data.join(name);
            std::fs::write(&path, text).map_err(io(&path))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io(&path))?;
            if let Some((uid, gid)) = as_user {
                chown(&path, uid, gid)?;
            }
            Ok(path)
        };
        if let Some(tls) = &options.tls {
            let cert = write("server.crt", &tls.cert_pem)?;
            let key = write("server.key", &tls.key_pem)?;
            extra.push("ssl=on".into());
            extra.push(format!("ssl_cert_file={}", cert.display()));
            extra.push(format!("ssl_key_file={}", key.display()));
            if let Some(ca) = &tls.client_ca_pem {
                let ca = write("client-ca.crt", ca)?;
                extra.push(format!("ssl_ca_file={}", ca.display()));
            }
        }
        let admin_host = match &options.hba {
            Some(hba) => {
                write("pg_hba.conf", &format!("local all all trust\n{hba}\n"))?;
                extra.push(format!("unix_socket_directories={}", dir.display()));
                Some(dir.to_path_buf())
            }
            None => {
                extra.push("unix_socket_directories=".into());
                None
            }
        };

        let port = free_port()?;
        let log = std::fs::File::create(dir.join("server.log")).map_err(io(dir))?;
        if let Some((uid, gid)) = as_user {
            chown(&dir.join("server.log"), uid, gid)?;
        }
        let mut cmd = Command::new(bindir.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300"])
            .args(["-c", "shared_buffers=128MB"])
            .args(extra.iter().flat_map(|e| ["-c", e.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        apply_user(&mut cmd, as_user);
        let child = cmd.spawn().map_err(|e| PgTempError::Command {
            step: "starting postgres".into(),
            detail: e.to_string(),
        })?;
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            port,
            child: Mutex::new(Some(child)),
            admin_host,
        };
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// URL of database `db` on this cluster (superuser `postgres`, trust auth).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where this crate connects to administer the cluster.
    fn admin_url(&self) -> String {
        match &self.admin_host {
            Some(dir) => format!(
                "host={} port={} user=postgres dbname=postgres",
                dir.display(),
                self.port
            ),
            None => self.url("postgres"),
        }
    }

    /// Runs SQL as the superuser (e.g. `CREATE ROLE` for a test of `cert` authentication).
    pub fn execute(&self, sql: &str) -> Result<()> {
        let admin = self.admin_url();
        let sql = sql.to_string();
        run_async(async move {
            let c = connect(&admin).await?;
            c.batch_execute(&sql).await?;
            Ok(())
        })
    }

    /// Create database `name` and return its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let admin = self.admin_url();
        let sql = format!("CREATE DATABASE \"{name}\"");
        run_async(async move {
            let c = connect(&admin).await?;
            c.batch_execute(&sql).await?;
            Ok(())
        })?;
        Ok(self.url(name))
    }

    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let url = self.admin_url();
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            if let Some(status) = self.child_exited() {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(PgTempError::Command {
                    step: "postgres".into(),
                    detail: format!("exited with {status} before accepting connections: {log}"),
                });
            }
            let u = url.clone();
            match run_async(async move { connect(&u).await.map(|_| ()) }) {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(PgTempError::NotReady {
            url,
            secs: limit.as_secs(),
            last,
        })
    }

    fn child_exited(&self) -> Option<std::process::ExitStatus> {
        let mut g = self.child.lock().unwrap_or_else(|e| e.into_inner());
        g.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Fast shutdown and removal of the directory. Idempotent.
    pub fn stop(&self) {
        let mut g = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = g.take() {
            // SIGINT = fast shutdown: disconnect clients, no checkpoint wait beyond the needed.
            // SAFETY: `kill` takes plain integers and touches no memory of ours; the pid is
            // our own child's, not yet reaped (we hold its `Child` and only wait below), so it
            // cannot have been reused by another process.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(child.id() as i32, libc::SIGINT);
            }
            let start = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_bindir() -> Result<PathBuf> {
    let has_server = |p: &Path| p.join("initdb").is_file() && p.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server(&p) {
                return Ok(p);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let bin = e.path().join("bin");
            let ver = e.file_name().to_string_lossy().parse::<u32>().unwrap_or(0);
            if has_server(&bin) {
                found.push((ver, bin));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, p)| p).ok_or(PgTempError::NoBinaries)
}

#[allow(unsafe_code)]
fn postgres_user_if_root() -> Option<(u32, u32)> {
    // SAFETY: `geteuid` takes no arguments, cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = c"postgres";
    // SAFETY: `name` is a valid NUL-terminated C string that outlives the call. The result
    // is null or points to libc's static passwd record, valid until the next getpw* call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: `pw` is non-null, so it points to that record; the two integer fields are
    // copied out at once. getpwnam's record is shared, not thread-safe: nothing else in a
    // ficus process calls the non-reentrant getpw* functions (std uses the `_r` variants),
    // and the tests' calls are serialised by `shared_cluster`'s lock.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn apply_user(cmd: &mut Command, as_user: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = as_user {
        cmd.uid(uid).gid(gid);
        cmd.env("HOME", "/tmp");
    }
}

fn run_checked(cmd: &mut Command, as_user: Option<(u32, u32)>, step: &str) -> Result<()> {
    apply_user(cmd, as_user);
    let out = cmd.output().map_err(|e| PgTempError::Command {
        step: step.into(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(PgTempError::Command {
            step: step.into(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| PgTempError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|source| PgTempError::Io {
        path: "127.0.0.1:0".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| PgTempError::Io {
            path: "127.0.0.1:0".into(),
            source,
        })
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Run a future to completion on a private runtime on its own thread, so this works from
/// plain code and from inside any tokio runtime alike.
fn run_async<F, T>(fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| PgTempError::Io {
                path: "tokio runtime".into(),
                source,
            })?;
        rt.block_on(fut)
    })
    .join()
    .unwrap_or_else(|_| {
        Err(PgTempError::Command {
            step: "pgtemp helper thread".into(),
            detail: "panicked".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_database_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:1/db?sslmode=disable", "x").unwrap(),
            "postgres://u@h:1/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgresql://u@h:1", "x").unwrap(),
            "postgresql://u@h:1/x"
        );
        assert!(with_database("nope", "x").is_err());
    }

    #[test]
    fn two_fresh_databases_are_distinct_and_usable() {
        let a = fresh_database("pgtemp a").unwrap();
        let b = fresh_database("pgtemp b").unwrap();
        assert_ne!(a.name, b.name);
        let url = a.url.clone();
        let n: i32 = run_async(async move {
            let c = connect(&url).await?;
            c.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (41)")
                .await?;
            let row = c.query_one("SELECT x + 1 FROM t", &[]).await?;
            Ok(row.get(0))
        })
        .unwrap();
        assert_eq!(n, 42);
    }
}
