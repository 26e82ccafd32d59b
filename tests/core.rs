//! Provisioning, update, repair and rollback against the real PostgreSQL and Chroma.

mod common;

use common::fault_proxy::FaultProxy;
use common::TestEnv;
use serde_json::json;

#[test]
fn fresh_apply_creates_every_resource_then_nothing_is_left_to_do() {
    let env = TestEnv::new("fresh");
    env.tenant("acme", "pro", "config:\n  max_tokens: 8000\n");
    env.tenant("globex", "trial", "");

    let plan = env.plan();
    assert!(plan.stdout.contains("+ control schema"), "{}", plan.stdout);
    assert!(plan.stdout.contains("+ acme"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("Plan: 2 to create, control schema migration."),
        "{}",
        plan.stdout
    );
    // plan changes nothing
    let control = env.query_one("SELECT to_regnamespace('tenantctl') IS NULL", &[]);
    assert!(
        control.get::<_, bool>(0),
        "plan must not create the control schema"
    );

    let applied = env.apply();
    assert!(
        applied.stdout.contains("Apply complete: 2 tenants applied"),
        "{}",
        applied.stdout
    );

    for id in ["acme", "globex"] {
        let schema = format!("tenant_{id}");
        let role = env.role(id);
        // schema marked as managed, PUBLIC without access
        let row = env.query_one(
            "SELECT obj_description(n.oid, 'pg_namespace'), \
                    has_schema_privilege($2, n.oid, 'USAGE'), \
                    has_schema_privilege($2, n.oid, 'CREATE'), \
                    coalesce((SELECT bool_or(a.grantee = 0) FROM aclexplode(n.nspacl) a), false) \
             FROM pg_namespace n WHERE nspname = $1",
            &[&schema, &role],
        );
        assert_eq!(row.get::<_, String>(0), "managed by tenantctl");
        assert!(row.get::<_, bool>(1), "{role} has USAGE on {schema}");
        assert!(!row.get::<_, bool>(2), "{role} must not CREATE in {schema}");
        assert!(
            !row.get::<_, bool>(3),
            "PUBLIC has no privilege on {schema}"
        );
        // the table, exactly as specified
        let columns = env.query(
            "SELECT attname::text, format_type(atttypid, atttypmod), attnotnull, \
                    pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE attrelid = to_regclass($1) AND attnum > 0 ORDER BY attnum",
            &[&format!("{schema}.conversations")],
        );
        let columns: Vec<(String, String, bool, Option<String>)> = columns
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert_eq!(
            columns,
            vec![
                ("id".into(), "uuid".into(), true, None),
                (
                    "created_at".into(),
                    "timestamp with time zone".into(),
                    true,
                    Some("now()".into())
                ),
                (
                    "messages".into(),
                    "jsonb".into(),
                    true,
                    Some("'[]'::jsonb".into())
                ),
            ]
        );
        let primary_key = env.query_one(
            "SELECT count(*) FROM pg_index WHERE indrelid = to_regclass($1) AND indisprimary",
            &[&format!("{schema}.conversations")],
        );
        assert_eq!(primary_key.get::<_, i64>(0), 1);
        // the role: NOLOGIN, marked, with exactly the table privileges
        let role_row = env.query_one(
            "SELECT rolcanlogin, shobj_description(oid, 'pg_authid'), \
                    has_table_privilege($1, $2, 'SELECT, INSERT, UPDATE, DELETE'), \
                    has_table_privilege($1, $2, 'TRUNCATE') \
             FROM pg_roles WHERE rolname = $1",
            &[&role, &format!("{schema}.conversations")],
        );
        assert!(!role_row.get::<_, bool>(0), "role is NOLOGIN");
        assert_eq!(role_row.get::<_, String>(1), "managed by tenantctl");
        assert!(role_row.get::<_, bool>(2));
        assert!(!role_row.get::<_, bool>(3));
        // the collection, marked with the tenant and its uid
        let uid = env.query_one(
            "SELECT uid::text FROM tenantctl.tenants WHERE id = $1",
            &[&id],
        );
        let uid: String = uid.get(0);
        let collection = env.collection(&schema).expect("collection exists");
        assert_eq!(
            collection["metadata"],
            json!({ "managed_by": "tenantctl", "tenant_id": id, "tenant_uid": uid })
        );
    }

    // registry rows hold the effective config (plan defaults merged with overrides)
    let row = env.query_one(
        "SELECT name, status, plan, config, activated_at IS NOT NULL FROM tenantctl.tenants WHERE id = 'acme'",
        &[],
    );
    assert_eq!(row.get::<_, String>(0), "acme corp");
    assert_eq!(row.get::<_, String>(1), "active");
    assert_eq!(row.get::<_, String>(2), "pro");
    assert_eq!(
        row.get::<_, serde_json::Value>(3),
        json!({ "model": "gpt-4o", "max_tokens": 8000, "rate_limit_per_minute": 600,
                "features": { "basic_chat": true, "rag": true } })
    );
    assert!(row.get::<_, bool>(4));

    // one event per applied change
    let events = env.query(
        "SELECT tenant_id, action, status_before, status_after FROM tenantctl.events \
         WHERE action <> 'create_started' ORDER BY tenant_id",
        &[],
    );
    let events: Vec<(String, String, Option<String>, Option<String>)> = events
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        events,
        vec![
            ("acme".into(), "create".into(), None, Some("active".into())),
            (
                "globex".into(),
                "create".into(),
                None,
                Some("active".into())
            ),
        ]
    );

    // a second plan and apply find nothing to do
    let again = env.plan();
    assert!(
        again.stdout.contains("No changes."),
        "second plan: {}",
        again.stdout
    );
    let second = env.apply();
    assert!(second.stdout.contains("No changes."), "{}", second.stdout);
    let count = env.query_one(
        "SELECT count(*) FROM tenantctl.events WHERE action <> 'create_started'",
        &[],
    );
    assert_eq!(count.get::<_, i64>(0), 2, "a no-op apply writes no event");
}

