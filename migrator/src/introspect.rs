//! What the SQLite file declares: tables, columns, declared types, primary keys (composite,
//! rowid alias, WITHOUT ROWID), UNIQUE constraints, indexes (DESC, partial, expressions),
//! foreign keys, CHECK constraints, defaults, views and triggers.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::error::{MigrateError, Result, SqliteContext};
use crate::not_carried::NotCarried;
use crate::vtab::{module_of, plan_virtual, shadow_tables, VirtualPlan};

/// Everything introspected from one SQLite file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceSchema {
    pub tables: Vec<TableInfo>,
    pub views: Vec<ViewInfo>,
    /// Triggers are reported, not migrated.
    pub triggers: Vec<TriggerInfo>,
    /// Virtual tables (and their shadow tables) not migrated, with the reason.
    #[serde(default)]
    pub skipped: Vec<NotCarried>,
}

/// One table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns, in key order (empty: no declared key).
    pub primary_key: Vec<String>,
    pub without_rowid: bool,
    /// Index of the INTEGER PRIMARY KEY column that aliases the rowid.
    pub rowid_alias: Option<usize>,
    pub autoincrement: bool,
    /// Name to select the rowid by (`rowid`, `_rowid_` or `oid`, whichever no column shadows).
    pub rowid_name: Option<String>,
    pub indexes: Vec<IndexInfo>,
    pub foreign_keys: Vec<ForeignKey>,
    pub checks: Vec<String>,
    pub sql: String,
    /// The FTS module (`fts3`/`fts4`/`fts5`) of a full-text virtual table migrated as an
    /// ordinary table with its content columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fts: Option<String>,
}

/// One column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    /// Declared type as written (may be empty).
    pub declared: String,
    pub not_null: bool,
    /// Default expression as written in SQLite.
    pub default: Option<String>,
    /// 1-based position in the primary key, 0 if not part of it.
    pub pk: u32,
    /// Generated (computed) column.
    pub generated: bool,
    /// The collation the column declares (`COLLATE name`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
}

/// One index or UNIQUE constraint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexInfo {
    pub name: String,
    pub unique: bool,
    /// `c` (CREATE INDEX), `u` (UNIQUE constraint) or `pk`.
    pub origin: String,
    pub columns: Vec<IndexColumn>,
    /// WHERE clause of a partial index.
    pub partial: Option<String>,
}

/// One indexed column or expression.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexColumn {
    /// Column name, or None for an expression.
    pub column: Option<String>,
    /// Expression text (for expression indexes).
    pub expr: Option<String>,
    pub desc: bool,
    pub collation: String,
}

/// One foreign key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub ref_table: String,
    /// Referenced columns (empty: the parent's primary key).
    pub ref_columns: Vec<String>,
    pub on_update: String,
    pub on_delete: String,
}

/// One view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewInfo {
    pub name: String,
    pub sql: String,
}

/// One trigger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TriggerInfo {
    pub name: String,
    pub sql: String,
}

/// Introspect the schema of an open SQLite connection.
pub fn introspect(conn: &Connection) -> Result<SourceSchema> {
    let mut objects: Vec<(String, String, String)> = Vec::new();
    {
        let mut st = conn
            .prepare(
                "SELECT type, name, coalesce(sql, '') FROM sqlite_master \
                 WHERE type IN ('table', 'view', 'trigger') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 AND lower(name) NOT LIKE '\\_ficus\\_%' ESCAPE '\\' \
                 ORDER BY rowid",
            )
            .table("sqlite_master")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .table("sqlite_master")?;
        for r in rows {
            objects.push(r.table("sqlite_master")?);
        }
    }
    let mut schema = SourceSchema {
        tables: Vec::new(),
        views: Vec::new(),
        triggers: Vec::new(),
        skipped: Vec::new(),
    };
    let is_virtual =
        |sql: &str| normalize_ws(&sql.to_ascii_uppercase()).starts_with("CREATE VIRTUAL TABLE");
    let virtuals: Vec<(String, String, Vec<String>)> = objects
        .iter()
        .filter(|(ty, _, sql)| ty == "table" && is_virtual(sql))
        .map(|(_, name, sql)| {
            let (module, args) = module_of(sql).unwrap_or_default();
            (name.clone(), module, args)
        })
        .collect();
    let shadows = shadow_tables(
        conn,
        &virtuals
            .iter()
            .map(|(n, m, _)| (n.clone(), m.clone()))
            .collect::<Vec<_>>(),
    );
    for (ty, name, sql) in objects {
        match ty.as_str() {
            "table" => {
                if let Some((_, module, args)) = virtuals.iter().find(|(n, _, _)| *n == name) {
                    match plan_virtual(conn, &quote_sqlite(&name), module, args) {
                        VirtualPlan::Fts(m) => {
                            let mut t = table_info(conn, &name, &sql)?;
                            t.fts = Some(m);
                            schema.tables.push(t);
                        }
                        VirtualPlan::Skip(reason) => schema.skipped.push(NotCarried {
                            kind: "virtual table".into(),
                            name,
                            reason,
                            sql,
                        }),
                    }
                    continue;
                }
                if let Some(owner) = shadows.get(&name.to_lowercase()) {
                    schema.skipped.push(NotCarried {
                        kind: "shadow table".into(),
                        name,
                        reason: format!("internal storage of virtual table {owner}"),
                        sql,
                    });
                    continue;
                }
                schema.tables.push(table_info(conn, &name, &sql)?);
            }
            "view" => schema.views.push(ViewInfo { name, sql }),
            _ => schema.triggers.push(TriggerInfo { name, sql }),
        }
    }
    Ok(schema)
}

