//! Views carried to PostgreSQL: each SQLite view's SELECT is parsed (sqlparser, SQLite
//! dialect), its syntax tree rewritten for PostgreSQL and printed again; the views are ordered
//! so each comes after the views it reads. What cannot be translated is kept in the plan with
//! the reason (never a failure of the whole plan).
//!
//! The rewrite, in SQLite's own semantics where PostgreSQL differs:
//! - identifiers: `[x]`, `` `x` `` and bare names become `"x"`, spelled as the migrated table,
//!   column or view is (SQLite names are case-insensitive, PostgreSQL's quoted ones are not);
//! - functions: `ifnull` → `coalesce`, `iif` → `CASE`, `group_concat` → `string_agg`,
//!   `instr` → `strpos`, `substr` with a negative start → `right`, `max`/`min` of several
//!   arguments → `greatest`/`least`, `total`, `round(x, n)`; `date`, `time`, `datetime`,
//!   `julianday`, `unixepoch`, `strftime` (common `%` forms) → casts, `date_trunc`, `interval`
//!   and `to_char` (`'now'` is UTC, as in SQLite); with constant arguments they are evaluated
//!   by SQLite itself and the result written as a literal;
//! - `LIKE` → `ILIKE` (SQLite's LIKE ignores case), `GLOB` → an anchored `~` regex,
//!   `a IS b` / `IS NOT` → `IS [NOT] DISTINCT FROM`, `COLLATE NOCASE` → `lower()` (on both
//!   sides of a comparison), `CAST(x AS INTEGER|REAL|BLOB)` →
//!   `bigint`/`double precision`/`bytea`, `+` with a text literal operand → `||` (MS-SQL-style
//!   concatenation, with a note: SQLite itself adds such values as numbers);
//! - a number compared with a text or boolean column becomes a string literal (SQLite applies
//!   the column's affinity to it); a naive date-time literal compared with a `timestamptz`
//!   column is read as UTC (as the migrator stores such values); `date`/`datetime`/`time`
//!   compared with a text column yield text in SQLite's format (else `date`/`timestamp`).
//!
//! `functions` holds the function and date/time translations.
//!
//! Integer division stays integer division on both sides (`bigint / bigint`); a NUMERIC
//! column SQLite stored as integers divides exactly in PostgreSQL: noted in the view's notes.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, InTarget,
    ObjectName, ObjectNamePart, Query, SelectItem, Statement, TableAlias, TableFactor, Value,
    ValueWithSpan, Visit, VisitMut, Visitor, VisitorMut,
};
use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

mod functions;

use self::functions::{glob_regex, quote, AS_TEXT};
use super::ddl::qualified;
use super::types::{ColumnPlan, TablePlan, ViewPlan};
use crate::convert::PgType;
use crate::introspect::ViewInfo;

/// The plans of `views` over the migrated `tables`, in creation order (each after the views
/// it reads; otherwise the source's order).
pub(super) fn view_plans(views: &[ViewInfo], tables: &[TablePlan], schema: &str) -> Vec<ViewPlan> {
    let parsed: Vec<Parsed> = views.iter().map(|v| parse_view(&v.sql)).collect();
    let names = Names::new(views, tables, &parsed);
    let folder = rusqlite::Connection::open_in_memory().ok();
    let mut plans: Vec<ViewPlan> = views
        .iter()
        .zip(parsed)
        .map(|(v, p)| {
            let mut plan = ViewPlan {
                name: v.name.clone(),
                sql: String::new(),
                sqlite: v.sql.clone(),
                depends_on: Vec::new(),
                notes: Vec::new(),
                untranslated: None,
            };
            match p.and_then(|(cols, q)| translate(cols, q, &names, folder.as_ref(), &mut plan)) {
                Ok(select) => {
                    plan.sql = format!(
                        "CREATE OR REPLACE VIEW {} {select}",
                        qualified(schema, &v.name)
                    )
                }
                Err(reason) => plan.untranslated = Some(reason),
            }
            plan
        })
        .collect();
    order_by_dependency(&mut plans);
    plans
}