#[test]
fn config_change_is_planned_as_old_to_new_and_applied() {
    let env = TestEnv::new("update");
    env.tenant("globex", "trial", "");
    env.apply();

    env.tenant(
        "globex",
        "pro",
        "config:\n  max_tokens: 4500\n  features:\n    web_search: true\n",
    );
    let plan = env.plan();
    let text = &plan.stdout;
    assert!(text.contains("~ globex"), "{text}");
    assert!(text.contains("update"), "{text}");
    assert!(text.contains("~ plan"), "{text}");
    assert!(text.contains("\"trial\" -> \"pro\""), "{text}");
    assert!(text.contains("~ config.max_tokens"), "{text}");
    assert!(text.contains("1000 -> 4500"), "{text}");
    assert!(text.contains("+ config.features.web_search"), "{text}");
    assert!(text.contains("Plan: 1 to update."), "{text}");

    env.apply();
    let row = env.query_one(
        "SELECT plan, config FROM tenantctl.tenants WHERE id = 'globex'",
        &[],
    );
    assert_eq!(row.get::<_, String>(0), "pro");
    assert_eq!(
        row.get::<_, serde_json::Value>(1),
        json!({ "model": "gpt-4o", "max_tokens": 4500, "rate_limit_per_minute": 600,
                "features": { "basic_chat": true, "rag": true, "web_search": true } })
    );
    let event = env.query_one(
        "SELECT action, changes->'fields' FROM tenantctl.events WHERE tenant_id = 'globex' ORDER BY id DESC LIMIT 1",
        &[],
    );
    assert_eq!(event.get::<_, String>(0), "update");
    let fields: serde_json::Value = event.get(1);
    assert!(
        fields
            .as_array()
            .unwrap()
            .iter()
            .any(|field| field["path"] == "config.max_tokens"
                && field["old"] == 1000
                && field["new"] == 4500),
        "{fields}"
    );
    assert!(env.plan().stdout.contains("No changes."));
}

