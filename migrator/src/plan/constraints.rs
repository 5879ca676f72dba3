//! Keys, UNIQUE constraints, indexes, CHECK constraints and foreign keys of one table, as
//! PostgreSQL DDL. SQLite expressions (index expressions, partial-index predicates, CHECKs)
//! are carried over token by token: `==` → `=`, `[x]` → `"x"`, boolean columns compared with
//! 0/1 → false/true; what PostgreSQL then rejects is reported by `run`, not guessed at here.

use std::fmt::Write as _;

use super::ddl::{pg_ident_limit, qualified};
use super::types::{CheckPlan, FkPlan, IndexPlan, TablePlan};
use crate::convert::PgType;
use crate::introspect::{quote_sqlite, IndexInfo, TableInfo};

pub(super) fn index_and_check_plans(
    info: &TableInfo,
    tp: &TablePlan,
    schema: &str,
) -> (Vec<IndexPlan>, Vec<CheckPlan>) {
    let q = qualified(schema, &tp.name);
    let mut out = Vec::new();
    if !tp.key_columns.is_empty() {
        let cols: Vec<String> = tp
            .key_columns
            .iter()
            .map(|c| quote_sqlite(&tp.columns[*c].name))
            .collect();
        let name = pg_ident_limit(format!("{}_pkey", tp.name));
        out.push(IndexPlan {
            sql: format!(
                "ALTER TABLE {q} ADD CONSTRAINT {} PRIMARY KEY ({})",
                quote_sqlite(&name),
                cols.join(", ")
            ),
            name,
            required: true,
            note: None,
        });
    }
    let bools: Vec<String> = tp
        .columns
        .iter()
        .filter(|c| c.conversion.pg_type == PgType::Boolean)
        .map(|c| c.name.clone())
        .collect();
    for ix in &info.indexes {
        if ix.origin == "pk" {
            continue;
        }
        out.push(index_plan(ix, tp, &q, schema, &bools));
    }
    let mut checks = Vec::new();
    for (n, c) in info.checks.iter().enumerate() {
        let name = pg_ident_limit(format!("{}_check{}", tp.name, n + 1));
        let toks = tokens(c);
        let norm: Vec<String> = toks.iter().map(|t| t.to_ascii_lowercase()).collect();
        let is_bool_in = norm.len() == 7
            && bools.iter().any(|b| unquote(&toks[0]) == *b)
            && norm[1] == "in"
            && matches!(norm[2..].join(" ").as_str(), "( 0 , 1 )" | "( 1 , 0 )");
        if is_bool_in {
            checks.push(CheckPlan {
                name,
                sqlite: c.clone(),
                sql: None,
                note: Some("the boolean type already enforces it".into()),
            });
            continue;
        }
        checks.push(CheckPlan {
            name: name.clone(),
            sqlite: c.clone(),
            sql: Some(format!(
                "ALTER TABLE {q} ADD CONSTRAINT {} CHECK ({})",
                quote_sqlite(&name),
                rewrite_expr(c, &bools)
            )),
            note: Some("SQLite expression carried over; reported if PostgreSQL rejects it".into()),
        });
    }
    (out, checks)
}

fn index_plan(
    ix: &IndexInfo,
    tp: &TablePlan,
    q: &str,
    schema: &str,
    bools: &[String],
) -> IndexPlan {
    let mut notes = Vec::new();
    let mut plain = true;
    let items: Vec<String> = ix
        .columns
        .iter()
        .map(|c| {
            let mut s = match (&c.column, &c.expr) {
                (Some(col), _) => quote_sqlite(col),
                (None, Some(e)) => {
                    plain = false;
                    format!("({})", rewrite_expr(e, bools))
                }
                (None, None) => {
                    plain = false;
                    "rowid".into()
                }
            };
            let column_collation = c
                .column
                .as_ref()
                .and_then(|n| tp.columns.iter().find(|pc| &pc.name == n))
                .and_then(|pc| pc.collation.as_deref());
            if let Some(pg) = column_collation {
                notes.push(format!(
                    "collation {}: the column's case-insensitive collation {pg} applies",
                    c.collation
                ));
            } else if !c.collation.eq_ignore_ascii_case("BINARY") && !c.collation.is_empty() {
                notes.push(format!(
                    "collation {} has no PostgreSQL equivalent: default collation used",
                    c.collation
                ));
            }
            if c.desc {
                s.push_str(" DESC");
            }
            s
        })
        .collect();
    if ix.origin == "u" && plain {
        let cols: Vec<&str> = ix
            .columns
            .iter()
            .filter_map(|c| c.column.as_deref())
            .collect();
        let name = pg_ident_limit(format!("{}_{}_key", tp.name, cols.join("_")));
        return IndexPlan {
            sql: format!(
                "ALTER TABLE {q} ADD CONSTRAINT {} UNIQUE ({})",
                quote_sqlite(&name),
                items.join(", ")
            ),
            name,
            required: true,
            note: if notes.is_empty() {
                None
            } else {
                Some(notes.join("; "))
            },
        };
    }
    let name = pg_ident_limit(ix.name.clone());
    let mut sql = format!(
        "CREATE {}INDEX IF NOT EXISTS {} ON {q} ({})",
        if ix.unique { "UNIQUE " } else { "" },
        quote_sqlite(&name),
        items.join(", ")
    );
    let _ = schema;
    if let Some(w) = &ix.partial {
        let _ = write!(sql, " WHERE {}", rewrite_expr(w, bools));
        plain = false;
    }
    if !plain {
        notes.push(
            "expression/predicate carried over from SQLite; reported if PostgreSQL rejects it"
                .into(),
        );
    }
    IndexPlan {
        name,
        sql,
        required: plain,
        note: if notes.is_empty() {
            None
        } else {
            Some(notes.join("; "))
        },
    }
}