/// A view's declared column names and its SELECT, or why it cannot be read.
type Parsed = std::result::Result<(Vec<Ident>, Box<Query>), String>;

fn parse_view(sql: &str) -> Parsed {
    let stmts = Parser::parse_sql(&SQLiteDialect {}, sql)
        .map_err(|e| format!("cannot parse its SQL: {e}"))?;
    match stmts.into_iter().next() {
        Some(Statement::CreateView(cv)) => {
            Ok((cv.columns.into_iter().map(|c| c.name).collect(), cv.query))
        }
        _ => Err("its SQL is not one CREATE VIEW statement".into()),
    }
}

/// Every name a view may use, by its lower-case form: the migrated tables, their columns, the
/// views and the column aliases they declare — spelled as they will be in PostgreSQL.
struct Names<'a> {
    spelling: HashMap<String, String>,
    tables: HashMap<String, &'a TablePlan>,
    views: HashMap<String, String>,
}

impl<'a> Names<'a> {
    fn new(views: &[ViewInfo], tables: &'a [TablePlan], parsed: &[Parsed]) -> Self {
        let mut n = Names {
            spelling: HashMap::new(),
            tables: HashMap::new(),
            views: HashMap::new(),
        };
        for t in tables {
            n.tables.insert(t.source_name.to_lowercase(), t);
            n.spell(&t.source_name, &t.name);
        }
        for v in views {
            n.views.insert(v.name.to_lowercase(), v.name.clone());
            n.spell(&v.name, &v.name);
        }
        for t in tables {
            for c in &t.columns {
                n.spell(&c.name, &c.name);
            }
        }
        for (cols, q) in parsed.iter().flatten() {
            for c in cols {
                n.spell(&c.value, &c.value);
            }
            if let sqlparser::ast::SetExpr::Select(s) = q.body.as_ref() {
                for item in &s.projection {
                    if let SelectItem::ExprWithAlias { alias, .. } = item {
                        n.spell(&alias.value, &alias.value);
                    }
                }
            }
        }
        n
    }

    fn spell(&mut self, name: &str, as_in_pg: &str) {
        self.spelling
            .entry(name.to_lowercase())
            .or_insert_with(|| as_in_pg.to_string());
    }
}

/// What one view reads: the relations it names and its table aliases.
#[derive(Default)]
struct Scope {
    relations: Vec<String>,
    aliases: HashMap<String, String>,
}

