//! [`StateLocation`]: which store — a SQLite file or a PostgreSQL URL.

use std::path::{Path, PathBuf};

use crate::StateError;
use ficus_pg::url::{is_postgres_url, redact_url};

/// Where the proxy's state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// A SQLite file (`:memory:` keeps nothing).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://` or `postgresql://`); tables live in schema `ficus_proxy`.
    Postgres(String),
}

impl std::fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            StateLocation::Postgres(u) => write!(f, "Postgres({})", redact_url(u)),
        }
    }
}

impl std::fmt::Display for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::Sqlite(p) => write!(f, "{}", p.display()),
            StateLocation::Postgres(u) => f.write_str(&redact_url(u)),
        }
    }
}

impl StateLocation {
    /// `postgres://...` / `postgresql://...` is PostgreSQL; anything else a SQLite path.
    pub fn parse(s: &str) -> StateLocation {
        if is_postgres_url(s) {
            StateLocation::Postgres(s.to_string())
        } else {
            StateLocation::Sqlite(PathBuf::from(s))
        }
    }

    /// [`StateLocation::parse`] of a path-or-URL given as a path (a `--proxy-state` flag).
    pub fn from_path(p: &Path) -> StateLocation {
        StateLocation::parse(&p.to_string_lossy())
    }

    /// The proxy's setting: the URL in the environment variable `state_env` when that is set,
    /// else `state` (a `postgres://` URL or a SQLite path).
    pub fn resolve(state: &Path, state_env: Option<&str>) -> Result<StateLocation, StateError> {
        if let Some(var) = state_env {
            let v = std::env::var(var).unwrap_or_default();
            let v = v.trim();
            if v.is_empty() {
                return Err(StateError::MissingEnv { var: var.into() });
            }
            return Ok(StateLocation::parse(v));
        }
        Ok(StateLocation::from_path(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_show() {
        assert_eq!(
            StateLocation::parse("postgres://u:pw@h:5432/db"),
            StateLocation::Postgres("postgres://u:pw@h:5432/db".into())
        );
        assert_eq!(
            StateLocation::parse("ficus-state.db"),
            StateLocation::Sqlite("ficus-state.db".into())
        );
        let pg = StateLocation::parse("postgres://u:secret@h/db");
        assert!(!format!("{pg:?}").contains("secret"));
        assert!(!pg.to_string().contains("secret"));
    }

    #[test]
    fn missing_env_names_the_variable() {
        let e = StateLocation::resolve(Path::new("x.db"), Some("FICUS_TEST_UNSET_STATE_VAR"))
            .unwrap_err();
        assert!(e.to_string().contains("FICUS_TEST_UNSET_STATE_VAR"), "{e}");
    }
}
