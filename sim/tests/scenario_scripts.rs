//! The curated scenarios of `scenarios/*.script`, each run step by step; their short traces
//! are insta snapshots, reviewed by hand and never accepted in CI.

// Reading the scenario files is the harness's job, not the simulated code's.
#![allow(clippy::disallowed_methods)]

use std::path::Path;

use kvtablet_sim::script::run_script;

#[test]
fn curated_scan_scenarios_keep_their_traces() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("scenarios directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".script"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "expected the curated scenarios, found {names:?}");
    for name in names {
        let text = std::fs::read_to_string(dir.join(&name)).expect("readable scenario");
        let trace = run_script(&text).unwrap_or_else(|error| panic!("{name}: {error}"));
        insta::assert_snapshot!(name.trim_end_matches(".script"), trace);
    }
}
