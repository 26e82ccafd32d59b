//! Tenant schema as code, against the real servers: migrations applied to every tenant, the
//! history rules, failures rolled back per tenant with file and line, drift named, the
//! lifecycle (suspended migrated, deleted frozen, restored caught up), grants on what the
//! migrations make, the upgrade of a registry made before migrations existed, and hostile
//! migration files.

mod common;

use common::*;
use serde_json::json;

const CONVERSATIONS: &str = include_str!("../crates/core/src/spec/builtin/0001_conversations.sql");
const DOCUMENTS: &str = "\
-- Documents of the tenant's knowledge base.
CREATE TABLE documents (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    body text NOT NULL DEFAULT ''
);
CREATE INDEX documents_title ON documents (title);
";

fn with_migrations(env: &TestEnv) {
    env.write("migrations/0001_conversations.sql", CONVERSATIONS);
}

fn has_table(env: &TestEnv, table: &str) -> bool {
    env.query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&table])
        .get(0)
}

#[test]
fn a_migration_reaches_every_tenant_and_a_new_tenant_gets_all() {
    let env = TestEnv::new("mig_fleet");
    with_migrations(&env);
    for id in ["acme", "globex", "hooli"] {
        env.tenant(id, "pro", "");
    }
    env.apply();
    assert_eq!(history(&env, "acme"), vec![1]);

    env.write("migrations/0002_documents.sql", DOCUMENTS);
    let plan = env.plan();
    assert!(
        plan.stdout
            .contains("~ acme                      migrate  0002_documents"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Migrations: 1 pending (0002_documents) for 3 tenants."),
        "{}",
        plan.stdout
    );
    let markdown = env
        .tenantctl(&["plan", "--format", "markdown"])
        .expect_code(0);
    assert_eq!(
        markdown.stdout.matches("CREATE TABLE documents").count(),
        1,
        "the SQL once:\n{}",
        markdown.stdout
    );
    let json = env
        .tenantctl(&["plan", "--format", "json"])
        .expect_code(0)
        .json();
    let acme = entry(&json["changes"], "acme");
    assert_eq!(acme["migrations"][0]["version"], 2);
    assert_eq!(
        acme["migrations"][0]["checksum"].as_str().unwrap().len(),
        64
    );

    env.apply();
    for id in ["acme", "globex", "hooli"] {
        assert_eq!(history(&env, id), vec![1, 2], "{id}");
        assert!(has_table(&env, &format!("tenant_{id}.documents")), "{id}");
    }
    env.tenant("wayne", "pro", "");
    env.apply();
    assert_eq!(history(&env, "wayne"), vec![1, 2]);
    assert!(env.plan().stdout.contains("No changes."));
}

#[test]
fn the_tenant_role_uses_the_new_tables_and_no_other_tenants() {
    let env = TestEnv::new("mig_grants");
    with_migrations(&env);
    env.write("migrations/0002_documents.sql", DOCUMENTS);
    // A SQL-standard body: its inner semicolons do not end the statement.
    env.write(
        "migrations/0003_titles.sql",
        "CREATE FUNCTION document_count() RETURNS bigint LANGUAGE sql\n\
         BEGIN ATOMIC\n\
           SELECT count(*) FROM documents;\n\
         END;\n",
    );
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    env.apply();
    let role = env.role("acme");
    // As the application does: SET ROLE, then unqualified work in its own schema.
    env.execute(&format!(
        "BEGIN; SET LOCAL ROLE \"{role}\"; SET LOCAL search_path TO tenant_acme; \
         INSERT INTO documents (title) VALUES ('first'); COMMIT;"
    ));
    let rows = env.query_one("SELECT count(*) FROM tenant_acme.documents", &[]);
    assert_eq!(rows.get::<_, i64>(0), 1);
    // The function the migration made, called as the tenant's role.
    let app = env.app_client();
    let counted = env.runtime.block_on(async {
        app.batch_execute(&format!(
            "BEGIN; SET LOCAL ROLE \"{role}\"; SET LOCAL search_path TO tenant_acme"
        ))
        .await
        .unwrap();
        let row = app.query_one("SELECT document_count()", &[]).await.unwrap();
        app.batch_execute("COMMIT").await.unwrap();
        row.get::<_, i64>(0)
    });
    assert_eq!(counted, 1);
    let denied = env.try_execute(&format!(
        "BEGIN; SET LOCAL ROLE \"{role}\"; SELECT * FROM tenant_globex.documents; COMMIT;"
    ));
    env.execute("ROLLBACK");
    let error = denied.expect_err("read another tenant's table");
    assert!(
        format!("{error:?}").contains("permission denied"),
        "{error:?}"
    );
}

#[test]
fn a_migration_failing_on_one_tenant_rolls_back_that_tenant_alone() {
    let env = TestEnv::new("mig_fail_one");
    with_migrations(&env);
    env.write("migrations/0002_documents.sql", DOCUMENTS);
    for id in ["acme", "globex"] {
        env.tenant(id, "pro", "");
    }
    env.apply();
    // Duplicate titles in globex only: a unique index fails there.
    env.execute(
        "INSERT INTO tenant_globex.documents (title) VALUES ('same'), ('same'); \
         INSERT INTO tenant_acme.documents (title) VALUES ('one'), ('two');",
    );
    env.write(
        "migrations/0003_unique_titles.sql",
        "-- Titles are unique per tenant from now on.\n\
         ALTER TABLE documents ADD COLUMN summary text;\n\
         CREATE UNIQUE INDEX documents_unique_title ON documents (title);\n",
    );
    // The reference (an empty schema) takes it, so the plan does.
    env.plan();
    let out = env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        out.stdout.contains("✓ acme"),
        "acme goes on:\n{}",
        out.stdout
    );
    let failed = out
        .stdout
        .lines()
        .find(|line| line.contains("x globex"))
        .unwrap_or_default()
        .to_string();
    assert!(
        failed.contains("migration `")
            && failed.contains("migrations/0003_unique_titles.sql` failed at line 3")
            && failed.contains("could not create unique index"),
        "{}",
        out.stdout
    );
    assert_eq!(history(&env, "acme"), vec![1, 2, 3]);
    assert_eq!(history(&env, "globex"), vec![1, 2], "rolled back whole");
    let column = env.query_one(
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_schema = 'tenant_globex' AND table_name = 'documents' AND column_name = 'summary'",
        &[],
    );
    assert_eq!(
        column.get::<_, i64>(0),
        0,
        "the first statement rolled back too"
    );
}