fn table_info(conn: &Connection, name: &str, sql: &str) -> Result<TableInfo> {
    let q = quote_sqlite(name);
    let mut columns = Vec::new();
    {
        let mut st = conn
            .prepare(&format!("PRAGMA table_xinfo({q})"))
            .table(name)?;
        let rows = st
            .query_map([], |r| {
                let hidden: i64 = r.get(6)?;
                Ok((
                    hidden,
                    ColumnInfo {
                        name: r.get(1)?,
                        declared: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        not_null: r.get::<_, i64>(3)? != 0,
                        default: r.get(4)?,
                        pk: r.get::<_, i64>(5)? as u32,
                        generated: hidden == 2 || hidden == 3,
                        collation: None,
                    },
                ))
            })
            .table(name)?;
        for r in rows {
            let (hidden, c) = r.table(name)?;
            if hidden == 1 {
                continue;
            }
            columns.push(c);
        }
    }
    for (col, coll) in column_collations(sql) {
        if let Some(c) = columns
            .iter_mut()
            .find(|c| c.name.eq_ignore_ascii_case(&col))
        {
            c.collation = Some(coll);
        }
    }
    let mut pk: Vec<&ColumnInfo> = columns.iter().filter(|c| c.pk > 0).collect();
    pk.sort_by_key(|c| c.pk);
    let primary_key: Vec<String> = pk.iter().map(|c| c.name.clone()).collect();
    let upper = normalize_ws(&sql.to_ascii_uppercase());
    let tail = upper.rsplit(')').next().unwrap_or("");
    let without_rowid = tail.contains("WITHOUT ROWID");
    let rowid_alias =
        if !without_rowid && pk.len() == 1 && pk[0].declared.eq_ignore_ascii_case("INTEGER") {
            columns.iter().position(|c| c.name == pk[0].name)
        } else {
            None
        };
    let rowid_name = if without_rowid {
        None
    } else {
        ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|n| !columns.iter().any(|c| c.name.eq_ignore_ascii_case(n)))
            .map(String::from)
    };
    if !without_rowid && rowid_name.is_none() && rowid_alias.is_none() {
        return Err(MigrateError::Schema(format!(
            "table {name}: columns named rowid, _rowid_ and oid hide the rowid and there is no INTEGER PRIMARY KEY to read it by"
        )));
    }

    let mut indexes = Vec::new();
    let mut list: Vec<(String, bool, String, bool)> = Vec::new();
    {
        let mut st = conn
            .prepare(&format!("PRAGMA index_list({q})"))
            .table(name)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? != 0,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)? != 0,
                ))
            })
            .table(name)?;
        for r in rows {
            list.push(r.table(name)?);
        }
    }
    for (iname, unique, origin, partial) in list.into_iter().rev() {
        let isql: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [&iname],
                |r| r.get(0),
            )
            .unwrap_or(None);
        let exprs = isql.as_deref().map(index_items).unwrap_or_default();
        let mut cols = Vec::new();
        {
            let mut st = conn
                .prepare(&format!("PRAGMA index_xinfo({})", quote_sqlite(&iname)))
                .table(name)?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)? != 0,
                        r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                        r.get::<_, i64>(5)? != 0,
                    ))
                })
                .table(name)?;
            for r in rows {
                let (seq, cid, cname, desc, coll, key) = r.table(name)?;
                if !key {
                    continue;
                }
                let expr = if cid == -2 {
                    Some(
                        exprs
                            .get(seq as usize)
                            .map(|e| strip_order_suffix(e))
                            .unwrap_or_default(),
                    )
                } else {
                    None
                };
                cols.push(IndexColumn {
                    column: cname,
                    expr,
                    desc,
                    collation: coll,
                });
            }
        }
        let partial = if partial {
            isql.as_deref().and_then(partial_where)
        } else {
            None
        };
        indexes.push(IndexInfo {
            name: iname,
            unique,
            origin,
            columns: cols,
            partial,
        });
    }

    let mut fks: Vec<(i64, ForeignKey)> = Vec::new();
    {
        let mut st = conn
            .prepare(&format!("PRAGMA foreign_key_list({q})"))
            .table(name)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .table(name)?;
        for r in rows {
            let (id, table, from, to, on_update, on_delete) = r.table(name)?;
            match fks.iter_mut().find(|(i, _)| *i == id) {
                Some((_, fk)) => {
                    fk.columns.push(from);
                    if let Some(t) = to {
                        fk.ref_columns.push(t);
                    }
                }
                None => fks.push((
                    id,
                    ForeignKey {
                        columns: vec![from],
                        ref_table: table,
                        ref_columns: to.into_iter().collect(),
                        on_update,
                        on_delete,
                    },
                )),
            }
        }
    }
    fks.sort_by_key(|(i, _)| -*i);
    let autoincrement = upper.contains("AUTOINCREMENT");
    Ok(TableInfo {
        name: name.to_string(),
        columns,
        primary_key,
        without_rowid,
        rowid_alias,
        autoincrement,
        rowid_name,
        indexes,
        foreign_keys: fks.into_iter().map(|(_, f)| f).collect(),
        checks: checks(sql),
        sql: sql.to_string(),
        fts: None,
    })
}

