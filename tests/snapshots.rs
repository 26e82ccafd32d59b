//! What a user sees, as snapshots of the real binary's output against the real servers: the
//! validation errors, a plan in text, JSON and Markdown, and an apply report in text and JSON.
//! A change of wording is a reviewed diff of a `.snap` file. Values that differ between runs
//! (temporary paths, database and role names of the test, uids, times) are filtered.
//!
//! Update with `INSTA_UPDATE=always bash scripts/test.sh --test snapshots`, then read every
//! changed file in `tests/snapshots/`.

mod common;

use common::*;

/// Filters for one test environment.
fn settings(env: &TestEnv) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    let dir = regex_escape(&env.dir_path().display().to_string());
    let backups = regex_escape(&env.backups.path().display().to_string());
    settings.add_filter(&dir, "[dir]");
    settings.add_filter(&backups, "[backups]");
    settings.add_filter(&regex_escape(&env.database), "[database]");
    // The same name as Markdown escapes it (`tct\_snap\_plan\_...`).
    settings.add_filter(r"tct(\\?_[a-z]+)+\\?_\d+\\?_\d+", "[database]");
    settings.add_filter(&regex_escape(&env.role_prefix), "[role]_");
    settings.add_filter(r"127\.0\.0\.1:\d+", "[host]");
    settings.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[uid]",
    );
    settings.add_filter(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
        "[time]",
    );
    settings.add_filter(r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2} UTC)?", "[date]");
    settings.add_filter(
        r#""tool_version": "[^"]+""#,
        r#""tool_version": "[version]""#,
    );
    settings
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Three tenants applied, then a file change for each kind of change a reviewer reads.
fn mixed(env: &TestEnv) {
    env.tenant("acme", "pro", "");
    env.tenant("globex", "trial", "");
    env.tenant("hooli", "pro", "");
    env.tenant("initech", "pro", "");
    env.apply();
    env.tenant("globex", "pro", "config: { max_tokens: 8000 }\n");
    env.tenant(
        "initech",
        "pro",
        "state: suspended\nsuspension: { reason: \"invoice overdue\" }\n",
    );
    env.tenant("hooli", "pro", "state: deleted\n");
    env.tenant("wayne", "trial", "");
}

#[test]
fn validation_errors() {
    let env = TestEnv::new("snap_validate");
    env.write(
        "globex.yaml",
        "apiVersion: tenantctl/v1\nkind: Tenant\nid: globex\nname: Globex\nplan: gold\n\
         config:\n  max_tokens: lots\n  rate_limit_per_minut: 60\n",
    );
    env.write(
        "hooli.yaml",
        "apiVersion: tenantctl/v1\nkind: Tenant\nid: hooli\nname: Hooli\nplan: pro\nstate: suspended\n",
    );
    let out = env.tenantctl(&["validate"]).expect_code(1);
    settings(&env).bind(|| insta::assert_snapshot!(out.stderr));
}

#[test]
fn plan_in_text_json_and_markdown() {
    let env = TestEnv::new("snap_plan");
    mixed(&env);
    let settings = settings(&env);
    let text = env.tenantctl(&["plan"]).expect_code(0);
    settings.bind(|| insta::assert_snapshot!("plan_text", text.stdout));
    let json = env.tenantctl(&["plan", "--format", "json"]).expect_code(0);
    settings.bind(|| insta::assert_snapshot!("plan_json", json.stdout));
    let markdown = env
        .tenantctl(&["plan", "--format", "markdown"])
        .expect_code(0);
    settings.bind(|| insta::assert_snapshot!("plan_markdown", markdown.stdout));
}

#[test]
fn apply_report_in_text_and_json() {
    let env = TestEnv::new("snap_apply");
    mixed(&env);
    let settings = settings(&env);
    // One worker: with several, the result lines come in the order tenants finish.
    let text = env
        .tenantctl(&["apply", "--auto-approve", "--parallelism", "1"])
        .expect_code(0);
    settings.bind(|| insta::assert_snapshot!("apply_text", text.stdout));
    env.tenant("globex", "pro", "config: { max_tokens: 9000 }\n");
    let json = env
        .tenantctl(&["apply", "--auto-approve", "--format", "json"])
        .expect_code(0);
    settings.bind(|| insta::assert_snapshot!("apply_json", json.stdout));
}