#[test]
fn a_busy_tenant_gives_up_after_the_migration_lock_timeout() {
    let env = TestEnv::new("mig_lock");
    with_migrations(&env);
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    env.apply();
    env.write(
        "migrations/0002_notes.sql",
        "ALTER TABLE conversations ADD COLUMN note text;\n",
    );
    let app = env.app_client();
    env.runtime
        .block_on(
            app.batch_execute("BEGIN; LOCK TABLE tenant_acme.conversations IN ACCESS SHARE MODE"),
        )
        .unwrap();
    let out = env
        .tenantctl(&["apply", "--auto-approve", "--migration-lock-timeout", "1s"])
        .expect_code(1);
    assert!(out.stdout.contains("lock timeout"), "{}", out.stdout);
    // Tried again twice within the run (the default), then given up.
    assert!(
        out.stdout.contains("(after 2 retries on a lock timeout)")
            && out.stdout.contains("2 retries after lock timeouts"),
        "{}",
        out.stdout
    );
    assert_eq!(history(&env, "globex"), vec![1, 2]);
    assert_eq!(history(&env, "acme"), vec![1]);
    env.runtime.block_on(app.batch_execute("COMMIT")).unwrap();
    env.apply();
    assert_eq!(history(&env, "acme"), vec![1, 2], "retried by the next run");
}

#[test]
fn edited_removed_and_out_of_order_migrations_are_refused() {
    let env = TestEnv::new("mig_rules");
    with_migrations(&env);
    env.write("migrations/0002_documents.sql", DOCUMENTS);
    env.write(
        "migrations/0005_notes.sql",
        "ALTER TABLE conversations ADD COLUMN note text;\n",
    );
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    env.apply();
    let before = env.query_one("SELECT count(*) FROM tenantctl.events", &[]);

    // Edited after it was applied.
    env.write(
        "migrations/0002_documents.sql",
        &DOCUMENTS.replace("title text", "heading text"),
    );
    let out = env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        out.stderr.contains(
            "migrations/0002_documents.sql` was changed after it was applied to 2 tenants"
        ),
        "{}",
        out.stderr
    );
    env.write("migrations/0002_documents.sql", DOCUMENTS);

    // Removed.
    env.remove("migrations/0005_notes.sql");
    let out = env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        out.stderr
            .contains("migration `0005_notes` was applied to 2 tenants but its file is gone"),
        "{}",
        out.stderr
    );
    env.write(
        "migrations/0005_notes.sql",
        "ALTER TABLE conversations ADD COLUMN note text;\n",
    );

    // New, but numbered below one already applied.
    env.write("migrations/0003_late.sql", "CREATE TABLE late (id int);\n");
    let out = env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        out.stderr.contains(
            "migrations/0003_late.sql` is new but numbered below `0005_notes`, already applied to 2 tenants"
        ),
        "{}",
        out.stderr
    );
    assert!(!has_table(&env, "tenant_acme.late"));
    let after = env.query_one("SELECT count(*) FROM tenantctl.events", &[]);
    assert_eq!(
        before.get::<_, i64>(0),
        after.get::<_, i64>(0),
        "nothing changed"
    );
}

