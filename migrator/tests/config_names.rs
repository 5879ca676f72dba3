//! `[tables.X]` and `[tables.X.columns.Y]` entries naming a table or column the source does not
//! have are errors naming the file and the line (issue 14 item 9), not silently ignored.

mod common;

use common::*;
use ficus_migrator::{MigrationConfig, Plan};

fn plan_error(toml: &str) -> String {
    let d = temp_dir("cfgnames");
    let src = sqlite(
        &d,
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         CREATE VIRTUAL TABLE search USING fts5(title);
         CREATE VIRTUAL TABLE geo USING rtree(id, a, b);",
    );
    let path = d.path().join("migration.toml");
    std::fs::write(&path, toml).unwrap();
    let cfg = MigrationConfig::load(&path).unwrap();
    match Plan::build(&src, &cfg, "public") {
        Ok(_) => String::new(),
        Err(e) => e.to_string().replace(&path.display().to_string(), "FILE"),
    }
}

#[test]
fn a_table_entry_for_a_missing_table_is_an_error_naming_the_line() {
    let e = plan_error("datetime_type = \"timestamptz\"\n\n[tables.tasks]\nrename = \"t\"\n\n[tables.task]\nskip = true\n");
    assert!(
        e.starts_with(
            "configuration FILE:6: [tables.task]: the SQLite source has no table \"task\" (it has: tasks, search, "
        ) && e.ends_with("); fix or remove the entry"),
        "{e}"
    );
    let e = plan_error("[tables.Tasks.columns.title]\ntype = \"text\"\n");
    assert!(
        e.starts_with("configuration FILE:1: [tables.Tasks]: the SQLite source has no table \"Tasks\" (names are matched exactly: did you mean \"tasks\"?)"),
        "{e}"
    );
}

#[test]
fn a_column_entry_for_a_missing_column_is_an_error_naming_the_line() {
    let e = plan_error(
        "[tables.tasks]\nrename = \"t\"\n\n[tables.tasks.columns.titel]\nstrip_nul = true\n",
    );
    assert_eq!(
        e,
        "configuration FILE:4: [tables.tasks.columns.titel]: table \"tasks\" has no column \"titel\" (it has: id, title); fix or remove the entry"
    );
}

#[test]
fn entries_for_existing_tables_virtual_ones_included_are_accepted() {
    assert_eq!(
        plan_error("[tables.tasks.columns.title]\nstrip_nul = true\n[tables.geo]\nskip = true\n[tables.search]\nskip = true\n"),
        ""
    );
}

#[test]
fn column_entries_for_a_table_that_is_not_migrated_are_an_error() {
    let e = plan_error("[tables.geo]\nskip = true\n[tables.geo.columns.a]\ntype = \"text\"\n");
    assert!(
        e.starts_with("configuration FILE:1: [tables.geo.columns]: table \"geo\" is not migrated"),
        "{e}"
    );
}