/// `"name"` quoted for SQLite (and PostgreSQL: same rules).
pub fn quote_sqlite(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` as a string literal, for SQLite (and PostgreSQL: same rules).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Byte offsets of SQL text outside quotes and comments, with the paren depth there.
fn scan(sql: &str) -> Vec<(usize, u32)> {
    let b = sql.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut depth = 0u32;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' | b'`' | b'[' => {
                let close = if c == b'[' { b']' } else { c };
                out.push((i, depth));
                i += 1;
                while i < b.len() {
                    if b[i] == close {
                        if close != b']' && b.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' => {
                out.push((i, depth));
                depth += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                out.push((i, depth));
            }
            _ => out.push((i, depth)),
        }
        i += 1;
    }
    out
}

fn keyword_at(sql: &str, i: usize, kw: &str) -> bool {
    let b = sql.as_bytes();
    let end = i + kw.len();
    end <= b.len()
        && sql[i..end].eq_ignore_ascii_case(kw)
        && (i == 0 || !is_ident(b[i - 1]))
        && (end == b.len() || !is_ident(b[end]))
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The CHECK expressions of a CREATE TABLE statement.
fn checks(sql: &str) -> Vec<String> {
    let pos = scan(sql);
    let mut out = Vec::new();
    let mut k = 0;
    while k < pos.len() {
        let (i, d) = pos[k];
        if d == 1 && keyword_at(sql, i, "CHECK") {
            // find the opening paren
            let mut j = k;
            while j < pos.len() && sql.as_bytes()[pos[j].0] != b'(' {
                j += 1;
            }
            if j < pos.len() {
                let open = pos[j].0;
                let mut m = j + 1;
                while m < pos.len() && !(sql.as_bytes()[pos[m].0] == b')' && pos[m].1 == 1) {
                    m += 1;
                }
                if m < pos.len() {
                    out.push(normalize_ws(&sql[open + 1..pos[m].0]));
                    k = m;
                }
            }
        }
        k += 1;
    }
    out
}

/// Items of the parenthesised list of a CREATE INDEX (or CREATE TABLE) statement.
fn index_items(sql: &str) -> Vec<String> {
    let pos = scan(sql);
    let Some(open) = pos
        .iter()
        .position(|(i, d)| *d == 0 && sql.as_bytes()[*i] == b'(')
    else {
        return Vec::new();
    };
    let mut items = Vec::new();
    let mut start = pos[open].0 + 1;
    for &(i, d) in &pos[open + 1..] {
        let c = sql.as_bytes()[i];
        if d == 1 && c == b',' {
            items.push(sql[start..i].trim().to_string());
            start = i + 1;
        } else if d == 0 && c == b')' {
            items.push(sql[start..i].trim().to_string());
            break;
        }
    }
    items
}

/// `(column, collation)` of each column definition of a CREATE TABLE statement declaring
/// `COLLATE name`.
fn column_collations(sql: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in index_items(sql) {
        let Some(col) = first_ident(&item) else {
            continue;
        };
        if ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"]
            .iter()
            .any(|k| keyword_at(&item, 0, k))
        {
            continue;
        }
        let Some(&(at, _)) = scan(&item)
            .iter()
            .find(|(i, d)| *d == 0 && keyword_at(&item, *i, "COLLATE"))
        else {
            continue;
        };
        if let Some(name) = first_ident(&item[at + "COLLATE".len()..]) {
            out.push((col, name));
        }
    }
    out
}

/// The identifier at the start of `s` (after whitespace), unquoted.
fn first_ident(s: &str) -> Option<String> {
    let s = s.trim_start();
    let close = match s.chars().next()? {
        '"' => '"',
        '`' => '`',
        '[' => ']',
        '\'' => '\'',
        _ => {
            let end = s
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(s.len());
            return (end > 0).then(|| s[..end].to_string());
        }
    };
    let body = &s[1..];
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == close {
            if close != ']' && chars.peek() == Some(&close) {
                chars.next();
                out.push(c);
                continue;
            }
            return Some(out);
        }
        out.push(c);
    }
    None
}