#[test]
fn a_migration_escaping_the_transaction_is_rejected_before_anything_runs() {
    let env = TestEnv::new("mig_escape");
    with_migrations(&env);
    env.write(
        "migrations/0002_index.sql",
        "CREATE TABLE documents (id int);\n\nCREATE INDEX CONCURRENTLY documents_id ON documents (id);\n",
    );
    env.tenant("acme", "pro", "");
    let out = env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    assert!(
        out.stderr.contains(
            "migrations/0002_index.sql:3:1: `CONCURRENTLY` cannot run inside a transaction"
        ),
        "{}",
        out.stderr
    );
    let exists = env.query_one("SELECT to_regnamespace('tenant_acme') IS NULL", &[]);
    assert!(exists.get::<_, bool>(0), "nothing was created");
}

#[test]
fn a_migration_failing_everywhere_fails_the_plan_with_file_and_line() {
    let env = TestEnv::new("mig_broken");
    with_migrations(&env);
    env.write(
        "migrations/0002_broken.sql",
        "CREATE TABLE documents (id int);\nALTER TABLE nowhere ADD COLUMN x int;\n",
    );
    env.tenant("acme", "pro", "");
    let out = env.tenantctl(&["plan"]).expect_code(1);
    assert!(
        out.stderr.contains("migrations/0002_broken.sql` fails on an empty schema at line 2: relation \"nowhere\" does not exist"),
        "{}",
        out.stderr
    );
}

#[test]
fn drift_of_a_migrated_schema_is_named_not_guessed() {
    let env = TestEnv::new("mig_drift");
    with_migrations(&env);
    env.write("migrations/0002_documents.sql", DOCUMENTS);
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    env.tenant("initech", "pro", "");
    env.tenant("umbrella", "pro", "");
    env.apply();
    // Indexes of the same definition are described once for the fleet (by a signature of
    // their catalog rows): one changed on one tenant is described on its own.
    env.execute(
        "ALTER TABLE tenant_acme.documents DROP COLUMN body; \
         CREATE INDEX by_body_size ON tenant_globex.conversations (created_at); \
         DROP INDEX tenant_initech.documents_title; \
         CREATE UNIQUE INDEX documents_title ON tenant_initech.documents (title); \
         DROP INDEX tenant_umbrella.documents_title; \
         CREATE INDEX documents_title ON tenant_umbrella.documents (body);",
    );
    let out = env.tenantctl(&["plan"]).expect_code(1);
    assert!(
        out.stdout.contains(
            "schema `tenant_acme` is not what the migrations define: column `documents.body` is missing"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "schema `tenant_globex` is not what the migrations define: index `by_body_size` is not in the migrations"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "schema `tenant_initech` is not what the migrations define: index `documents_title` differs: `CREATE UNIQUE INDEX documents_title ON documents USING btree (title)`, expected `CREATE INDEX documents_title ON documents USING btree (title)`"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "schema `tenant_umbrella` is not what the migrations define: index `documents_title` differs: `CREATE INDEX documents_title ON documents USING btree (body)`, expected `CREATE INDEX documents_title ON documents USING btree (title)`"
        ),
        "{}",
        out.stdout
    );
    // Left alone: nothing is invented.
    env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    let column = env.query_one(
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_schema = 'tenant_acme' AND table_name = 'documents' AND column_name = 'body'",
        &[],
    );
    assert_eq!(column.get::<_, i64>(0), 0);
}

#[test]
fn suspended_tenants_are_migrated_deleted_ones_frozen_then_caught_up_on_restore() {
    let env = TestEnv::new("mig_lifecycle");
    with_migrations(&env);
    env.tenant(
        "initech",
        "pro",
        "state: suspended\nsuspension: { reason: \"invoice overdue\" }\n",
    );
    env.tenant("hooli", "pro", "");
    env.apply();
    env.tenant("hooli", "pro", "state: deleted\n");
    env.apply();
    // The final backup says which migration the tables come from.
    let manifest = walk_manifest(env.backups.path());
    assert_eq!(manifest["migration_version"], json!(1));

    env.write("migrations/0002_documents.sql", DOCUMENTS);
    let plan = env.plan();
    assert!(plan.stdout.contains("~ initech"), "{}", plan.stdout);
    assert!(
        !plan.stdout.contains("~ hooli"),
        "a deleted tenant is frozen:\n{}",
        plan.stdout
    );
    env.apply();
    assert_eq!(history(&env, "initech"), vec![1, 2]);
    assert_eq!(history(&env, "hooli"), vec![1]);
    assert!(!has_table(&env, "tenant_hooli.documents"));

    env.tenant("hooli", "pro", "");
    let plan = env.plan();
    assert!(
        plan.stdout
            .contains("+ hooli                     restore, migrate"),
        "{}",
        plan.stdout
    );
    env.apply();
    assert_eq!(history(&env, "hooli"), vec![1, 2]);
    assert!(has_table(&env, "tenant_hooli.documents"));
    assert!(env.plan().stdout.contains("No changes."));
}

/// The manifest of the one backup under `root`.
fn walk_manifest(root: &std::path::Path) -> serde_json::Value {
    let mut stack = vec![root.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|name| name == "manifest.json") {
                return serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            }
        }
    }
    panic!("no backup under {}", root.display());
}

