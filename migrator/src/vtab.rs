//! Virtual tables of the SQLite source: which module each uses, which ordinary tables are its
//! shadow tables, and what the migration does with it. A virtual table never stops a
//! migration:
//!
//! - FTS3/FTS4/FTS5 tables holding their own text become ordinary tables with their content
//!   columns (read through the module, which ficus's bundled SQLite has); their shadow tables
//!   (`_content`, `_data`, `_idx`, `_docsize`, `_config`, `_segments`, `_segdir`, `_stat`) are
//!   skipped, recognised from the FTS table (and from `PRAGMA table_list`), not by suffix alone;
//! - external-content and contentless FTS tables, R*Tree, SpatiaLite's and unknown modules
//!   (whose module may not even be loadable) are skipped, each with its reason
//!   (`NotCarried`).

use std::collections::BTreeMap;

use rusqlite::Connection;

/// What to do with one virtual table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VirtualPlan {
    /// Migrate as an ordinary table with its content columns; the module (`fts3`/`fts4`/`fts5`).
    Fts(String),
    /// Skip it: the reason.
    Skip(String),
}

/// The module and arguments of `CREATE VIRTUAL TABLE … USING module(args)` (module lowercase).
pub(crate) fn module_of(sql: &str) -> Option<(String, Vec<String>)> {
    let upper = sql.to_ascii_uppercase();
    let at = find_word(&upper, "USING")?;
    let rest = sql[at + 5..].trim_start();
    let end = rest
        .find(|c: char| c == '(' || c.is_whitespace() || c == ';')
        .unwrap_or(rest.len());
    let module = rest[..end]
        .trim_matches(['"', '`', '[', ']'])
        .to_ascii_lowercase();
    let args = rest[end..]
        .trim_start()
        .strip_prefix('(')
        .and_then(|a| a.rfind(')').map(|i| &a[..i]))
        .map(split_args)
        .unwrap_or_default();
    Some((module, args))
}

fn find_word(upper: &str, word: &str) -> Option<usize> {
    let b = upper.as_bytes();
    let mut from = 0;
    while let Some(i) = upper[from..].find(word).map(|i| i + from) {
        let before = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let after = b
            .get(i + word.len())
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
        if before && after {
            return Some(i);
        }
        from = i + word.len();
    }
    None
}

/// Split a module argument list at top-level commas (quotes and parentheses respected).
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0u32;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                '[' => quote = Some(']'),
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    out.push(cur.trim().to_string());
                    cur.clear();
                    continue;
                }
                _ => {}
            },
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The value of an FTS option `key=value` among the arguments (unquoted), if given.
fn option(args: &[String], key: &str) -> Option<String> {
    args.iter().find_map(|a| {
        let (k, v) = a.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches(['\'', '"', '`']).to_string())
    })
}

/// Suffixes of the shadow tables a module creates (`<name>_<suffix>`).
fn shadow_suffixes(module: &str) -> &'static [&'static str] {
    match module {
        "fts3" | "fts4" => &["content", "segments", "segdir", "docsize", "stat"],
        "fts5" => &["data", "idx", "content", "docsize", "config"],
        "rtree" | "rtree_i32" | "geopoly" => &["node", "rowid", "parent"],
        _ => &[],
    }
}