#[test]
fn schema_dropped_by_hand_is_repaired() {
    let env = TestEnv::new("repair_schema");
    env.tenant("initech", "pro", "");
    env.apply();
    env.execute("DROP SCHEMA tenant_initech CASCADE");

    let plan = env.plan();
    assert!(plan.stdout.contains("~ initech"), "{}", plan.stdout);
    assert!(plan.stdout.contains("repair"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("+ schema                tenant_initech (schema is missing)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("Plan: 1 to repair."),
        "{}",
        plan.stdout
    );

    env.apply();
    let role = env.role("initech");
    let row = env.query_one(
        "SELECT has_schema_privilege($1, 'tenant_initech', 'USAGE'), \
                has_table_privilege($1, 'tenant_initech.conversations', 'SELECT, INSERT, UPDATE, DELETE')",
        &[&role],
    );
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1));
    assert!(env.plan().stdout.contains("No changes."));
    let event = env.query_one(
        "SELECT action FROM tenantctl.events WHERE tenant_id = 'initech' ORDER BY id DESC LIMIT 1",
        &[],
    );
    assert_eq!(event.get::<_, String>(0), "repair");
}

#[test]
fn collection_dropped_and_grants_changed_by_hand_are_repaired() {
    let env = TestEnv::new("repair_misc");
    env.tenant("hooli", "pro", "");
    env.apply();
    let role = env.role("hooli");
    env.delete_collection("tenant_hooli");
    env.execute(&format!(
        "REVOKE ALL ON SCHEMA tenant_hooli FROM \"{role}\"; \
         GRANT SELECT ON tenant_hooli.conversations TO PUBLIC; \
         ALTER ROLE \"{role}\" LOGIN;"
    ));

    let plan = env.plan();
    let text = &plan.stdout;
    for expected in [
        "+ collection            tenant_hooli (collection is missing)",
        "+ grant                 tenant_hooli (role lacks USAGE on the schema)",
        "~ grant                 tenant_hooli.conversations (`PUBLIC` holds privileges on the table)",
        "(role can log in, should be NOLOGIN)",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }

    env.apply();
    assert!(env.plan().stdout.contains("No changes."));
    let uid = env.query_one(
        "SELECT uid::text FROM tenantctl.tenants WHERE id = 'hooli'",
        &[],
    );
    let uid: String = uid.get(0);
    let collection = env
        .collection("tenant_hooli")
        .expect("collection re-created");
    assert_eq!(collection["metadata"]["tenant_uid"], json!(uid));
    let row = env.query_one(
        "SELECT has_schema_privilege($1, 'tenant_hooli', 'USAGE'), \
                has_table_privilege('public', 'tenant_hooli.conversations', 'SELECT'), \
                (SELECT rolcanlogin FROM pg_roles WHERE rolname = $1)",
        &[&role],
    );
    assert!(row.get::<_, bool>(0), "usage granted back");
    assert!(!row.get::<_, bool>(1), "PUBLIC revoked");
    assert!(!row.get::<_, bool>(2), "NOLOGIN again");
}