#[test]
fn a_registry_made_before_migrations_is_adopted_without_touching_data() {
    let env = TestEnv::new("mig_upgrade");
    // The roles of the release's registry (prefix `upgr_`, cluster-wide), then its database.
    let roles = ["upgr_acme", "upgr_globex", "upgr_hooli"];
    for role in roles {
        env.execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} NOLOGIN; COMMENT ON ROLE {role} IS 'managed by tenantctl';"
        ));
    }
    env.execute(include_str!("fixtures/release-0.1.0.sql"));
    let rows: Vec<(String, String)> = env
        .query("SELECT id, uid::text FROM tenantctl.tenants", &[])
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for (id, uid) in &rows {
        env.create_collection(
            &format!("tenant_{id}"),
            json!({ "managed_by": "tenantctl", "tenant_id": id, "tenant_uid": uid }),
        );
    }
    for id in ["acme", "globex", "hooli"] {
        let extra = match id {
            "globex" => "state: suspended\nsuspension: { reason: \"invoice overdue\" }\n",
            "hooli" => "state: deleted\n",
            _ => "",
        };
        let plan = if id == "globex" { "trial" } else { "pro" };
        env.write(
            &format!("{id}.yaml"),
            &format!(
                "apiVersion: tenantctl/v1\nkind: Tenant\nid: {id}\nname: {}\nplan: {plan}\n{extra}",
                match id {
                    "acme" => "Acme Corp",
                    "globex" => "Globex",
                    _ => "Hooli",
                }
            ),
        );
    }
    with_migrations(&env);
    env.write("migrations/0002_documents.sql", DOCUMENTS);
    let upgrade = [("TENANTCTL_ROLE_PREFIX", "upgr_")];

    let plan = env.tenantctl_with(&["plan"], &upgrade).expect_code(0);
    assert!(
        plan.stdout.contains(
            "~ acme                      migrate  0002_documents (0001_conversations already applied by an earlier release: recorded)"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("tenantctl, version 2 -> 8"),
        "{}",
        plan.stdout
    );
    env.tenantctl_with(&["apply", "--auto-approve"], &upgrade)
        .expect_code(0);
    assert_eq!(history(&env, "acme"), vec![1, 2]);
    assert_eq!(history(&env, "globex"), vec![1, 2]);
    assert_eq!(history(&env, "hooli"), Vec::<i32>::new(), "deleted: frozen");
    // The data the release's tenants held is untouched.
    let messages = env.query_one(
        "SELECT messages::text FROM tenant_acme.conversations \
         WHERE id = '11111111-1111-1111-1111-111111111111'",
        &[],
    );
    assert_eq!(
        messages.get::<_, String>(0),
        r#"[{"role": "user", "text": "hello"}]"#
    );
    let again = env.tenantctl_with(&["plan"], &upgrade).expect_code(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    for role in roles {
        let _ = env.try_execute(&format!(
            "DROP OWNED BY {role} CASCADE; DROP ROLE IF EXISTS {role};"
        ));
    }
}

#[test]
fn hostile_migration_files_are_clear_errors() {
    let env = TestEnv::new("mig_hostile");
    env.tenant("acme", "pro", "");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "0002_empty.sql",
            b"-- nothing\n".to_vec(),
            "0002_empty.sql: migration is empty",
        ),
        (
            "0002_latin1.sql",
            b"CREATE TABLE caf\xe9 (id int);".to_vec(),
            "0002_latin1.sql:1:17: file is not valid UTF-8",
        ),
        (
            "1-init.sql",
            b"CREATE TABLE t (id int);".to_vec(),
            "`1-init.sql` is not named like a migration",
        ),
        (
            "0001.sql",
            b"CREATE TABLE t (id int);".to_vec(),
            "`0001.sql` is not named like a migration",
        ),
        (
            "0002_big.sql",
            vec![b'-'; 10 * 1024 * 1024],
            "0002_big.sql: migration is larger than 1 MiB",
        ),
        // A no-transaction migration holds named concurrent index builds and drops only.
        (
            "0002_online.sql",
            b"-- tenantctl: no-transaction\nCREATE INDEX CONCURRENTLY i ON conversations (created_at);\nALTER TABLE conversations ADD COLUMN note text;\n".to_vec(),
            "0002_online.sql:3:1: `ALTER TABLE`: a `-- tenantctl: no-transaction` migration holds only",
        ),
        (
            "0002_reach.sql",
            b"-- tenantctl: no-transaction\nDROP INDEX CONCURRENTLY tenant_globex.conversations_pkey;\n".to_vec(),
            "0002_reach.sql:2:1: `DROP INDEX CONCURRENTLY` takes one plain index name and nothing else",
        ),
        (
            "0002_typo.sql",
            b"-- tenantctl: no-transactions\nCREATE INDEX CONCURRENTLY i ON conversations (created_at);\n".to_vec(),
            "0002_typo.sql:1:1: unknown directive `tenantctl: no-transactions`",
        ),
        (
            "0002_in_transaction.sql",
            b"CREATE INDEX CONCURRENTLY i ON conversations (created_at);\n".to_vec(),
            "0002_in_transaction.sql:1:1: `CONCURRENTLY` cannot run inside a transaction",
        ),
    ];
    for (name, bytes, expected) in cases {
        let folder = env.path("migrations");
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("0001_conversations.sql"), CONVERSATIONS).unwrap();
        std::fs::write(folder.join(name), bytes).unwrap();
        let out = env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
        assert!(out.stderr.contains(expected), "{name}: {}", out.stderr);
        assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    }
    // Two files of one version.
    std::fs::write(
        env.path("migrations/0002_a.sql"),
        "CREATE TABLE a (id int);",
    )
    .unwrap();
    std::fs::write(env.path("migrations/002_b.sql"), "CREATE TABLE b (id int);").unwrap();
    let _ = std::fs::remove_file(env.path("migrations/0002_big.sql"));
    let out = env.tenantctl(&["validate"]).expect_code(1);
    assert!(
        out.stderr.contains("version 2 is used twice"),
        "{}",
        out.stderr
    );
    let exists = env.query_one("SELECT to_regnamespace('tenant_acme') IS NULL", &[]);
    assert!(exists.get::<_, bool>(0), "nothing was created");
}