pub(super) fn fk_plans(
    info: &TableInfo,
    tp: &TablePlan,
    infos: &[TableInfo],
    tables: &[TablePlan],
    schema: &str,
    warnings: &mut Vec<String>,
) -> Vec<FkPlan> {
    let mut out = Vec::new();
    for fk in &info.foreign_keys {
        let Some(pi) = infos
            .iter()
            .position(|t| t.name.eq_ignore_ascii_case(&fk.ref_table))
        else {
            warnings.push(format!(
                "{}: foreign key ({}) references table {} which is not migrated; not created",
                info.name,
                fk.columns.join(", "),
                fk.ref_table
            ));
            continue;
        };
        let parent = &tables[pi];
        let pinfo = &infos[pi];
        let refs = if fk.ref_columns.is_empty() {
            pinfo.primary_key.clone()
        } else {
            fk.ref_columns.clone()
        };
        let mut sorted = refs.clone();
        sorted.sort();
        let unique = {
            let mut pk = pinfo.primary_key.clone();
            pk.sort();
            pk == sorted
                || pinfo.indexes.iter().any(|ix| {
                    let mut cols: Vec<String> =
                        ix.columns.iter().filter_map(|c| c.column.clone()).collect();
                    cols.sort();
                    ix.unique
                        && ix.partial.is_none()
                        && cols.len() == ix.columns.len()
                        && cols == sorted
                })
        };
        if !unique || refs.len() != fk.columns.len() {
            warnings.push(format!(
                "{}: foreign key ({}) → {}({}) references columns without a unique key; PostgreSQL cannot enforce it; not created",
                info.name,
                fk.columns.join(", "),
                fk.ref_table,
                refs.join(", ")
            ));
            continue;
        }
        let name = pg_ident_limit(format!("{}_{}_fkey", tp.name, fk.columns.join("_")));
        let q = qualified(schema, &tp.name);
        let act = |a: &str| {
            let a = a.to_ascii_uppercase();
            if a.is_empty() {
                "NO ACTION".to_string()
            } else {
                a
            }
        };
        let cols: Vec<String> = fk.columns.iter().map(|c| quote_sqlite(c)).collect();
        let rcols: Vec<String> = refs.iter().map(|c| quote_sqlite(c)).collect();
        out.push(FkPlan {
            add_sql: format!(
                "ALTER TABLE {q} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON UPDATE {} ON DELETE {} NOT VALID",
                quote_sqlite(&name),
                cols.join(", "),
                qualified(schema, &parent.name),
                rcols.join(", "),
                act(&fk.on_update),
                act(&fk.on_delete)
            ),
            validate_sql: format!("ALTER TABLE {q} VALIDATE CONSTRAINT {}", quote_sqlite(&name)),
            name,
        });
    }
    out
}

/// Split a SQL expression into tokens (identifiers, quoted names, strings, numbers,
/// operators).
fn tokens(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' || c == b'"' || c == b'`' || c == b'[' {
            let close = if c == b'[' { b']' } else { c };
            let st = i;
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
            i = (i + 1).min(b.len());
            out.push(s[st..i].to_string());
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
            let st = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.' || b[i] >= 0x80)
            {
                i += 1;
            }
            out.push(s[st..i].to_string());
        } else if c >= 0x80 {
            let st = i;
            while i < b.len() && b[i] >= 0x80 {
                i += 1;
            }
            out.push(s[st..i].to_string());
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            if matches!(two, "==" | "!=" | "<>" | "<=" | ">=" | "||") {
                out.push(two.to_string());
                i += 2;
            } else {
                out.push((c as char).to_string());
                i += 1;
            }
        }
    }
    out
}

fn unquote(t: &str) -> String {
    let b = t.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'`') {
        t[1..t.len() - 1].replace("\"\"", "\"")
    } else if b.len() >= 2 && b[0] == b'[' {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

/// Carry a SQLite expression over: `==` → `=`, `[x]`/`` `x` `` → `"x"`, and comparisons of
/// boolean columns with 0/1 → false/true.
fn rewrite_expr(e: &str, bools: &[String]) -> String {
    let toks = tokens(e);
    let mut out: Vec<String> = Vec::with_capacity(toks.len());
    for (i, t) in toks.iter().enumerate() {
        let mut t = t.clone();
        if t == "==" {
            t = "=".into();
        }
        if t.starts_with('[') || t.starts_with('`') {
            t = quote_sqlite(&unquote(&t));
        }
        if (t == "0" || t == "1") && i >= 2 {
            let op = toks[i - 1].to_ascii_lowercase();
            if matches!(op.as_str(), "=" | "==" | "!=" | "<>" | "is")
                && bools.contains(&unquote(&toks[i - 2]))
            {
                t = if t == "1" {
                    "true".into()
                } else {
                    "false".into()
                };
            }
        }
        out.push(t);
    }
    let mut s = String::new();
    for (i, t) in out.iter().enumerate() {
        if i > 0
            && !(t == "(" && out[i - 1].chars().all(|c| c.is_alphanumeric() || c == '_'))
            && t != ")"
            && t != ","
            && out[i - 1] != "("
        {
            s.push(' ');
        }
        s.push_str(t);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_rewrite() {
        let b = vec!["done".to_string()];
        assert_eq!(
            rewrite_expr("done == 1 AND [x] <> 'a b'", &b),
            "done = true AND \"x\" <> 'a b'"
        );
        assert_eq!(rewrite_expr("lower(code)", &b), "lower(code)");
    }
}