impl Visitor for Scope {
    type Break = ();
    fn pre_visit_table_factor(&mut self, t: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, alias, .. } = t {
            if let Some(last) = name.0.last().and_then(|p| p.as_ident()) {
                let rel = last.value.to_lowercase();
                if let Some(a) = alias {
                    self.aliases
                        .insert(a.name.value.to_lowercase(), rel.clone());
                }
                if !self.relations.contains(&rel) {
                    self.relations.push(rel);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

fn translate(
    columns: Vec<Ident>,
    mut query: Box<Query>,
    names: &Names,
    folder: Option<&rusqlite::Connection>,
    plan: &mut ViewPlan,
) -> std::result::Result<String, String> {
    let mut scope = Scope::default();
    let _ = Visit::visit(query.as_ref(), &mut scope);
    plan.depends_on = scope
        .relations
        .iter()
        .filter_map(|r| names.views.get(r).cloned())
        .collect();
    let mut rw = Rewrite {
        names,
        scope: &scope,
        folder,
        notes: Vec::new(),
        subqueries: 0,
    };
    if let ControlFlow::Break(reason) = VisitMut::visit(query.as_mut(), &mut rw) {
        return Err(reason);
    }
    let mut cols = columns;
    for c in &mut cols {
        rw.ident(c);
    }
    plan.notes = rw.notes;
    let cols = if cols.is_empty() {
        String::new()
    } else {
        format!(
            "({}) ",
            cols.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(format!("{cols}AS {query}"))
}

struct Rewrite<'a> {
    names: &'a Names<'a>,
    scope: &'a Scope,
    folder: Option<&'a rusqlite::Connection>,
    notes: Vec<String>,
    subqueries: usize,
}

impl VisitorMut for Rewrite<'_> {
    type Break = String;

    fn post_visit_ident(&mut self, ident: &mut Ident) -> ControlFlow<String> {
        self.ident(ident);
        ControlFlow::Continue(())
    }

    /// Before the operands are rewritten: what a comparison's operands need from each other.
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<String> {
        match expr {
            Expr::BinaryOp { left, op, right } if is_comparison(op) => {
                self.operands(left, right);
            }
            Expr::Between {
                expr: e, low, high, ..
            } => {
                self.operands(e, low);
                self.operands(e, high);
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// PostgreSQL (before 16) wants an alias on every subquery in FROM; SQLite does not.
    fn post_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<String> {
        if let TableFactor::Derived {
            alias: a @ None, ..
        } = t
        {
            self.subqueries += 1;
            *a = Some(TableAlias {
                explicit: true,
                name: Ident::with_quote('"', format!("subquery{}", self.subqueries)),
                columns: Vec::new(),
                at: None,
            });
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<String> {
        match self.rewrite(expr) {
            Ok(Some(e)) => *expr = e,
            Ok(None) => {}
            Err(reason) => return ControlFlow::Break(reason),
        }
        ControlFlow::Continue(())
    }
}

type Rewritten = std::result::Result<Option<Expr>, String>;

impl Rewrite<'_> {
    fn ident(&self, ident: &mut Ident) {
        let lower = ident.value.to_lowercase();
        if let Some(s) = self.names.spelling.get(&lower) {
            ident.value = s.clone();
        }
        ident.quote_style = Some('"');
    }

    fn rewrite(&mut self, expr: &mut Expr) -> Rewritten {
        match expr {
            Expr::Function(f) => {
                let name = f
                    .name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.to_lowercase())
                    .unwrap_or_default();
                for p in &mut f.name.0 {
                    if let sqlparser::ast::ObjectNamePart::Identifier(i) = p {
                        i.value = i.value.to_lowercase();
                        i.quote_style = None;
                    }
                }
                let FunctionArguments::List(list) = &f.args else {
                    return Ok(None);
                };
                let distinct = list.duplicate_treatment.is_some();
                let mut args: Vec<&Expr> = Vec::new();
                for a in &list.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => args.push(e),
                        _ => return Ok(None),
                    }
                }
                self.function(&name, &args, distinct)
            }
            Expr::Substring {
                expr: e,
                substring_from: Some(from),
                substring_for: len,
                ..
            } => {
                let mut args = vec![e.as_ref(), from.as_ref()];
                args.extend(len.as_deref());
                self.function("substr", &args, false)
            }
            Expr::Collate { expr: e, collation } => {
                let c = collation
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.to_lowercase())
                    .unwrap_or_default();
                match c.as_str() {
                    "nocase" => pg_expr(&format!("lower({e})")).map(Some),
                    "binary" => Ok(Some(*e.clone())),
                    "rtrim" => pg_expr(&format!("rtrim({e})")).map(Some),
                    _ => Ok(None),
                }
            }
            Expr::Like {
                negated,
                any,
                expr: e,
                pattern,
                escape_char,
            } => Ok(Some(Expr::ILike {
                negated: *negated,
                any: *any,
                expr: e.clone(),
                pattern: pattern.clone(),
                escape_char: escape_char.clone(),
            })),
            Expr::BinaryOp {
                left,
                op: op @ (BinaryOperator::Is | BinaryOperator::IsNot),
                right,
            } => {
                self.coerce(left, right);
                self.coerce(right, left);
                Ok(Some(if *op == BinaryOperator::Is {
                    Expr::IsNotDistinctFrom(left.clone(), right.clone())
                } else {
                    Expr::IsDistinctFrom(left.clone(), right.clone())
                }))
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Glob,
                right,
            } => match right.as_ref() {
                Expr::Value(ValueWithSpan {
                    value: Value::SingleQuotedString(p),
                    ..
                }) => pg_expr(&format!("{left} ~ {}", quote(&glob_regex(p)))).map(Some),
                _ => Err(format!(
                    "GLOB with a pattern that is not a constant: {right}"
                )),
            },
            Expr::BinaryOp { left, op, right } => {
                if *op == BinaryOperator::Plus && (is_concat(left) || is_concat(right)) {
                    *op = BinaryOperator::StringConcat;
                    self.note("`+` with a text operand is taken as MS-SQL-style concatenation (`||`); SQLite itself adds such values as numbers (0 for text that is not a number)");
                    return Ok(None);
                }
                if is_comparison(op) {
                    self.coerce(left, right);
                    self.coerce(right, left);
                }
                if *op == BinaryOperator::Divide
                    && self.column(left).is_some_and(|c| {
                        kind(c.conversion.pg_type) == Kind::Numeric && c.profile.integers > 0
                    })
                {
                    self.note(&format!("{left} / {right}: SQLite divides the integers this NUMERIC column holds as integers (7 / 2 = 3), PostgreSQL's numeric exactly (3.5)"));
                }
                Ok(None)
            }
            Expr::Between {
                expr: e, low, high, ..
            } => {
                self.coerce(low, e);
                self.coerce(high, e);
                Ok(None)
            }
            Expr::In {
                expr: e,
                target: InTarget::List(list),
                ..
            } => {
                for l in list.iter_mut() {
                    self.coerce(l, e);
                }
                Ok(None)
            }
            Expr::Cast {
                expr: e, data_type, ..
            } => {
                let t = data_type.to_string().to_uppercase();
                let pg = if t.contains("INT") {
                    self.note("CAST(… AS INTEGER): SQLite truncates a fraction toward zero, PostgreSQL rounds it");
                    "bigint"
                } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
                    "double precision"
                } else if t.contains("BLOB") {
                    "bytea"
                } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
                    "text"
                } else {
                    "numeric"
                };
                pg_expr(&format!("CAST({e} AS {pg})")).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Two compared operands, before their rewrite: `COLLATE NOCASE` on one applies to both
    /// (each becomes `lower(…)`); a date function compared with a text column yields text, in
    /// SQLite's format, as it does in SQLite.
    fn operands(&mut self, a: &mut Expr, b: &mut Expr) {
        self.operand(a, b);
        self.operand(b, a);
    }

    /// [`Self::operands`], one way: what `other` needs from `x`.
    fn operand(&self, x: &Expr, other: &mut Expr) {
        if nocase(x) && !matches!(other, Expr::Collate { .. }) {
            *other = Expr::Collate {
                expr: Box::new(other.clone()),
                collation: ObjectName::from(Ident::new("nocase")),
            };
        }
        if self.column_type(x) != Some(Kind::Text) {
            return;
        }
        if let Expr::Function(f) = other {
            if let Some(ObjectNamePart::Identifier(i)) = f.name.0.last_mut() {
                let n = i.value.to_lowercase();
                if matches!(n.as_str(), "date" | "datetime" | "time") {
                    i.value = format!("{AS_TEXT}{n}");
                }
            }
        }
    }

    fn note(&mut self, n: &str) {
        if !self.notes.iter().any(|x| x == n) {
            self.notes.push(n.to_string());
        }
    }

    /// The kind of PostgreSQL type of a column reference, if it names one column of a
    /// migrated table the view reads.
    fn column_type(&self, e: &Expr) -> Option<Kind> {
        self.column(e).map(|c| kind(c.conversion.pg_type))
    }

    /// The migrated column a column reference names, if it names one the view reads.
    fn column(&self, e: &Expr) -> Option<&ColumnPlan> {
        let (table, col) = match e {
            Expr::Nested(inner) => return self.column(inner),
            Expr::Identifier(c) => (None, c.value.to_lowercase()),
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let t = parts[parts.len() - 2].value.to_lowercase();
                let t = self.scope.aliases.get(&t).cloned().unwrap_or(t);
                (Some(t), parts[parts.len() - 1].value.to_lowercase())
            }
            _ => return None,
        };
        let mut found: Vec<&ColumnPlan> = Vec::new();
        for r in table.iter().chain(self.scope.relations.iter()) {
            if let Some(t) = self.names.tables.get(r) {
                if let Some(c) = t.columns.iter().find(|c| c.name.to_lowercase() == col) {
                    found.push(c);
                }
            }
            if table.is_some() {
                break;
            }
        }
        (found.len() == 1).then(|| found[0])
    }

    /// `lit` compared with `other`: a number compared with a text or boolean column becomes a
    /// string (SQLite applies the column's affinity); a naive date-time string compared with
    /// a timestamptz column is read as UTC.
    fn coerce(&mut self, lit: &mut Expr, other: &Expr) {
        let Expr::Value(ValueWithSpan { value, .. }) = lit else {
            return;
        };
        match (self.column_type(other), &*value) {
            (Some(Kind::Text | Kind::Boolean), Value::Number(n, _)) => {
                *value = Value::SingleQuotedString(n.to_string());
            }
            (Some(Kind::Timestamptz), Value::SingleQuotedString(s))
                if s.len() >= 10
                    && s.as_bytes()[4] == b'-'
                    && !s[10..].contains(['+', 'Z', 'z'])
                    && !s[10..].contains('-') =>
            {
                let note = format!("{other} is compared with '{s}' as a point in time (UTC); SQLite compares the stored text, where '{s}.000' sorts after '{s}'");
                *value = Value::SingleQuotedString(format!("{s}+00"));
                self.note(&note);
            }
            _ => {}
        }
    }
}

/// What the rewrite needs to know of a column's PostgreSQL type, read from its SQL spelling
/// (so every text-like, numeric or timestamptz type counts, whatever its modifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Boolean,
    Timestamptz,
    Numeric,
    Other,
}

fn kind(t: PgType) -> Kind {
    let s = t.sql().to_lowercase();
    if s == "text" || s == "citext" || s.starts_with("varchar") || s.starts_with("char") {
        Kind::Text
    } else if s == "boolean" {
        Kind::Boolean
    } else if s == "timestamptz" || s.starts_with("timestamp with time zone") {
        Kind::Timestamptz
    } else if s.starts_with("numeric") || s.starts_with("decimal") {
        Kind::Numeric
    } else {
        Kind::Other
    }
}

fn is_comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
            | BinaryOperator::Is
            | BinaryOperator::IsNot
    )
}

fn nocase(e: &Expr) -> bool {
    matches!(e, Expr::Collate { collation, .. }
        if collation.0.last().and_then(|p| p.as_ident()).is_some_and(|i| i.value.eq_ignore_ascii_case("nocase")))
}

/// `+` that MS-SQL-style SQL means as concatenation: one side a text literal that is not a
/// number, or a concatenation already.
fn is_concat(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_concat(inner),
        Expr::Value(ValueWithSpan {
            value: Value::SingleQuotedString(s),
            ..
        }) => s.trim().parse::<f64>().is_err(),
        Expr::BinaryOp {
            op: BinaryOperator::StringConcat,
            ..
        } => true,
        _ => false,
    }
}

/// An expression in PostgreSQL syntax (identifiers in it are already quoted).
fn pg_expr(sql: &str) -> std::result::Result<Expr, String> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("internal: cannot re-read the translation {sql}: {e}"))
}

/// Stable topological order: a view after the views it reads, else in the source's order.
fn order_by_dependency(plans: &mut Vec<ViewPlan>) {
    let mut left: Vec<ViewPlan> = std::mem::take(plans);
    while !left.is_empty() {
        let ready = left.iter().position(|v| {
            v.depends_on
                .iter()
                .all(|d| d == &v.name || !left.iter().any(|o| &o.name == d))
        });
        // A cycle (SQLite refuses them) would leave no view ready: keep the source's order.
        let i = ready.unwrap_or(0);
        plans.push(left.remove(i));
    }
}