#[test]
fn a_saved_plan_pins_the_migrations_it_shows() {
    let env = TestEnv::new("mig_saved");
    with_migrations(&env);
    env.tenant("acme", "pro", "");
    env.apply();
    env.write("migrations/0002_documents.sql", DOCUMENTS);
    let file = env.backups.path().join("migrate.plan");
    let file = file.to_str().unwrap();
    env.tenantctl(&["plan", "--out", file]).expect_code(0);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let pinned = &saved["plan"]["changes"][0]["migrations"][0];
    assert_eq!(pinned["name"], "0002_documents", "{pinned}");
    assert_eq!(pinned["checksum"].as_str().unwrap().len(), 64);

    // The reviewed SQL is not the SQL that would run: refused, nothing changed.
    env.write(
        "migrations/0002_documents.sql",
        &DOCUMENTS.replace("CREATE INDEX documents_title ON documents (title);\n", ""),
    );
    let refused = env
        .tenantctl(&["apply", "--auto-approve", file])
        .expect_code(3);
    assert!(
        refused
            .stderr
            .contains("the tenant files or migrations changed since the plan was made"),
        "{}",
        refused.stderr
    );
    assert!(!has_table(&env, "tenant_acme.documents"));

    env.write("migrations/0002_documents.sql", DOCUMENTS);
    env.tenantctl(&["apply", "--auto-approve", file])
        .expect_code(0);
    assert_eq!(history(&env, "acme"), vec![1, 2]);
}