#[test]
fn chroma_unreachable_during_create_leaves_nothing_in_postgres() {
    let env = TestEnv::new("chroma_down");
    env.tenant("acme", "pro", "");
    // Reads and the Chroma tenant/database set-up pass; the first collection create cuts the
    // network, as a Chroma that dies mid-apply would.
    let proxy = FaultProxy::start(
        &env.chroma_url,
        &["POST /api/v2/tenants/", "/collections HTTP"],
    );
    let failed = env
        .tenantctl_with(&["apply", "--auto-approve"], &[("CHROMA_URL", &proxy.url)])
        .expect_code(1);
    assert!(proxy.tripped(), "the fault was never injected");
    let out = &failed.stdout;
    assert!(out.contains("acme"), "{out}");
    assert!(out.contains("rolled back: chroma at"), "{out}");
    assert!(out.contains("1 failed"), "{out}");

    // nothing of the tenant in PostgreSQL
    let row = env.query_one(
        "SELECT to_regnamespace('tenant_acme') IS NULL, \
                NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), \
                NOT EXISTS (SELECT 1 FROM tenantctl.tenants WHERE id = 'acme'), \
                NOT EXISTS (SELECT 1 FROM tenantctl.events WHERE tenant_id = 'acme' AND action <> 'create_started')",
        &[&env.role("acme")],
    );
    for index in 0..4 {
        assert!(
            row.get::<_, bool>(index),
            "leftover #{index} after rollback"
        );
    }
    assert!(env.collection("tenant_acme").is_none());

    // with Chroma back, the same apply succeeds
    env.apply();
    assert!(env.collection("tenant_acme").is_some());
    assert!(env.plan().stdout.contains("No changes."));
}

#[test]
fn a_tenant_role_cannot_read_another_tenants_data() {
    let env = TestEnv::new("isolation");
    env.tenant("tenant_a", "pro", "");
    env.tenant("tenant_b", "pro", "");
    env.apply();
    let role_a = env.role("tenant_a");
    env.execute(&format!(
        "SET ROLE \"{role_a}\"; \
         INSERT INTO tenant_tenant_a.conversations (id) VALUES (gen_random_uuid()); \
         RESET ROLE;"
    ));
    let denied = env
        .try_execute(&format!(
            "SET ROLE \"{role_a}\"; SELECT * FROM tenant_tenant_b.conversations;"
        ))
        .expect_err("tenant_a must not read tenant_b");
    env.execute("RESET ROLE");
    let code = denied.code().map(|code| code.code().to_string());
    assert_eq!(code.as_deref(), Some("42501"), "{denied}"); // insufficient_privilege
    let own = env.query_one("SELECT count(*) FROM tenant_tenant_a.conversations", &[]);
    assert_eq!(own.get::<_, i64>(0), 1);
}