fn strip_order_suffix(e: &str) -> String {
    let t = e.trim_end();
    for kw in [" DESC", " ASC"] {
        if t.len() > kw.len() && t[t.len() - kw.len()..].eq_ignore_ascii_case(kw) {
            return t[..t.len() - kw.len()].trim_end().to_string();
        }
    }
    t.to_string()
}

/// The WHERE clause of a partial CREATE INDEX statement.
fn partial_where(sql: &str) -> Option<String> {
    let pos = scan(sql);
    let mut seen_list = false;
    for &(i, d) in &pos {
        if d == 0 && sql.as_bytes()[i] == b')' {
            seen_list = true;
        }
        if seen_list && d == 0 && keyword_at(sql, i, "WHERE") {
            return Some(normalize_ws(sql[i + 5..].trim()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_features() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            r#"CREATE TABLE p (id INTEGER PRIMARY KEY AUTOINCREMENT, code TEXT UNIQUE, n INT CHECK (n > 0), "select" TEXT DEFAULT 'x', CHECK (length(code) < 10));
               CREATE TABLE c (a TEXT, b INT, p_id INT REFERENCES p(id) ON DELETE CASCADE, PRIMARY KEY (a, b)) WITHOUT ROWID;
               CREATE INDEX ix_desc ON p (n DESC, code);
               CREATE INDEX ix_part ON p (code) WHERE n IS NOT NULL AND code <> 'x(y)';
               CREATE INDEX ix_expr ON p (lower(code));
               CREATE TABLE nopk (x, y);
               CREATE VIEW v AS SELECT id FROM p;"#,
        )
        .unwrap();
        let s = introspect(&c).unwrap();
        let p = &s.tables[0];
        assert_eq!(p.rowid_alias, Some(0));
        assert!(p.autoincrement);
        assert_eq!(p.checks, vec!["n > 0", "length(code) < 10"]);
        let desc = p.indexes.iter().find(|i| i.name == "ix_desc").unwrap();
        assert!(desc.columns[0].desc && !desc.columns[1].desc);
        let part = p.indexes.iter().find(|i| i.name == "ix_part").unwrap();
        assert_eq!(
            part.partial.as_deref(),
            Some("n IS NOT NULL AND code <> 'x(y)'")
        );
        let expr = p.indexes.iter().find(|i| i.name == "ix_expr").unwrap();
        assert_eq!(expr.columns[0].expr.as_deref(), Some("lower(code)"));
        assert!(p.indexes.iter().any(|i| i.origin == "u" && i.unique));
        let c2 = &s.tables[1];
        assert!(c2.without_rowid);
        assert_eq!(c2.primary_key, vec!["a", "b"]);
        assert_eq!(c2.foreign_keys[0].on_delete, "CASCADE");
        assert_eq!(s.tables[2].primary_key.len(), 0);
        assert_eq!(s.views[0].name, "v");
    }
}