#[test]
fn the_example_directory_applies_with_its_migrations() {
    let env = TestEnv::new("mig_example");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants");
    copy_tree(&example, env.dir.path());
    // The example's first migration is the built-in one byte for byte: a deployment that
    // started without `migrations/` can add the folder later and keep its history.
    assert_eq!(
        std::fs::read_to_string(example.join("migrations/0001_conversations.sql")).unwrap(),
        CONVERSATIONS
    );
    // The application role its Settings name: the operator's to create (cluster-wide, so
    // shared by every test that needs it).
    let _ = env.try_execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'example_app') \
         THEN CREATE ROLE example_app LOGIN; END IF; END $$",
    );
    let plan = env.plan();
    assert!(
        plan.stdout.contains(
            "+ schema                tenant_acme (migrations 0001_conversations, 0002_documents)"
        ),
        "{}",
        plan.stdout
    );
    let secrets = tempfile::tempdir().unwrap();
    let secrets = secrets.path().join("secrets");
    env.tenantctl(&[
        "apply",
        "--auto-approve",
        "--secrets-dir",
        secrets.to_str().unwrap(),
    ])
    .expect_code(0);
    assert!(secrets.join("acme.json").exists(), "acme's credentials");
    let ids: Vec<String> = env
        .query("SELECT id FROM tenantctl.tenants ORDER BY id", &[])
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(ids.len() >= 5, "{ids:?}");
    for id in &ids {
        assert_eq!(history(&env, id), vec![1, 2], "{id}");
        assert!(has_table(&env, &format!("tenant_{id}.documents")), "{id}");
    }
    assert!(env.plan().stdout.contains("No changes."));
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A tenant whose schema was altered by hand so that the migration "succeeds" (`IF NOT EXISTS`)
/// but leaves another schema than the migrations make is verified before its commit, rolled
/// back and reported with the differences; the others are recorded with the fingerprint of
/// their verified schema, the same for every tenant.
#[test]
fn a_migration_that_succeeds_on_a_schema_altered_by_hand_is_rolled_back() {
    let env = TestEnv::new("mig_verify");
    with_migrations(&env);
    for id in ["acme", "globex", "initech"] {
        env.tenant(id, "pro", "");
    }
    env.apply();
    // Made by hand in globex: the table the next migration creates, without `body`.
    env.execute(
        "CREATE TABLE tenant_globex.documents (id bigserial PRIMARY KEY, title text NOT NULL)",
    );
    env.write(
        "migrations/0002_documents.sql",
        "-- Documents of the tenant's knowledge base.\n\
         CREATE TABLE IF NOT EXISTS documents (\n\
             id bigserial PRIMARY KEY,\n\
             title text NOT NULL,\n\
             body text NOT NULL DEFAULT ''\n\
         );\n\
         CREATE INDEX IF NOT EXISTS documents_title ON documents (title);\n",
    );
    let out = env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    let failed = out
        .stdout
        .lines()
        .find(|line| line.contains("x globex"))
        .unwrap_or_default()
        .to_string();
    assert!(
        failed.contains("the migrations ran, but schema `tenant_globex` is not what they make")
            && failed.contains("column `documents.body` is missing"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("✓ acme") && out.stdout.contains("✓ initech"),
        "{}",
        out.stdout
    );
    assert_eq!(history(&env, "globex"), vec![1], "not recorded");
    assert!(
        !has_table(&env, "tenant_globex.documents_title"),
        "the index the migration made is rolled back"
    );
    assert_eq!(history(&env, "acme"), vec![1, 2]);
    // The verified schema's fingerprint, stored with the history: one value for the fleet.
    let fingerprints: Vec<Option<String>> = env
        .query(
            "SELECT DISTINCT m.schema_fingerprint FROM tenantctl.tenant_migrations m \
             JOIN tenantctl.tenants t ON t.uid = m.tenant_uid \
             WHERE t.id IN ('acme', 'initech') AND m.version = 2",
            &[],
        )
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(fingerprints.len(), 1, "{fingerprints:?}");
    let fingerprint = fingerprints[0].clone().expect("a fingerprint");
    assert!(
        fingerprint.len() == 64 && fingerprint.chars().all(|c| c.is_ascii_hexdigit()),
        "{fingerprint}"
    );
    // Repaired by hand, globex migrates and gets the same fingerprint.
    env.execute("DROP TABLE tenant_globex.documents");
    env.apply();
    let globex: Option<String> = env
        .query_one(
            "SELECT m.schema_fingerprint FROM tenantctl.tenant_migrations m \
             JOIN tenantctl.tenants t ON t.uid = m.tenant_uid WHERE t.id = 'globex' AND m.version = 2",
            &[],
        )
        .get(0);
    assert_eq!(globex.as_deref(), Some(fingerprint.as_str()));
}

/// A tenant whose table an application holds for a while: its migrations hit the lock
/// timeout, it is tried again within the same run after a backoff, and applied once the lock
/// is gone; the report counts the retries.
#[test]
fn a_lock_timeout_is_retried_and_applied_within_the_run() {
    let env = TestEnv::new("mig_retry");
    with_migrations(&env);
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    env.apply();
    env.write(
        "migrations/0002_notes.sql",
        "ALTER TABLE conversations ADD COLUMN note text;\n",
    );
    // An application holds acme's table for 2.5 s, from another thread.
    let holder = env.hold_in_transaction(
        "LOCK TABLE tenant_acme.conversations IN ACCESS SHARE MODE",
        std::time::Duration::from_millis(2500),
    );
    let out = env
        .tenantctl(&[
            "apply",
            "--auto-approve",
            "--migration-lock-timeout",
            "1s",
            "--migration-retries",
            "6",
            "--format",
            "json",
        ])
        .expect_code(0);
    holder.join().unwrap();
    let report = out.json();
    let acme = entry(&report["tenants"], "acme");
    assert_eq!(acme["result"], "applied", "{report:#}");
    let retries = acme["retries"].as_u64().unwrap_or(0);
    assert!(retries >= 1, "{report:#}");
    assert_eq!(report["retries"].as_u64(), Some(retries), "{report:#}");
    assert!(
        entry(&report["tenants"], "globex").get("retries").is_none(),
        "{report:#}"
    );
    assert_eq!(history(&env, "acme"), vec![1, 2]);
    assert_eq!(history(&env, "globex"), vec![1, 2]);
}

/// A migration that drops data is flagged in the plan with the rows at risk in each tenant
/// (counted like a purge's), shown first in the comment, and limited by
/// `--max-destructive-migrations` like deletes by `--max-deletes`.
#[test]
fn a_destructive_migration_is_flagged_with_the_rows_at_risk() {
    let env = TestEnv::new("mig_destructive");
    with_migrations(&env);
    for id in ["acme", "globex"] {
        env.tenant(id, "pro", "");
    }
    env.apply();
    env.execute(
        "INSERT INTO tenant_acme.conversations (id) SELECT gen_random_uuid() FROM generate_series(1, 3)",
    );
    env.write(
        "migrations/0002_forget_messages.sql",
        "-- Messages move to the archive service.\nALTER TABLE conversations DROP COLUMN messages;\n",
    );
    let plan = env.plan();
    assert!(
        plan.stdout.lines().any(|line| line.starts_with("  ! destroys data  ")
            && line.ends_with("migrations/0002_forget_messages.sql:2 DROP COLUMN on conversations (2 tenants, 3 rows at risk)")),
        "{}",
        plan.stdout
    );
    let json = env
        .tenantctl(&["plan", "--format", "json"])
        .expect_code(0)
        .json();
    assert_eq!(json["destructive_migrations"][0]["kind"], "DROP COLUMN");
    assert_eq!(json["destructive_migrations"][0]["tenants"], 2);
    let rows = |tenant: &str| entry(&json["changes"], tenant)["at_risk"]["rows"].clone();
    assert_eq!(rows("acme"), json!(3));
    assert_eq!(rows("globex"), json!(0));
    let markdown = env
        .tenantctl(&["plan", "--format", "markdown"])
        .expect_code(0);
    assert!(
        markdown
            .stdout
            .contains("> **Migrations that will drop or rewrite data in 2 tenants**"),
        "{}",
        markdown.stdout
    );
    // One tenant allowed: refused, nothing changed.
    let refused = env
        .tenantctl(&[
            "apply",
            "--auto-approve",
            "--max-destructive-migrations",
            "1",
        ])
        .expect_code(1);
    assert!(
        refused
            .stdout
            .contains("more than `--max-destructive-migrations 1` allows")
            || refused
                .stderr
                .contains("more than `--max-destructive-migrations 1` allows"),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );
    assert_eq!(history(&env, "acme"), vec![1]);
    env.apply();
    assert_eq!(history(&env, "acme"), vec![1, 2]);
}

/// `--canary 1`: a failure in the canary stops the run before the fleet is touched; a
/// declared canary (`canary: true`) goes first; `--on-error stop` stops at the first failure
/// after it.
#[test]
fn a_canary_failure_stops_the_run_with_the_fleet_untouched() {
    let env = TestEnv::new("mig_canary");
    with_migrations(&env);
    for id in ["acme", "globex", "initech", "umbrella"] {
        env.tenant(id, "pro", "");
    }
    env.apply();
    // Two conversations at the same instant in acme only: the unique index fails there.
    env.execute(
        "INSERT INTO tenant_acme.conversations (id, created_at) \
         VALUES (gen_random_uuid(), '2026-01-01'), (gen_random_uuid(), '2026-01-01')",
    );
    env.write(
        "migrations/0002_unique_times.sql",
        "CREATE UNIQUE INDEX conversations_created_at ON conversations (created_at);\n",
    );
    let plan = env.tenantctl(&["plan", "--canary", "1"]).expect_code(0);
    assert!(
        plan.stdout
            .contains("~ canary                    acme (migrated first;"),
        "{}",
        plan.stdout
    );
    let out = env
        .tenantctl(&[
            "apply",
            "--auto-approve",
            "--canary",
            "1",
            "--format",
            "json",
        ])
        .expect_code(1);
    let report = out.json();
    assert_eq!(report["canary"], json!(["acme"]), "{report:#}");
    assert_eq!(report["not_started"], 3, "{report:#}");
    assert!(
        report["stopped"]
            .as_str()
            .unwrap_or_default()
            .contains("canary tenant `acme` failed"),
        "{report:#}"
    );
    for id in ["acme", "globex", "initech", "umbrella"] {
        assert_eq!(history(&env, id), vec![1], "{id} untouched");
    }

    // umbrella declares itself the canary: it goes first and succeeds; with one worker and
    // `--on-error stop`, acme fails next and nothing after it starts.
    env.tenant("umbrella", "pro", "canary: true\n");
    let out = env
        .tenantctl(&[
            "apply",
            "--auto-approve",
            "--canary",
            "1",
            "--parallelism",
            "1",
            "--on-error",
            "stop",
        ])
        .expect_code(1);
    assert!(
        out.stdout
            .contains("Stopped after the first failure (`--on-error stop`): `acme` failed"),
        "{}",
        out.stdout
    );
    assert_eq!(history(&env, "umbrella"), vec![1, 2]);
    assert_eq!(history(&env, "acme"), vec![1]);
    assert_eq!(
        history(&env, "globex"),
        vec![1],
        "not started after the failure"
    );

    // Without `--on-error stop` the rest of the fleet goes on past acme.
    env.tenantctl(&["apply", "--auto-approve"]).expect_code(1);
    assert_eq!(history(&env, "globex"), vec![1, 2]);
    assert_eq!(history(&env, "initech"), vec![1, 2]);
}

/// The state of each tenant in a migrating run is recorded: a run killed in the middle is
/// reported exactly by the next plan (applied, never finished, by name) and resumed by the next
/// apply; the JSON report names the tenants a stopped run did not start.
#[test]
fn an_interrupted_fleet_run_is_reported_exactly_and_resumed() {
    let env = TestEnv::new("mig_runs");
    with_migrations(&env);
    let tenants = ["acme", "globex", "initech", "umbrella"];
    for id in tenants {
        env.tenant(id, "pro", "");
    }
    env.apply();
    env.write("migrations/0002_documents.sql", DOCUMENTS);
    // One worker, killed (kill -9) just before initech's commit: acme and globex applied,
    // initech rolled back with the process, umbrella never started.
    let killed = env.tenantctl_with(
        &["apply", "--auto-approve", "--parallelism", "1"],
        &[("TENANTCTL_FAILPOINT", "initech:before:commit")],
    );
    assert_ne!(killed.code, 0);
    assert_eq!(history(&env, "globex"), vec![1, 2]);
    assert_eq!(history(&env, "initech"), vec![1]);
    let states: Vec<(String, String)> = env
        .query(
            "SELECT tenant_id, status FROM tenantctl.migration_runs ORDER BY tenant_id",
            &[],
        )
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        states,
        [
            ("acme", "applied"),
            ("globex", "applied"),
            ("initech", "pending"),
            ("umbrella", "pending")
        ]
        .map(|(tenant, status)| (tenant.to_string(), status.to_string()))
    );
    let plan = env.plan();
    assert!(
        plan.stdout.contains("did not finish: 2 applied, 0 failed, 2 never finished (`initech`, `umbrella`); their migrations are still pending, and apply resumes them"),
        "{}",
        plan.stdout
    );
    // Resumed: the rest migrate, and the new run finished, so no more warning.
    env.apply();
    for id in tenants {
        assert_eq!(history(&env, id), vec![1, 2], "{id}");
    }
    let plan = env.plan();
    assert!(!plan.stdout.contains("did not finish"), "{}", plan.stdout);

    // A run stopped by `--on-error stop` names what it did not start.
    env.write(
        "migrations/0003_unique_titles.sql",
        "CREATE UNIQUE INDEX documents_unique_title ON documents (title);\n",
    );
    env.execute("INSERT INTO tenant_acme.documents (title) VALUES ('same'), ('same')");
    let out = env
        .tenantctl(&[
            "apply",
            "--auto-approve",
            "--parallelism",
            "1",
            "--on-error",
            "stop",
            "--format",
            "json",
        ])
        .expect_code(1);
    let report = out.json();
    assert_eq!(
        report["not_started_tenants"],
        json!(["globex", "initech", "umbrella"]),
        "{report:#}"
    );
    let failed: String = env
        .query_one(
            "SELECT status || ': ' || error FROM tenantctl.migration_runs \
             WHERE tenant_id = 'acme' ORDER BY updated_at DESC LIMIT 1",
            &[],
        )
        .get(0);
    assert!(failed.starts_with("failed: migration `"), "{failed}");
}

