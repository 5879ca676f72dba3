//! What the chapters share. [`Workspace`]: the work directory and the files an operator would
//! have (legacy database, proxy and migration configurations, admin token, `env.sh`).
//! [`Stage`]: everything running once the story has started the services — PostgreSQL, the
//! legacy app, the new service's builds, the proxy, and the operator's admin client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ficus_migrator::MigrationConfig;
use ficus_proxy::client::AdminClient;
use ficus_proxy::{ProxyHandle, RouteStatus};
use ficus_taskapp::Server;

use crate::client::Client;
use crate::proxy_config::{self, Phase};
use crate::DemoError;

/// The work directory and the names of the files in it.
pub struct Workspace {
    pub dir: PathBuf,
    /// Seeded tasks: `TASK-101` up to `TASK-{100 + tasks}`.
    pub tasks: usize,
    tmp: Option<TempDir>,
}

impl Workspace {
    /// The directory asked for (kept), or a fresh temporary one (removed at the end).
    pub fn new(asked: Option<PathBuf>, tasks: usize) -> Result<Workspace, DemoError> {
        let (dir, tmp) = match asked {
            Some(d) => (d, None),
            None => {
                let d = std::env::temp_dir().join(format!("ficus-demo-{}", std::process::id()));
                if d.exists() {
                    std::fs::remove_dir_all(&d).map_err(io_error(&d))?;
                }
                (d.clone(), Some(TempDir(d)))
            }
        };
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(Workspace { dir, tasks, tmp })
    }

    /// A file in the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Whether the directory is removed at the end.
    pub fn is_temporary(&self) -> bool {
        self.tmp.is_some()
    }

    pub fn legacy_db(&self) -> PathBuf {
        self.path("legacy.db")
    }

    /// The proxy's state store: rollout values, audit log, the dual-write log.
    pub fn state(&self) -> PathBuf {
        self.path("ficus-state.db")
    }

    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf, DemoError> {
        let path = self.path(name);
        std::fs::write(&path, text).map_err(io_error(&path))?;
        Ok(path)
    }
}

pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError {
    let path = path.to_path_buf();
    move |source| DemoError::Io { path, source }
}

/// Removes its directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Everything running.
pub struct Stage {
    pub ws: Workspace,
    pub pg: pgtemp::Cluster,
    /// The new service's database.
    pub pg_url: String,
    /// `migration.toml`, as the migrator reads it.
    pub migration: MigrationConfig,
    pub legacy: Server,
    /// The new service, build v1: answers like legacy.
    pub v1: Server,
    /// Build v2, the "next build": two deliberate differences for shadow mode to find.
    pub v2: Server,
    pub proxy: ProxyHandle,
    /// The admin API, as an operator with the token uses it (`ficus rollout ...`).
    pub operator: AdminClient,
    pub client: Client,
    admin_token: String,
    phase: Phase,
}

/// What [`Stage::start`] needs that earlier chapters made.
pub struct Ground {
    pub ws: Workspace,
    pub pg: pgtemp::Cluster,
    pub pg_url: String,
    pub migration: MigrationConfig,
}

/// The three running task apps [`Stage::start`] puts the proxy in front of.
pub struct Apps {
    pub legacy: Server,
    pub v1: Server,
    pub v2: Server,
}

impl Stage {
    /// Writes `ficus.toml` for `phase` and starts the proxy with it.
    pub fn start(ground: Ground, apps: Apps, phase: Phase) -> Result<Stage, DemoError> {
        let admin_token = demo_token();
        ground.ws.write("admin-token", &admin_token)?;
        let config = Self::config_for(&ground.ws, &apps.legacy.url(), &phase, &admin_token)?;
        let proxy = ficus_proxy::Proxy::start(config, None)?;
        let operator = AdminClient::new(
            &format!("http://{}", proxy.admin_addr()),
            Some(admin_token.clone()),
            Some("demo-operator".into()),
        )?;
        let stage = Stage {
            ws: ground.ws,
            pg: ground.pg,
            pg_url: ground.pg_url,
            migration: ground.migration,
            legacy: apps.legacy,
            v1: apps.v1,
            v2: apps.v2,
            proxy,
            operator,
            client: Client::new(),
            admin_token,
            phase,
        };
        write_env(&stage.ws, &stage.pg_url, Some(&stage.admin()))?;
        Ok(stage)
    }

    /// The proxy's data-plane URL.
    pub fn entry(&self) -> String {
        format!("http://{}", self.proxy.listen_addr())
    }