/// Decide what to do with a virtual table (`quoted`: its name quoted for SQL) of `module`.
/// This module sits below `introspect` and does no quoting of its own.
pub(crate) fn plan_virtual(
    conn: &Connection,
    quoted: &str,
    module: &str,
    args: &[String],
) -> VirtualPlan {
    match module {
        "fts3" | "fts4" | "fts5" => {
            match option(args, "content") {
                Some(c) if c.is_empty() => {
                    return VirtualPlan::Skip(format!(
                        "contentless {} full-text index (content=''): it stores no text to migrate",
                        module.to_ascii_uppercase()
                    ))
                }
                Some(c) => {
                    return VirtualPlan::Skip(format!(
                        "{} full-text index over table {c} (external content): its rows are {c}'s, migrated with it; index it in PostgreSQL with a tsvector column and a GIN index",
                        module.to_ascii_uppercase()
                    ))
                }
                None => {}
            }
            // The module must be usable to read the text (ficus's bundled SQLite has FTS3/4/5).
            let probe = conn
                .prepare(&format!("SELECT * FROM {quoted} LIMIT 0"))
                .and_then(|mut st| st.query([]).map(|_| ()));
            match probe {
                Ok(()) => VirtualPlan::Fts(module.to_string()),
                Err(e) => VirtualPlan::Skip(format!(
                    "{} full-text table that cannot be read here ({e}); not migrated",
                    module.to_ascii_uppercase()
                )),
            }
        }
        "rtree" | "rtree_i32" | "geopoly" => VirtualPlan::Skip(format!(
            "{module} spatial index (virtual table): an index, not data of its own; use a GiST index (or PostGIS) in PostgreSQL"
        )),
        m if m.starts_with("virtual") || m.starts_with("spatialite") || m == "knn" || m == "knn2" => {
            VirtualPlan::Skip(format!(
                "SpatiaLite virtual table (module {module}): needs the SpatiaLite extension and holds no rows of its own; not migrated"
            ))
        }
        _ => VirtualPlan::Skip(format!(
            "virtual table of module {module}: not an ordinary table (its module may not even be loadable here); not migrated"
        )),
    }
}

/// Shadow tables of the given virtual tables (`name → module`), by lowercase name → owner,
/// plus whatever `PRAGMA table_list` marks as a shadow table.
pub(crate) fn shadow_tables(
    conn: &Connection,
    virtuals: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, module) in virtuals {
        for s in shadow_suffixes(module) {
            out.insert(format!("{name}_{s}").to_lowercase(), name.clone());
        }
    }
    // SQLite ≥ 3.37 knows the shadow tables of the modules it has loaded.
    if let Ok(mut st) =
        conn.prepare("SELECT name, type FROM pragma_table_list WHERE schema = 'main'")
    {
        if let Ok(rows) = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        {
            for (n, ty) in rows.flatten() {
                if ty == "shadow" {
                    let lower = n.to_lowercase();
                    let owner = virtuals
                        .iter()
                        .filter(|(v, _)| lower.starts_with(&format!("{}_", v.to_lowercase())))
                        .map(|(v, _)| v.clone())
                        .max_by_key(|v| v.len())
                        .unwrap_or_else(|| "a virtual table".into());
                    out.entry(lower).or_insert(owner);
                }
            }
        }
    }
    out
}

/// The suggested PostgreSQL full-text search for a migrated FTS table: a generated `tsvector`
/// column over its content columns (quoted) and a GIN index (`index`, quoted) on it.
pub(crate) fn tsvector_suggestion(
    qualified_table: &str,
    index: &str,
    columns: &[String],
) -> String {
    let doc = columns
        .iter()
        .map(|c| format!("coalesce({c}::text, '')"))
        .collect::<Vec<_>>()
        .join(" || ' ' || ");
    let idx = index;
    format!(
        "ALTER TABLE {qualified_table} ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', {doc})) STORED; \
         CREATE INDEX {idx} ON {qualified_table} USING GIN (search);"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_and_args() {
        assert_eq!(
            module_of("CREATE VIRTUAL TABLE s USING fts5(title, body, tokenize = 'porter ascii', content='')"),
            Some((
                "fts5".into(),
                vec![
                    "title".into(),
                    "body".into(),
                    "tokenize = 'porter ascii'".into(),
                    "content=''".into()
                ]
            ))
        );
        assert_eq!(
            module_of("CREATE VIRTUAL TABLE SpatialIndex USING VirtualSpatialIndex()"),
            Some(("virtualspatialindex".into(), vec![]))
        );
        assert_eq!(
            option(&split_args("a, content=\"docs\", b"), "content").as_deref(),
            Some("docs")
        );
    }
}