/// The run state is kept 30 days: older runs go when a new migrating run starts, except the
/// last run, whatever its age (a plan reports it if it did not finish).
#[test]
fn the_state_of_old_runs_is_pruned_but_the_last_run_stays() {
    let env = TestEnv::new("mig_prune");
    with_migrations(&env);
    env.tenant("acme", "pro", "");
    env.tenant("globex", "pro", "");
    env.apply();
    let runs = |env: &TestEnv| -> Vec<String> {
        env.query(
            "SELECT run_id::text FROM tenantctl.migration_runs \
             GROUP BY run_id ORDER BY max(updated_at)",
            &[],
        )
        .iter()
        .map(|row| row.get(0))
        .collect()
    };
    env.write(
        "migrations/0002_notes.sql",
        "ALTER TABLE conversations ADD COLUMN note text;\n",
    );
    env.apply();
    let first = runs(&env);
    assert_eq!(first.len(), 1);
    // The last run is 40 days old, and an older one is there too.
    env.execute(
        "UPDATE tenantctl.migration_runs SET updated_at = now() - interval '40 days'; \
         INSERT INTO tenantctl.migration_runs (run_id, tenant_uid, tenant_id, status, updated_at) \
         VALUES (gen_random_uuid(), gen_random_uuid(), 'gone', 'applied', now() - interval '50 days')",
    );
    assert_eq!(runs(&env).len(), 2);
    env.write(
        "migrations/0003_tags.sql",
        "ALTER TABLE conversations ADD COLUMN tag text;\n",
    );
    env.apply();
    let second = runs(&env);
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second[0], first[0], "the last run stays, however old");
    // Once a newer run is the last, the old one goes.
    env.write(
        "migrations/0004_kind.sql",
        "ALTER TABLE conversations ADD COLUMN kind text;\n",
    );
    env.apply();
    let third = runs(&env);
    assert_eq!(third.len(), 2, "{third:?}");
    assert_eq!(third[0], second[1]);
    assert!(!third.contains(&first[0]));
}