#[test]
fn invalid_directory_changes_nothing_and_names_file_and_line() {
    let env = TestEnv::new("invalid");
    env.tenant("acme", "pro", "config:\n  max_tokens: \"lots\"\n");
    env.tenant("globex", "gold", "");
    let out = env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    let acme = env.path("acme.yaml");
    assert!(
        out.stderr
            .contains(&format!("{}:7:15: config.max_tokens", acme.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("globex.yaml:5:7: plan"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("2 errors"), "{}", out.stderr);
    let control = env.query_one("SELECT to_regnamespace('tenantctl') IS NULL", &[]);
    assert!(control.get::<_, bool>(0), "nothing may be created");
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let env = TestEnv::new("no_tty");
    env.tenant("acme", "pro", "");
    let out = env.tenantctl(&["apply"]).expect_code(1);
    assert!(out.stderr.contains("not a terminal"), "{}", out.stderr);
    assert!(out.stderr.contains("--auto-approve"), "{}", out.stderr);
    let control = env.query_one("SELECT to_regnamespace('tenant_acme') IS NULL", &[]);
    assert!(control.get::<_, bool>(0));
}

#[test]
fn a_role_tenantctl_did_not_create_is_never_touched() {
    let env = TestEnv::new("foreign_role");
    let foreign = env.role("acme");
    env.execute(&format!("CREATE ROLE \"{foreign}\" LOGIN"));
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");

    let plan = env.tenantctl(&["plan"]).expect_code(1);
    assert!(
        plan.stdout
            .contains(&format!("role `{foreign}` already exists")),
        "{}",
        plan.stdout
    );
    let applied = env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        applied.stdout.contains("not applied (conflict)"),
        "{}",
        applied.stdout
    );
    // globex went ahead, acme did not
    let rows = env.query("SELECT id FROM tenantctl.tenants ORDER BY id", &[]);
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec!["globex"]);
    let role = env.query_one(
        "SELECT rolcanlogin, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        &[&foreign],
    );
    assert!(role.get::<_, bool>(0), "foreign role untouched");
    assert_eq!(role.get::<_, Option<String>>(1), None);
}

#[test]
fn json_plan_lists_changes_and_steps() {
    let env = TestEnv::new("json");
    env.tenant("acme", "pro", "");
    let out = env.tenantctl(&["plan", "--format", "json"]).expect_code(0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    assert_eq!(plan["format_version"], 1);
    assert_eq!(plan["has_changes"], true);
    assert_eq!(plan["summary"]["create"], 1);
    assert_eq!(
        plan["control_schema"]["pending"],
        json!([1, 2, 3, 4, 5, 6, 7, 8])
    );
    let change = &plan["changes"][0];
    assert_eq!(change["tenant"], "acme");
    assert_eq!(change["actions"], json!(["create"]));
    let kinds: Vec<&str> = change["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "create_schema",
            "run_migrations",
            "create_role",
            "grant_schema_usage",
            "grant_table_privileges",
            "insert_registry",
            "create_collection"
        ]
    );
}

#[test]
fn passwords_never_appear_in_output() {
    let env = TestEnv::new("secrets");
    env.tenant("acme", "pro", "");
    // Nothing listens on port 9; the error must name the server but not the password.
    let out = env
        .tenantctl_with(
            &["plan"],
            &[("DATABASE_URL", "postgres://app:s3cr3t-pw@127.0.0.1:9/saas")],
        )
        .expect_code(1);
    assert!(!out.stderr.contains("s3cr3t-pw"), "{}", out.stderr);
    assert!(!out.stdout.contains("s3cr3t-pw"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("postgres://app@127.0.0.1:9/saas (password hidden)"),
        "{}",
        out.stderr
    );
}

#[test]
fn collection_left_by_an_interrupted_create_is_adopted() {
    let env = TestEnv::new("adopt");
    env.tenant("acme", "pro", "");
    // Killed (as by kill -9) after the collection was created, before the commit.
    let killed = env.tenantctl_with(
        &["apply", "--auto-approve"],
        &[("TENANTCTL_FAILPOINT", "acme:after:create_collection")],
    );
    assert_ne!(killed.code, 0, "{}", killed.stderr);
    assert!(env.collection("tenant_acme").is_some());
    let rows = env.query("SELECT id FROM tenantctl.tenants", &[]);
    assert!(rows.is_empty(), "the create never committed");

    let plan = env.plan();
    assert!(
        plan.stdout
            .contains("tenant_acme (adopting the one left by an interrupted create)"),
        "{}",
        plan.stdout
    );
    env.apply();
    let uid = env.query_one(
        "SELECT uid::text FROM tenantctl.tenants WHERE id = 'acme'",
        &[],
    );
    let uid: String = uid.get(0);
    let collection = env.collection("tenant_acme").unwrap();
    assert_eq!(collection["metadata"]["tenant_uid"], json!(uid));
    assert!(env.plan().stdout.contains("No changes."));
}

#[test]
fn an_interrupted_create_whose_collection_holds_records_is_a_conflict() {
    let env = TestEnv::new("adopt_full");
    env.tenant("acme", "pro", "");
    let killed = env.tenantctl_with(
        &["apply", "--auto-approve"],
        &[("TENANTCTL_FAILPOINT", "acme:after:create_collection")],
    );
    assert_ne!(killed.code, 0, "{}", killed.stderr);
    env.add_records("tenant_acme", 2);
    let plan = env.tenantctl(&["plan"]).expect_code(1);
    assert!(
        plan.stdout.contains(
            "collection `tenant_acme` already exists but the registry has no tenant `acme`: it already holds records"
        ),
        "{}",
        plan.stdout
    );
}

#[test]
fn another_registrys_collection_is_never_adopted() {
    // Two registries (databases) sharing one Chroma database, each with a tenant `acme`.
    let first = TestEnv::new("shared_chroma_a");
    first.tenant("acme", "pro", "");
    first.apply();
    first.add_records("tenant_acme", 3);
    let before = first.collection("tenant_acme").unwrap();

    let mut second = TestEnv::new("shared_chroma_b");
    second.chroma_database = first.chroma_database.clone();
    second.tenant("acme", "pro", "");
    let plan = second.tenantctl(&["plan"]).expect_code(1);
    assert!(
        plan.stdout.contains(
            "collection `tenant_acme` already exists but the registry has no tenant `acme`: its uid is not an interrupted create of this registry"
        ),
        "{}",
        plan.stdout
    );
    second
        .tenantctl(&["apply", "--auto-approve"])
        .expect_code(1);
    // The first registry's collection: same metadata, same records.
    let after = first.collection("tenant_acme").unwrap();
    assert_eq!(after["metadata"], before["metadata"]);
    assert!(first.plan().stdout.contains("No changes."));
    let rows = second.query("SELECT id FROM tenantctl.tenants", &[]);
    assert!(rows.is_empty());
}

#[test]
fn a_collection_tenantctl_did_not_create_is_a_conflict() {
    let env = TestEnv::new("foreign_collection");
    env.tenant("acme", "pro", "");
    env.create_collection("tenant_acme", json!({ "owner": "data-team" }));
    let plan = env.tenantctl(&["plan"]).expect_code(1);
    assert!(
        plan.stdout.contains(
            "collection `tenant_acme` already exists but the registry has no tenant `acme`"
        ),
        "{}",
        plan.stdout
    );
    env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    let collection = env.collection("tenant_acme").unwrap();
    assert_eq!(collection["metadata"], json!({ "owner": "data-team" }));
    let rows = env.query("SELECT id FROM tenantctl.tenants", &[]);
    assert!(rows.is_empty());
}

/// Runs tenantctl on a pseudo-terminal (util-linux `script`), feeding `input` to its stdin.
fn on_terminal(env: &TestEnv, args: &str, input: &str, extra_env: &[(&str, &str)]) -> String {
    use std::io::Write;
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_tenantctl"));
    let mut script = std::process::Command::new("script");
    env.configure(&mut script);
    let mut child = script
        .args(["-qec", &command, "/dev/null"])
        .envs(extra_env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs");
    let mut stdin = child.stdin.take().unwrap();
    // Give the prompt time to appear before answering, as a person would.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let env = TestEnv::new("colour");
    env.tenant("acme", "pro", "");
    let coloured = on_terminal(&env, "plan", "", &[]);
    assert!(coloured.contains("\u{1b}[32m+\u{1b}[0m"), "{coloured:?}");
    let plain = on_terminal(&env, "plan", "", &[("NO_COLOR", "1")]);
    assert!(plain.contains("+ acme"), "{plain:?}");
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
    // and never when stdout is not a terminal
    let piped = env.plan();
    assert!(!piped.stdout.contains('\u{1b}'), "{:?}", piped.stdout);
}

#[test]
fn apply_on_a_terminal_asks_and_applies_only_on_yes() {
    let env = TestEnv::new("confirm");
    env.tenant("acme", "pro", "");
    let declined = on_terminal(&env, "apply", "no\n", &[("NO_COLOR", "1")]);
    assert!(
        declined.contains("Do you want to apply these changes? Only `yes` is accepted:"),
        "{declined:?}"
    );
    assert!(
        declined.contains("apply cancelled; nothing was changed"),
        "{declined:?}"
    );
    let nothing = env.query_one("SELECT to_regnamespace('tenantctl') IS NULL", &[]);
    assert!(
        nothing.get::<_, bool>(0),
        "declined apply changed something"
    );

    let accepted = on_terminal(&env, "apply", "yes\n", &[("NO_COLOR", "1")]);
    assert!(
        accepted.contains("Apply complete: 1 tenant applied"),
        "{accepted:?}"
    );
    assert!(env.collection("tenant_acme").is_some());
}

#[test]
fn a_chroma_tenant_and_database_of_their_own_are_created_if_missing() {
    let env = TestEnv::new("chroma_scope");
    env.tenant("acme", "pro", "");
    // Chroma has no way to delete a tenant: the name is unique so reruns never collide, and the
    // database inside it is removed below.
    let chroma_tenant = format!("tct_scope_{}", uuid::Uuid::new_v4().simple());
    let scope = [
        ("CHROMA_TENANT", chroma_tenant.as_str()),
        ("CHROMA_DATABASE", "saas_vectors"),
    ];
    let planned = env.tenantctl_with(&["plan"], &scope).expect_code(0);
    assert!(
        planned
            .stdout
            .contains(&format!("({chroma_tenant}/saas_vectors)")),
        "{}",
        planned.stdout
    );
    env.tenantctl_with(&["apply", "--auto-approve"], &scope)
        .expect_code(0);
    let url = format!(
        "{}/api/v2/tenants/{chroma_tenant}/databases/saas_vectors/collections/tenant_acme",
        env.chroma_url
    );
    let found = env.runtime.block_on(async {
        let response = reqwest::get(&url).await.unwrap();
        response.status().as_u16()
    });
    assert_eq!(
        found, 200,
        "collection not in the requested tenant/database"
    );
    assert!(
        env.collection("tenant_acme").is_none(),
        "nothing in the default scope"
    );
    let again = env.tenantctl_with(&["plan"], &scope).expect_code(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    env.runtime.block_on(async {
        let _ = reqwest::Client::new()
            .delete(format!(
                "{}/api/v2/tenants/{chroma_tenant}/databases/saas_vectors",
                env.chroma_url
            ))
            .send()
            .await;
    });
}

#[test]
fn parallel_workers_roll_back_each_tenant_when_chroma_goes_away() {
    let env = TestEnv::new("parallel_fault");
    let ids: Vec<String> = (0..6).map(|n| format!("f{n}")).collect();
    for id in &ids {
        env.tenant(id, "pro", "");
    }
    let proxy = FaultProxy::start(
        &env.chroma_url,
        &["POST /api/v2/tenants/", "/collections HTTP"],
    );
    let failed = env
        .tenantctl_with(
            &["apply", "--auto-approve", "--parallelism", "3"],
            &[("CHROMA_URL", &proxy.url)],
        )
        .expect_code(1);
    assert!(proxy.tripped());
    // Three tenants in a row failed on Chroma: the run stops instead of paying the timeouts
    // of every remaining tenant, and says so in one line.
    // Workers already busy finish their tenant: at least 3 failed, the rest never started.
    let summary = failed
        .stdout
        .lines()
        .find(|line| line.starts_with("Apply stopped: 0 tenants applied, "))
        .unwrap_or_else(|| panic!("{}", failed.stdout));
    let numbers: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse().ok())
        .collect();
    let (failures, not_started) = (numbers[1], numbers[2]);
    assert!(failures >= 3 && not_started >= 1, "{summary}");
    assert_eq!(failures + not_started, 6, "{summary}");
    assert!(
        failed
            .stderr
            .contains("error: stopped: Chroma failed 3 tenants in a row"),
        "{}",
        failed.stderr
    );
    let left = env.query_one(
        "SELECT (SELECT count(*) FROM tenantctl.tenants), \
                (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tenant\\_f%'), \
                (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, $1)), \
                (SELECT count(*) FROM tenantctl.events WHERE action <> 'create_started')",
        &[&env.role("")],
    );
    assert_eq!(
        (
            left.get::<_, i64>(0),
            left.get::<_, i64>(1),
            left.get::<_, i64>(2),
            left.get::<_, i64>(3)
        ),
        (0, 0, 0, 0),
        "something of a rolled-back tenant was left"
    );
    env.tenantctl(&["apply", "--auto-approve", "--parallelism", "3"])
        .expect_code(0);
    for id in &ids {
        assert!(env.collection(&format!("tenant_{id}")).is_some(), "{id}");
    }
}