    /// The proxy's admin URL (API, page at `/`, `/metrics`).
    pub fn admin(&self) -> String {
        format!("http://{}", self.proxy.admin_addr())
    }

    /// The admin token (also in `admin-token`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The phase in force.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Rewrites `ficus.toml` for `phase` and applies it to the running proxy, as a reload does
    /// (`kill -HUP` for a `ficus proxy` process). Run-time rollout values stay in force.
    pub fn reconfigure(&mut self, phase: Phase) -> Result<(), DemoError> {
        let config = Self::config_for(&self.ws, &self.legacy.url(), &phase, &self.admin_token)?;
        let report = self.proxy.apply_config(config)?;
        crate::expect(report.needs_restart.is_empty(), || {
            format!("the reload needs a restart for {:?}", report.needs_restart)
        })?;
        self.phase = phase;
        Ok(())
    }

    /// The route's status as the admin API reports it.
    pub async fn route(&self, name: &str) -> Result<RouteStatus, DemoError> {
        self.operator
            .routes()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| DemoError::Step(format!("the proxy has no route {name}")))
    }

    /// Waits until `route` is at `percent`, up to `within`; how long it took, if it got there.
    pub async fn wait_for_percent(
        &self,
        route: &str,
        percent: f64,
        within: Duration,
    ) -> Result<Option<Duration>, DemoError> {
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if self.route(route).await?.percent == percent {
                return Ok(Some(started.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    /// Stops the proxy, the apps and PostgreSQL.
    pub async fn shutdown(self) -> Result<(), DemoError> {
        self.proxy.shutdown().await;
        for app in [self.legacy, self.v1, self.v2] {
            app.shutdown().await;
        }
        let pg = self.pg;
        tokio::task::spawn_blocking(move || drop(pg)).await?;
        Ok(())
    }

    fn config_for(
        ws: &Workspace,
        legacy_url: &str,
        phase: &Phase,
        token: &str,
    ) -> Result<ficus_proxy::Config, DemoError> {
        let text = proxy_config::render(&ws.dir, legacy_url, phase);
        ws.write("ficus.toml", &text)?;
        let mut config = ficus_proxy::Config::from_toml_str(&text)?;
        // Given in code, so the file stays free of secrets (`ficus proxy` reads
        // $FICUS_ADMIN_TOKEN instead).
        config.proxy.admin_token = Some(ficus_proxy::config::Secret(token.to_string()));
        Ok(config)
    }
}

/// `env.sh`: what the shell commands the demo prints need (the admin lines once the proxy runs).
pub fn write_env(ws: &Workspace, pg_url: &str, admin: Option<&str>) -> Result<(), DemoError> {
    let mut text = format!(
        "# . {env}   — then the commands `ficus demo` prints run as shown\n\
         cd {dir}\n\
         export FICUS_MIGRATE_TARGET={pg_url}\n\
         export FICUS_LIVE_TARGET={live}\n",
        env = ws.path("env.sh").display(),
        dir = ws.dir.display(),
        live = live_target(pg_url),
    );
    if let Some(admin) = admin {
        text.push_str(&format!(
            "export FICUS_ADMIN_URL={admin}\nexport FICUS_ADMIN_TOKEN=$(cat admin-token)\n"
        ));
    }
    ws.write("env.sh", &text)?;
    Ok(())
}

/// The database the live-migration chapter follows into, beside the new service's.
pub fn live_target(pg_url: &str) -> String {
    match pg_url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/tasks_live"),
        None => pg_url.to_string(),
    }
}

/// Starts a build of the new service on PostgreSQL `pg_url` with the named quirks
/// (`extra-field`, `slow:400`, ...), on a free loopback port.
pub async fn serve_new_build(pg_url: &str, quirks: &[&str]) -> Result<Server, DemoError> {
    let quirks = quirks
        .iter()
        .map(|q| q.parse())
        .collect::<Result<Vec<ficus_taskapp::Quirk>, _>>()
        .map_err(|e| DemoError::Step(format!("quirk: {e}")))?;
    Ok(ficus_taskapp::serve_new(pg_url, loopback().await?, quirks).await?)
}

/// A listener on a free loopback port.
pub async fn loopback() -> Result<tokio::net::TcpListener, DemoError> {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io_error(Path::new("127.0.0.1:0")))
}

/// A per-run admin token (the demo's own; a real deployment reads it from the environment).
fn demo_token() -> String {
    use rand::RngExt as _;
    let mut r = rand::rng();
    (0..32)
        .map(|_| format!("{:x}", r.random_range(0..16u8)))
        .collect()
}
