//! Tests of the whole loader: one per rule of the file format, plus the directory walk.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// Two plans, shared with the integration tests (`tests/common`).
const PLANS: &str = include_str!("fixtures/plans.yaml");

const ACME: &str = "\
apiVersion: tenantctl/v1
kind: Tenant
id: acme
name: Acme Corp
plan: pro
";

fn sources(files: &[(&str, &str)]) -> Vec<SourceFile> {
    files
        .iter()
        .map(|(relative, text)| SourceFile {
            path: Path::new("tenants").join(relative),
            relative: PathBuf::from(relative),
            text: text.to_string(),
        })
        .collect()
}

fn load(files: &[(&str, &str)]) -> Result<DesiredState, SpecErrors> {
    parse_sources(Path::new("tenants"), sources(files))
}

/// The errors, one `Display` string each (hint included).
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match load(files) {
        Ok(_) => panic!("expected errors for {files:?}"),
        Err(SpecErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The errors of one tenant file `acme.yaml` (the plans file added).
fn tenant_errors(text: &str) -> Vec<String> {
    errors(&[("plans.yaml", PLANS), ("acme.yaml", text)])
}

fn tenant(text: &str) -> TenantSpec {
    let state = load(&[("plans.yaml", PLANS), ("acme.yaml", text)]).unwrap();
    state.tenants.into_values().next().unwrap()
}

fn assert_one(errors: &[String], expected: &str) {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains(expected),
        "expected {expected:?} in {:?}",
        errors[0]
    );
}

fn features(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
    pairs
        .iter()
        .map(|(name, enabled)| (name.to_string(), *enabled))
        .collect()
}

// ---- a valid directory ----

#[test]
fn a_valid_directory_loads_with_defaults_and_merged_config() {
    let state = load(&[("plans.yaml", PLANS), ("acme.yaml", ACME)]).unwrap();
    assert_eq!(state.dir, PathBuf::from("tenants"));
    assert_eq!(state.plans.len(), 2);
    assert_eq!(
        state.plans["pro"].description.as_deref(),
        Some("for paying teams")
    );
    let acme = &state.tenants["acme"];
    assert_eq!(
        acme,
        &TenantSpec {
            id: "acme".into(),
            name: "Acme Corp".into(),
            state: DesiredStatus::Active,
            plan: "pro".into(),
            config: EffectiveConfig {
                model: "gpt-4o".into(),
                max_tokens: 4000,
                rate_limit_per_minute: 600,
                features: features(&[("basic_chat", true), ("rag", true)]),
            },
            suspension_reason: None,
            retention_days: None,
            protected: false,
            canary: false,
            auth: None,
            location: Location {
                file: PathBuf::from("tenants/acme.yaml"),
                line: 1,
                column: 1
            },
        }
    );
    assert_eq!(state.settings, Settings::default());
    assert_eq!(state.retention_days(acme), DEFAULT_RETENTION_DAYS);
    assert_eq!(state.fingerprint.len(), 64);
}

#[test]
fn every_tenant_field_is_read() {
    let acme = tenant(
        "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: Acme Corp\nstate: suspended\nplan: pro\n\
         suspension: { reason: invoice overdue }\nretention_days: 90\nprotected: true\n",
    );
    assert_eq!(acme.state, DesiredStatus::Suspended);
    assert_eq!(acme.suspension_reason.as_deref(), Some("invoice overdue"));
    assert_eq!(acme.retention_days, Some(90));
    assert!(acme.protected);
}

#[test]
fn config_overrides_are_deep_merged_and_can_switch_a_feature_off() {
    let acme = tenant(&format!(
        "{ACME}config:\n  model: claude-sonnet-4\n  max_tokens: 16000\n  features:\n    rag: false\n    web_search: true\n"
    ));
    assert_eq!(
        acme.config,
        EffectiveConfig {
            model: "claude-sonnet-4".into(),
            max_tokens: 16000,
            rate_limit_per_minute: 600,
            features: features(&[("basic_chat", true), ("rag", false), ("web_search", true)]),
        }
    );
}

#[test]
fn effective_config_serializes_with_the_registry_field_names() {
    let acme = tenant(ACME);
    let json = serde_json::to_value(&acme.config).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "model": "gpt-4o",
            "max_tokens": 4000,
            "rate_limit_per_minute": 600,
            "features": { "basic_chat": true, "rag": true }
        })
    );
    assert_eq!(
        serde_json::to_string(&DesiredStatus::Suspended).unwrap(),
        "\"suspended\""
    );
    assert_eq!(DesiredStatus::Deleted.to_string(), "deleted");
}

#[test]
fn settings_give_the_default_retention() {
    let state = load(&[
        ("plans.yaml", PLANS),
        ("acme.yaml", ACME),
        (
            "settings.yaml",
            "apiVersion: tenantctl/v1\nkind: Settings\nretention_days: 14\n",
        ),
    ])
    .unwrap();
    assert_eq!(state.settings.retention_days, Some(14));
    assert_eq!(
        state.settings.location.as_ref().unwrap().to_string(),
        "tenants/settings.yaml:1:1"
    );
    assert_eq!(state.retention_days(&state.tenants["acme"]), 14);
}

#[test]
fn empty_documents_and_comment_only_files_are_ignored() {
    let state = load(&[
        (
            "plans.yaml",
            &format!("# plans\n---\n---\n{PLANS}---\n# trailing\n"),
        ),
        ("acme.yaml", &format!("---\n# comment\n---\n{ACME}")),
        ("notes.yaml", "# nothing here yet\n"),
        ("empty.yml", ""),
    ])
    .unwrap();
    assert_eq!(state.tenants.len(), 1);
    assert_eq!(state.tenants["acme"].location.line, 4);
}

#[test]
fn state_values_are_lowercase_names() {
    assert_eq!(
        tenant(&format!("{ACME}state: deleted\n")).state,
        DesiredStatus::Deleted
    );
    let errors = tenant_errors(&format!("{ACME}state: Active\n"));
    assert_one(
        &errors,
        "tenants/acme.yaml:6:8: state: expected one of `active`, `suspended`, `deleted`, found the string \"Active\"\n  hint: did you mean `active`?",
    );
}

// ---- positions and the error format ----

#[test]
fn errors_have_exact_file_line_and_column() {
    let text = "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: Acme Corp\nplan: pro\nconfig:\n  max_tokens: lots\n";
    assert_eq!(
        tenant_errors(text),
        vec![
            "tenants/acme.yaml:7:15: config.max_tokens: expected a positive integer, found the string \"lots\""
        ]
    );

    let text = "# acme\napiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: Acme Corp\nplan: pro\nconfig: { rate_limit_per_minute: -5 }\n";
    assert_eq!(
        tenant_errors(text),
        vec!["tenants/acme.yaml:7:34: config.rate_limit_per_minute: expected a non-negative integer, found -5"]
    );
}

#[test]
fn spec_error_display_without_position_field_or_hint() {
    let error = SpecError {
        file: PathBuf::from("tenants"),
        line: None,
        column: None,
        field: None,
        message: "directory does not exist".into(),
        hint: None,
    };
    assert_eq!(error.to_string(), "tenants: directory does not exist");
    assert_eq!(
        SpecErrors(vec![error]).to_string(),
        "tenants: directory does not exist\n1 error in tenants"
    );
}

#[test]
fn all_errors_of_the_directory_come_in_one_run_sorted() {
    let result = load(&[
        ("plans.yaml", PLANS),
        (
            "globex.yaml",
            "apiVersion: tenantctl/v1\nkind: Tenant\nid: globex\nname: Globex\nplan: pro\nprotected: yes\n",
        ),
        (
            "acme.yaml",
            "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: \"\"\nplan: gold\nconfig:\n  max_token: 5\n  model: 7\n",
        ),
        ("broken.yaml", "a: [\n"),
    ]);
    let SpecErrors(errors) = result.unwrap_err();
    let positions: Vec<String> = errors
        .iter()
        .map(|error| {
            format!(
                "{}:{}:{}",
                error.file.display(),
                error.line.unwrap(),
                error.column.unwrap()
            )
        })
        .collect();
    assert_eq!(
        positions,
        vec![
            "tenants/acme.yaml:4:7",
            "tenants/acme.yaml:5:7",
            "tenants/acme.yaml:7:3",
            "tenants/acme.yaml:8:10",
            "tenants/broken.yaml:2:1",
            "tenants/globex.yaml:6:12",
        ]
    );
    let text = SpecErrors(errors).to_string();
    assert!(text.ends_with("\n6 errors in tenants"), "{text}");
}

// ---- YAML syntax and scalars ----

#[test]
fn syntax_errors_name_the_position_and_other_files_are_still_checked() {
    let errors = errors(&[
        ("plans.yaml", PLANS),
        ("acme.yaml", "apiVersion: tenantctl/v1\nkind: Tenant\n  id: acme\n"),
        ("globex.yaml", "apiVersion: tenantctl/v1\nkind: Tenant\nid: globex\nname: Globex\nplan: pro\nstate: paused\n"),
    ]);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0]
            .starts_with("tenants/acme.yaml:3:5: invalid YAML: mapping values are not allowed"),
        "{}",
        errors[0]
    );
    assert!(errors[1].starts_with("tenants/globex.yaml:6:8: state:"));
}

#[test]
fn documents_before_a_syntax_error_are_still_validated() {
    let errors = errors(&[(
        "plans.yaml",
        "apiVersion: tenantctl/v1\nkind: Plan\nname: Pro\n---\nname: [\n",
    )]);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].starts_with("tenants/plans.yaml:3:7: name: invalid plan name `Pro`"));
    assert!(errors[1].starts_with("tenants/plans.yaml:6:1: invalid YAML"));
}

#[test]
fn quoted_numbers_words_and_floats_are_not_integers() {
    let cases = [
        (
            "\"4000\"",
            "found the string \"4000\"\n  hint: remove the quotes",
        ),
        ("lots", "found the string \"lots\""),
        (
            "4000.0",
            "found the float 4000.0\n  hint: write it without a fraction: `4000`",
        ),
        ("1e3", "found the float 1e3"),
        ("true", "found the boolean true"),
        ("", "found null"),
        ("[1]", "found a sequence"),
    ];
    for (value, expected) in cases {
        let errors = tenant_errors(&format!("{ACME}config:\n  max_tokens: {value}\n"));
        assert_one(&errors, "config.max_tokens: expected a positive integer, ");
        assert_one(&errors, expected);
    }
}

#[test]
fn integer_ranges_are_enforced() {
    let cases = [
        (
            "max_tokens: 0",
            "config.max_tokens: expected an integer from 1 to 1000000, found 0",
        ),
        ("max_tokens: 1000001", "from 1 to 1000000, found 1000001"),
        (
            "max_tokens: -1",
            "config.max_tokens: expected an integer from 1 to 1000000, found -1",
        ),
        (
            "rate_limit_per_minute: -5",
            "expected a non-negative integer, found -5",
        ),
        (
            "rate_limit_per_minute: 2000000",
            "from 0 to 1000000, found 2000000",
        ),
        (
            "rate_limit_per_minute: 99999999999999999999999999999999999999999",
            "found 99999999999999999999999999999999999999999",
        ),
    ];
    for (line, expected) in cases {
        assert_one(
            &tenant_errors(&format!("{ACME}config:\n  {line}\n")),
            expected,
        );
    }
    assert_eq!(
        tenant(&format!(
            "{ACME}config: {{ rate_limit_per_minute: 0, max_tokens: 1000000 }}\n"
        ))
        .config
        .rate_limit_per_minute,
        0
    );
    assert_one(
        &tenant_errors(&format!("{ACME}retention_days: 3651\n")),
        "retention_days: expected an integer from 0 to 3650, found 3651",
    );
    assert_eq!(
        tenant(&format!("{ACME}retention_days: 0\n")).retention_days,
        Some(0)
    );
}

#[test]
fn booleans_follow_yaml_1_2() {
    assert_one(
        &tenant_errors(&format!("{ACME}protected: yes\n")),
        "protected: expected `true` or `false`, found the string \"yes\"\n  hint: YAML 1.2 has only `true` and `false`",
    );
    assert_one(
        &tenant_errors(&format!("{ACME}protected: \"true\"\n")),
        "hint: remove the quotes",
    );
    assert_one(
        &tenant_errors(&format!("{ACME}config: {{ features: {{ rag: 1 }} }}\n")),
        "config.features.rag: expected `true` or `false`, found 1",
    );
    assert!(tenant(&format!("{ACME}protected: True\n")).protected);
}

#[test]
fn strings_must_be_strings() {
    assert_one(
        &tenant_errors("apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: 42\nplan: pro\n"),
        "tenants/acme.yaml:4:7: name: expected a string, found 42\n  hint: put the value in quotes",
    );
    assert_eq!(
        tenant("apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: \"42\"\nplan: pro\n").name,
        "42"
    );
}

#[test]
fn anchors_and_aliases_are_resolved() {
    let plans = "\
apiVersion: tenantctl/v1
kind: Plan
name: &name trial
description: *name
config:
  model: gpt-4o-mini
  max_tokens: &tokens 1000
  rate_limit_per_minute: *tokens
  features: &chat { basic_chat: true }
";
    let state = load(&[
        ("plans.yaml", plans),
        ("acme.yaml", &ACME.replace("pro", "trial")),
    ])
    .unwrap();
    let trial = &state.plans["trial"];
    assert_eq!(trial.description.as_deref(), Some("trial"));
    assert_eq!(trial.config.rate_limit_per_minute, Some(1000));

    // An alias of a bad value is reported where it is used.
    let bad = plans
        .replace(
            "max_tokens: &tokens 1000",
            "max_tokens: &tokens 1000\n  other: &word lots",
        )
        .replace("*tokens", "*word");
    let found = errors(&[("plans.yaml", &bad)]);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with("tenants/plans.yaml:8:3: config.other: unknown field"));
    assert!(found[1].starts_with("tenants/plans.yaml:9:26: config.rate_limit_per_minute: expected a non-negative integer, found the string \"lots\""));

    // Anchors do not reach across documents (YAML's rule).
    let found = errors(&[("plans.yaml", &format!("{plans}---\nx: *chat\n"))]);
    assert_one(
        &found,
        "tenants/plans.yaml:11:4: invalid YAML: alias refers to an unknown anchor",
    );
}

#[test]
fn yaml_tags_are_refused() {
    assert_one(
        &tenant_errors(
            "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: !!str 42\nplan: pro\n",
        ),
        "tenants/acme.yaml:4:13: invalid YAML: tags such as `!!str` are not supported",
    );
}

// ---- apiVersion and kind ----

#[test]
fn documents_need_api_version_and_kind() {
    assert_one(
        &tenant_errors("kind: Tenant\nid: acme\nname: Acme\nplan: pro\n"),
        "tenants/acme.yaml:1:1: apiVersion: missing required field `apiVersion`\n  hint: add `apiVersion: tenantctl/v1`",
    );
    assert_one(
        &tenant_errors("apiVersion: tenantctl/v2\nkind: Tenant\nid: acme\nname: Acme\nplan: pro\n"),
        "tenants/acme.yaml:1:13: apiVersion: expected `tenantctl/v1`, found the string \"tenantctl/v2\"",
    );
    assert_one(
        &tenant_errors("apiVersion: tenantctl/v1\nid: acme\n"),
        "tenants/acme.yaml:1:1: kind: missing required field `kind`",
    );
    assert_one(
        &tenant_errors("apiVersion: tenantctl/v1\nkind: tenant\nid: acme\n"),
        "tenants/acme.yaml:2:7: kind: expected one of `Tenant`, `Plan`, `Settings`, found the string \"tenant\"\n  hint: did you mean `Tenant`?",
    );
    assert_one(
        &errors(&[("list.yaml", "- a\n- b\n")]),
        "tenants/list.yaml:1:1: expected a mapping with `apiVersion` and `kind`, found a sequence",
    );
    assert_one(
        &errors(&[("word.yaml", "hello\n")]),
        "found the string \"hello\"",
    );
}

// ---- unknown and duplicate fields ----

#[test]
fn unknown_fields_are_errors_with_suggestions_at_every_level() {
    assert_one(
        &tenant_errors(&format!("{ACME}config:\n  max_token: 5\n")),
        "tenants/acme.yaml:7:3: config.max_token: unknown field `max_token`\n  hint: did you mean `max_tokens`? the fields of `config` are `model`, `max_tokens`, `rate_limit_per_minute`, `features`",
    );
    assert_one(
        &tenant_errors(&format!("{ACME}protect: true\n")),
        "tenants/acme.yaml:6:1: protect: unknown field `protect`\n  hint: did you mean `protected`? the fields of a `Tenant` are `apiVersion`, `kind`, `id`, `name`, `state`, `plan`, `config`, `suspension`, `retention_days`, `protected`",
    );
    let found = tenant_errors(&format!(
        "{ACME}state: suspended\nsuspension: {{ reason: late, until: tomorrow }}\n"
    ));
    assert_one(&found, "suspension.until: unknown field `until`");
    assert!(!found[0].contains("did you mean"));
    assert_one(
        &errors(&[(
            "plans.yaml",
            "apiVersion: tenantctl/v1\nkind: Plan\nname: pro\ndescripton: x\n",
        )]),
        "descripton: unknown field `descripton`\n  hint: did you mean `description`?",
    );
    assert_one(
        &errors(&[
            ("plans.yaml", PLANS),
            ("settings.yaml", "apiVersion: tenantctl/v1\nkind: Settings\nretention: 3\n"),
        ]),
        "tenants/settings.yaml:3:1: retention: unknown field `retention`\n  hint: the fields of `Settings` are `apiVersion`, `kind`, `retention_days`",
    );
}

#[test]
fn duplicate_keys_are_errors() {
    assert_one(
        &tenant_errors(&format!("{ACME}name: Acme Again\n")),
        "tenants/acme.yaml:6:1: name: duplicate key `name`, first set at line 4",
    );
    assert_one(
        &tenant_errors(&format!(
            "{ACME}config:\n  features: {{ rag: true, rag: false }}\n"
        )),
        "config.features.rag: duplicate key `rag`",
    );
}

#[test]
fn keys_must_be_names() {
    assert_one(
        &tenant_errors(&format!("{ACME}config:\n  features: {{ 1: true }}\n")),
        "config.features: expected a field name, found 1",
    );
}

// ---- tenant rules ----

#[test]
fn tenant_id_rule() {
    assert_eq!(validate_tenant_id("acme"), Ok(()));
    assert_eq!(validate_tenant_id("ab"), Ok(()));
    assert_eq!(validate_tenant_id("stark_industries2"), Ok(()));
    assert_eq!(validate_tenant_id(&format!("a{}", "b".repeat(39))), Ok(()));
    for bad in [
        "a",
        "",
        &format!("a{}", "b".repeat(40)),
        "1acme",
        "_acme",
        "Acme",
        "ac-me",
        "ac me",
        "acme_",
        "acmé",
    ] {
        assert!(validate_tenant_id(bad).is_err(), "{bad:?} accepted");
    }
    assert_eq!(
        validate_tenant_id("Acme").unwrap_err(),
        "tenant id `Acme` must start with a lowercase letter (a lowercase letter, then lowercase letters, digits or `_`)"
    );
}

#[test]
fn invalid_ids_are_reported_at_the_id() {
    assert_one(
        &errors(&[
            ("plans.yaml", PLANS),
            (
                "ac-me.yaml",
                "apiVersion: tenantctl/v1\nkind: Tenant\nid: ac-me\nname: A\nplan: pro\n",
            ),
        ]),
        "tenants/ac-me.yaml:3:5: id: tenant id `ac-me` contains '-'",
    );
    assert_one(
        &tenant_errors("apiVersion: tenantctl/v1\nkind: Tenant\nname: Acme\nplan: pro\n"),
        "tenants/acme.yaml:1:1: id: missing required field `id`\n  hint: add `id: acme` (the file is named `acme.yaml`)",
    );
}

#[test]
fn the_file_must_be_named_after_the_tenant() {
    assert_one(
        &errors(&[("plans.yaml", PLANS), ("customers/acme-corp.yaml", ACME)]),
        "tenants/customers/acme-corp.yaml:3:5: id: tenant `acme` must be declared in a file named `acme.yaml` or `acme.yml`, not `customers/acme-corp.yaml`\n  hint: rename the file to `customers/acme.yaml`",
    );
    let state = load(&[("plans.yaml", PLANS), ("customers/acme.yml", ACME)]).unwrap();
    assert_eq!(
        state.tenants["acme"].location.file,
        PathBuf::from("tenants/customers/acme.yml")
    );
}

#[test]
fn a_tenant_file_holds_no_other_document() {
    let errors = errors(&[
        ("plans.yaml", PLANS),
        ("acme.yaml", &format!("{ACME}---\n{PLANS}")),
    ]);
    // the extra plans also duplicate those of plans.yaml
    let others: Vec<_> = errors
        .iter()
        .filter(|error| error.contains("a tenant file holds exactly one document"))
        .collect();
    assert_eq!(others.len(), 2, "{errors:#?}");
    assert!(others[0].starts_with("tenants/acme.yaml:7:1: a tenant file holds exactly one document, but this file has a `Plan` document besides its `Tenant`"));
}

#[test]
fn duplicate_tenant_ids_name_both_files() {
    assert_one(
        &errors(&[("plans.yaml", PLANS), ("acme.yaml", ACME), ("old/acme.yml", ACME)]),
        "tenants/old/acme.yml:3:5: id: duplicate tenant id `acme`: `tenants/acme.yaml` declares it too",
    );
}

#[test]
fn name_is_required_non_empty_and_bounded() {
    assert_one(
        &tenant_errors("apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nplan: pro\n"),
        "tenants/acme.yaml:1:1: name: missing required field `name`",
    );
    assert_one(
        &tenant_errors("apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: '  '\nplan: pro\n"),
        "tenants/acme.yaml:4:7: name: must not be empty",
    );
    let long = "x".repeat(201);
    assert_one(
        &tenant_errors(&format!(
            "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: {long}\nplan: pro\n"
        )),
        "name: must be at most 200 characters, found 201",
    );
    let longest = "é".repeat(200);
    assert_eq!(
        tenant(&format!(
            "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: {longest}\nplan: pro\n"
        ))
        .name,
        longest
    );
}

#[test]
fn plan_is_required_and_must_exist() {
    assert_one(
        &tenant_errors("apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: Acme\n"),
        "tenants/acme.yaml:1:1: plan: missing required field `plan`",
    );
    assert_one(
        &tenant_errors("apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: Acme\nplan: prp\n"),
        "tenants/acme.yaml:5:7: plan: unknown plan `prp`\n  hint: did you mean `pro`? known plans: `pro`, `trial`",
    );
    assert_one(
        &errors(&[("acme.yaml", ACME)]),
        "plan: unknown plan `pro`\n  hint: no `Plan` document was found",
    );
    // When a plans file cannot be read, the hint says the plan may be there.
    let found = errors(&[
        ("plans.yaml", "kind: Plan\nname: [pro\n"),
        ("acme.yaml", ACME),
    ]);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].ends_with("no `Plan` document was found; declare one with `kind: Plan`; some documents could not be read and may declare it"), "{}", found[0]);
}

#[test]
fn suspension_rules() {
    assert_one(
        &tenant_errors(&format!("{ACME}state: suspended\n")),
        "tenants/acme.yaml:6:8: state: `state: suspended` requires `suspension.reason`\n  hint: add `suspension: { reason: \"...\" }`",
    );
    assert_one(
        &tenant_errors(&format!("{ACME}suspension: {{ reason: late }}\n")),
        "tenants/acme.yaml:6:1: suspension: `suspension` is only allowed when `state` is `suspended`, not `active`\n  hint: remove `suspension`, or set `state: suspended`",
    );
    assert_one(
        &tenant_errors(&format!(
            "{ACME}state: deleted\nsuspension: {{ reason: late }}\n"
        )),
        "not `deleted`",
    );
    assert_one(
        &tenant_errors(&format!("{ACME}state: suspended\nsuspension: {{}}\n")),
        "tenants/acme.yaml:7:13: suspension.reason: missing required field `reason`",
    );
    assert_one(
        &tenant_errors(&format!(
            "{ACME}state: suspended\nsuspension: {{ reason: \"\" }}\n"
        )),
        "suspension.reason: must not be empty",
    );
    assert_one(
        &tenant_errors(&format!("{ACME}state: suspended\nsuspension: overdue\n")),
        "suspension: expected a mapping, found the string \"overdue\"",
    );
}

#[test]
fn config_model_and_features_rules() {
    assert_one(
        &tenant_errors(&format!("{ACME}config: {{ model: \"\" }}\n")),
        "config.model: must not be empty",
    );
    assert_one(
        &tenant_errors(&format!(
            "{ACME}config: {{ features: {{ Web-Search: true }} }}\n"
        )),
        "tenants/acme.yaml:6:23: config.features.Web-Search: invalid feature name `Web-Search`",
    );
    assert_one(
        &tenant_errors(&format!("{ACME}config: {{ features: [rag] }}\n")),
        "config.features: expected a mapping, found a sequence",
    );
    assert_one(
        &tenant_errors(&format!("{ACME}config: gpt-4o\n")),
        "config: expected a mapping, found the string \"gpt-4o\"",
    );
    assert_one(
        &tenant_errors(&format!("{ACME}config:\n")),
        "config: expected a mapping, found null\n  hint: an empty value is null in YAML",
    );
}

// ---- plan and settings rules ----

#[test]
fn plan_rules() {
    let plan = |body: &str| format!("apiVersion: tenantctl/v1\nkind: Plan\n{body}");
    assert_one(
        &errors(&[("plans.yaml", &plan("config: {}\n"))]),
        "tenants/plans.yaml:1:1: name: missing required field `name`",
    );
    assert_one(
        &errors(&[("plans.yaml", &plan("name: Gold Plan\n"))]),
        "tenants/plans.yaml:3:7: name: invalid plan name `Gold Plan`",
    );
    assert_one(
        &errors(&[("plans.yaml", &plan("name: gold\ndescription: 5\n"))]),
        "description: expected a string, found 5",
    );
    assert_one(
        &errors(&[(
            "plans.yaml",
            &plan("name: gold\nconfig: { max_tokens: 0 }\n"),
        )]),
        "config.max_tokens: expected an integer from 1 to 1000000, found 0",
    );
    // every config key is optional in a plan
    let state = load(&[("plans/gold.yaml", &plan("name: gold-2026\n"))]).unwrap();
    assert_eq!(state.plans["gold-2026"].config, PartialConfig::default());
}

#[test]
fn duplicate_plan_names_name_both_locations() {
    assert_one(
        &errors(&[("plans.yaml", PLANS), ("more/pro.yaml", "apiVersion: tenantctl/v1\nkind: Plan\nname: pro\n")]),
        // `more/pro.yaml` sorts before `plans.yaml`, so it is the first declaration
        "tenants/plans.yaml:10:1: name: duplicate plan `pro`: it is also defined at tenants/more/pro.yaml:1:1",
    );
}

#[test]
fn at_most_one_settings_document() {
    let settings = "apiVersion: tenantctl/v1\nkind: Settings\nretention_days: 14\n";
    assert_one(
        &errors(&[("a.yaml", settings), ("b.yaml", settings)]),
        "tenants/b.yaml:1:1: only one `Settings` document is allowed; the first is at tenants/a.yaml:1:1",
    );
    assert_one(
        &errors(&[(
            "a.yaml",
            "apiVersion: tenantctl/v1\nkind: Settings\nretention_days: -1\n",
        )]),
        "retention_days: expected a non-negative integer, found -1",
    );
}

// ---- merge errors ----

#[test]
fn incomplete_effective_config_is_reported_at_the_plan() {
    let plans = "apiVersion: tenantctl/v1\nkind: Plan\nname: bare\nconfig: { max_tokens: 100 }\n";
    let acme = "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: Acme\nplan: bare\n";
    assert_one(
        &errors(&[("plans.yaml", plans), ("acme.yaml", acme)]),
        "tenants/acme.yaml:5:7: plan: the effective config has no `model`, `rate_limit_per_minute`: neither plan `bare` nor this tenant's `config` sets it\n  hint: set it in plan `bare` (at tenants/plans.yaml:1:1) or under this tenant's `config`",
    );
    // the tenant can complete it
    let acme = format!("{acme}config: {{ model: m, rate_limit_per_minute: 1 }}\n");
    assert!(load(&[("plans.yaml", plans), ("acme.yaml", &acme)]).is_ok());
}

#[test]
fn merge_errors_are_not_repeated_for_broken_plans() {
    let plans = "apiVersion: tenantctl/v1\nkind: Plan\nname: bare\nconfig: { model: 5, max_tokens: 1, rate_limit_per_minute: 1 }\n";
    let acme = "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: Acme\nplan: bare\n";
    assert_one(
        &errors(&[("plans.yaml", plans), ("acme.yaml", acme)]),
        "config.model: expected a string, found 5",
    );
}

// ---- fingerprint ----

#[test]
fn fingerprint_changes_iff_a_loaded_file_changes() {
    let fingerprint = |files: &[(&str, &str)]| load(files).unwrap().fingerprint;
    let base = fingerprint(&[("plans.yaml", PLANS), ("acme.yaml", ACME)]);
    assert_eq!(
        base,
        fingerprint(&[("acme.yaml", ACME), ("plans.yaml", PLANS)])
    );
    let edited = format!("{ACME}# a comment\n");
    assert_ne!(
        base,
        fingerprint(&[("plans.yaml", PLANS), ("acme.yaml", &edited)])
    );
    assert_ne!(
        base,
        fingerprint(&[
            ("plans.yaml", PLANS),
            ("acme.yaml", ACME),
            ("empty.yaml", "")
        ])
    );
    assert_ne!(
        base,
        fingerprint(&[("plans.yaml", PLANS), ("acme.yml", ACME)])
    );
}

// ---- the directory walk ----

fn write(dir: &Path, relative: &str, text: &str) {
    let path = dir.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn load_errors(dir: &Path) -> Vec<String> {
    load_dir(dir)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn load_dir_reads_yaml_recursively_and_ignores_hidden_and_other_files() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    write(dir, "plans.yaml", PLANS);
    write(dir, "customers/acme.yml", ACME);
    write(dir, "README.md", "not yaml: [");
    write(dir, "acme.yaml.bak", "not yaml: [");
    write(dir, ".hidden.yaml", "not yaml: [");
    write(dir, ".git/config.yaml", "not yaml: [");
    write(dir, "customers/.draft/x.yaml", "not yaml: [");
    let state = load_dir(dir).unwrap();
    assert_eq!(state.dir, dir);
    assert_eq!(state.tenants.len(), 1);
    assert_eq!(
        state.tenants["acme"].location.file,
        dir.join("customers/acme.yml")
    );
    let sources = walk::read_sources(dir).0;
    let relatives: Vec<_> = sources
        .iter()
        .map(|source| source.relative.clone())
        .collect();
    assert_eq!(
        relatives,
        vec![
            PathBuf::from("customers/acme.yml"),
            PathBuf::from("plans.yaml")
        ]
    );
    // the fingerprint of load_dir is the one of the same sources
    assert_eq!(
        state.fingerprint,
        parse_sources(dir, sources).unwrap().fingerprint
    );
}

#[test]
fn load_dir_fingerprint_changes_when_a_file_changes() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    write(dir, "plans.yaml", PLANS);
    write(dir, "acme.yaml", ACME);
    let before = load_dir(dir).unwrap().fingerprint;
    assert_eq!(before, load_dir(dir).unwrap().fingerprint);
    write(dir, "notes.txt", "ignored files do not count");
    assert_eq!(before, load_dir(dir).unwrap().fingerprint);
    write(dir, "acme.yaml", &format!("{ACME}protected: true\n"));
    assert_ne!(before, load_dir(dir).unwrap().fingerprint);
}

#[test]
fn missing_directory_is_an_error() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("nope");
    let errors = load_dir(&missing).unwrap_err();
    assert_eq!(
        errors.to_string(),
        format!(
            "{0}: directory does not exist\n1 error in {0}",
            missing.display()
        )
    );
    write(temp.path(), "file.yaml", "a: b\n");
    assert_eq!(
        load_errors(&temp.path().join("file.yaml")),
        vec![format!(
            "{}: not a directory",
            temp.path().join("file.yaml").display()
        )]
    );
}

#[test]
fn non_utf8_files_are_errors_and_other_files_are_still_checked() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    write(dir, "plans.yaml", PLANS);
    fs::write(
        dir.join("acme.yaml"),
        b"apiVersion: tenantctl/v1\nname: Acme \xff\n",
    )
    .unwrap();
    write(
        dir,
        "globex.yaml",
        "apiVersion: tenantctl/v1\nkind: Tenant\nid: globex\n",
    );
    let errors = load_errors(dir);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_eq!(
        errors[0],
        format!(
            "{}:2:12: file is not valid UTF-8\n  hint: save the file as UTF-8",
            dir.join("acme.yaml").display()
        )
    );
    assert!(errors[1].contains("globex.yaml:1:1: name: missing required field `name`"));
    assert!(errors[2].contains("globex.yaml:1:1: plan: missing required field `plan`"));
}

#[cfg(unix)]
#[test]
fn broken_symlinks_are_errors() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    write(dir, "plans.yaml", PLANS);
    std::os::unix::fs::symlink("gone.yaml", dir.join("acme.yaml")).unwrap();
    // a broken link that would not be loaded anyway is ignored
    std::os::unix::fs::symlink("gone.txt", dir.join("notes.txt")).unwrap();
    assert_eq!(
        load_errors(dir),
        vec![format!(
            "{}: broken symlink: its target `gone.yaml` does not exist",
            dir.join("acme.yaml").display()
        )]
    );
}

#[cfg(unix)]
#[test]
fn symlinks_inside_the_directory_are_followed_like_a_configmap_mount() {
    use std::os::unix::fs::symlink;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    // The layout kubelet gives a mounted ConfigMap.
    write(dir, "..2026_01_01_00_00_00.000/plans.yaml", PLANS);
    write(dir, "..2026_01_01_00_00_00.000/acme.yaml", ACME);
    symlink("..2026_01_01_00_00_00.000", dir.join("..data")).unwrap();
    symlink("..data/plans.yaml", dir.join("plans.yaml")).unwrap();
    symlink("..data/acme.yaml", dir.join("acme.yaml")).unwrap();
    // A symlinked folder inside the directory is followed too.
    write(
        dir,
        "..2026_01_01_00_00_00.000/more/globex.yaml",
        &ACME.replace("acme", "globex"),
    );
    symlink("..data/more", dir.join("more")).unwrap();
    let state = load_dir(dir).unwrap();
    assert_eq!(state.tenants.keys().collect::<Vec<_>>(), ["acme", "globex"]);
    assert_eq!(state.tenants["acme"].location.file, dir.join("acme.yaml"));
    assert_eq!(
        state.tenants["globex"].location.file,
        dir.join("more/globex.yaml")
    );
}

#[cfg(unix)]
#[test]
fn symlinks_leading_outside_the_directory_are_errors() {
    use std::os::unix::fs::symlink;
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "acme.yaml", ACME);
    write(
        outside.path(),
        "folder/globex.yaml",
        &ACME.replace("acme", "globex"),
    );
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    write(dir, "plans.yaml", PLANS);
    symlink(outside.path().join("acme.yaml"), dir.join("acme.yaml")).unwrap();
    symlink(outside.path().join("folder"), dir.join("folder")).unwrap();
    // a link to a non-YAML file outside is ignored like any non-YAML file
    symlink("/etc/hostname", dir.join("hostname")).unwrap();
    let errors = load_errors(dir);
    let outside_root = fs::canonicalize(outside.path()).unwrap();
    assert_eq!(
        errors,
        vec![
            format!(
                "{}: symlink leads outside `{}`, to `{}`\n  hint: copy the file into the directory, or point the link at a file inside it",
                dir.join("acme.yaml").display(),
                dir.display(),
                outside_root.join("acme.yaml").display()
            ),
            format!(
                "{}: symlink leads outside `{}`, to `{}`\n  hint: copy the file into the directory, or point the link at a file inside it",
                dir.join("folder").display(),
                dir.display(),
                outside_root.join("folder").display()
            ),
        ]
    );
}

#[cfg(unix)]
#[test]
fn symlinked_folder_cycles_are_errors() {
    use std::os::unix::fs::symlink;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    write(dir, "plans.yaml", PLANS);
    fs::create_dir(dir.join("sub")).unwrap();
    symlink("..", dir.join("sub/loop")).unwrap();
    let errors = load_errors(dir);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("sub/loop: symlinked folder leads back to a folder that contains it")
    );
}

// ---- hostile files: limits and NUL ----

const ALIAS_HINT: &str = "\n  hint: tenant and plan files hold a few dozen values; look for an anchor (`&name`) repeated many times through aliases (`*name`)";

/// Four lines that are 13,582 nodes once aliases are expanded (the anchors' own copies
/// included): seven such documents fit in a file, the eighth crosses its 100,000.
fn laughs() -> String {
    let ten = |name: &str| vec![format!("*{name}"); 10].join(", ");
    format!(
        "a: &a [{}]\nb: &b [{}]\nc: &c [{}]\nd: [{}]\n",
        ["x"; 10].join(", "),
        ten("a"),
        ten("b"),
        ten("c")
    )
}

/// `count` copies of [`laughs`], one document each.
fn laughing_documents(count: usize) -> String {
    vec![laughs(); count].join("---\n")
}

/// The two errors of a [`laughs`] document, which is no `Tenant`, `Plan` or `Settings`.
fn laughs_errors(file: &str, line: usize) -> [String; 2] {
    [
        format!("tenants/{file}:{line}:1: apiVersion: missing required field `apiVersion`\n  hint: add `apiVersion: tenantctl/v1`"),
        format!("tenants/{file}:{line}:1: kind: missing required field `kind`\n  hint: add `kind:` with one of `Tenant`, `Plan`, `Settings`"),
    ]
}

#[test]
fn a_multi_document_alias_bomb_stops_where_the_file_crosses_its_node_limit() {
    // Each document is well under 100,000 nodes; fifty of them (13 KB) used to build 600,000.
    let found = errors(&[("plans.yaml", &laughing_documents(50))]);
    // Seven documents are read and checked; the eighth (from line 36) crosses the limit at its
    // third `*c`, and nothing after that is read.
    let mut expected: Vec<String> = (0..7)
        .flat_map(|index| laughs_errors("plans.yaml", 1 + 5 * index))
        .collect();
    expected.push(format!(
        "tenants/plans.yaml:39:13: file has more than 100,000 nodes once aliases are expanded{ALIAS_HINT}"
    ));
    assert_eq!(found, expected);
}

#[test]
fn a_bomb_split_over_many_files_stops_where_the_directory_crosses_its_node_limit() {
    // Thirty files of 95,074 nodes each: every one is under the limit of a file, and together
    // they are over the 2,000,000 of a directory, crossed in the 22nd (`f21.yaml`).
    let bomb = laughing_documents(7);
    let names: Vec<String> = (0..30).map(|index| format!("f{index:02}.yaml")).collect();
    let mut files: Vec<(&str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), bomb.as_str()))
        .collect();
    // A tenant on an unknown plan after the crossing: its file is not read, and the rules across
    // files do not run, so no error is made up about it.
    files.push((
        "zz.yaml",
        "apiVersion: tenantctl/v1\nkind: Tenant\nid: zz\nname: Z\nplan: gold\n",
    ));
    let found = errors(&files);
    assert_eq!(found.len(), 21 * 14 + 1, "{:#?}", &found[found.len() - 3..]);
    assert_eq!(found[0], laughs_errors("f00.yaml", 1)[0]);
    assert_eq!(
        found.last().unwrap(),
        "tenants/f21.yaml:4:5: the files of the directory have more than 2,000,000 nodes once aliases are expanded; this file crosses the limit and the files after it were not checked\n  hint: a directory of 10,000 tenants is far below it; look for files that repeat anchors many times through aliases, or that do not belong to the desired state"
    );
}

#[test]
fn text_copied_by_aliases_is_limited_too() {
    // 5,000 aliases are few nodes, but each copies 1,000 bytes: the 4,193rd crosses 4 MiB.
    let text = format!(
        "s: &s \"{}\"\nl: [{}]\n",
        "x".repeat(1000),
        vec!["*s"; 5000].join(", ")
    );
    assert_eq!(
        errors(&[("plans.yaml", &text)]),
        vec![format!(
            "tenants/plans.yaml:2:16773: file has more than 4 MiB of text once aliases are expanded{ALIAS_HINT}"
        )]
    );
}

#[test]
fn a_file_has_at_most_1000_documents() {
    // Empty documents count: each is a few bytes of work for the parser.
    assert!(load(&[("empty.yaml", &"---\n".repeat(1000))]).is_ok());
    // 999 empty documents, then the two plans (the first one in the 999th document).
    let state = load(&[("plans.yaml", &format!("{}{PLANS}", "---\n".repeat(999)))]).unwrap();
    assert_eq!(state.plans.len(), 2);
    // One more, and the second plan, from line 1,009, is the 1,001st document.
    assert_eq!(
        errors(&[("plans.yaml", &format!("{}{PLANS}", "---\n".repeat(1000)))]),
        vec!["tenants/plans.yaml:1009:1: file has more than 1,000 documents\n  hint: a plans file holds one document per plan; split it into several files"]
    );
}

#[test]
fn too_many_errors_stop_the_check_with_an_error_saying_so() {
    // A document with an error for each of its 10,005 keys.
    let keys: String = (0..10_005).map(|index| format!("k{index}: 1\n")).collect();
    let found = errors(&[
        ("plans.yaml", PLANS),
        ("acme.yaml", &format!("{ACME}{keys}")),
    ]);
    assert_eq!(found.len(), 10_001);
    assert_eq!(
        found[0],
        "tenants/acme.yaml: more than 10,000 errors; checking stopped at this file\n  hint: fix the errors shown and run again to see the rest"
    );
    assert!(found[1].starts_with("tenants/acme.yaml:6:1: k0: unknown field `k0`"));
}

#[test]
fn long_values_are_cut_in_error_messages() {
    // A message quotes at most 80 characters of a name or value, so that errors stay readable
    // and ten thousand of them cannot each hold a large part of a file.
    let key = format!("k{}", "z".repeat(999));
    let cut = format!("k{}…", "z".repeat(79));
    assert_one(
        &tenant_errors(&format!("{ACME}? {key}\n: 1\n")),
        &format!("tenants/acme.yaml:6:3: {cut}: unknown field `{cut}`\n  hint: the fields of"),
    );
    let long = "9".repeat(1000);
    assert_one(
        &tenant_errors(&format!("{ACME}config:\n  max_tokens: \"{long}\"\n")),
        &format!(
            "tenants/acme.yaml:7:15: config.max_tokens: expected a positive integer, found the string \"{}…\" (1,000 characters)\n  hint: remove the quotes",
            "9".repeat(80)
        ),
    );
}

#[test]
fn the_hint_of_an_unknown_plan_lists_twenty_plans_at_most() {
    let plans: String = (0..25)
        .map(|index| {
            format!("---\napiVersion: tenantctl/v1\nkind: Plan\nname: p{index:02}\nconfig: {{ model: m, max_tokens: 1, rate_limit_per_minute: 1 }}\n")
        })
        .collect();
    let found = errors(&[("plans.yaml", &plans), ("acme.yaml", ACME)]);
    assert_one(&found, "unknown plan `pro`");
    assert!(
        found[0].ends_with("known plans: `p00`, `p01`, `p02`, `p03`, `p04`, `p05`, `p06`, `p07`, `p08`, `p09`, `p10`, `p11`, `p12`, `p13`, `p14`, `p15`, `p16`, `p17`, `p18`, `p19`, and 5 more"),
        "{}",
        found[0]
    );
}

const NUL_HINT: &str = "\n  hint: remove it; a file saved as UTF-16 has one after every ASCII character: save it as UTF-8";

#[test]
fn a_raw_nul_byte_is_an_error_at_its_position_and_hides_nothing() {
    // The parser used to stop at the NUL and load the tenant unprotected.
    let text = format!("{ACME}\0\nprotected: true\n");
    assert_eq!(
        tenant_errors(&text),
        vec![format!(
            "tenants/acme.yaml:6:1: file contains a NUL byte{NUL_HINT}"
        )]
    );
    let text = ACME.replace("Acme Corp", "Acme\0Corp");
    assert_eq!(
        tenant_errors(&text),
        vec![format!(
            "tenants/acme.yaml:4:11: file contains a NUL byte{NUL_HINT}"
        )]
    );
    // The file is not read at all: a tenant on one of its plans is told it may be there.
    let plans = format!("{PLANS}\0");
    assert_eq!(
        errors(&[("plans.yaml", &plans), ("acme.yaml", ACME)]),
        vec![
            "tenants/acme.yaml:5:7: plan: unknown plan `pro`\n  hint: no `Plan` document was found; declare one with `kind: Plan`; some documents could not be read and may declare it".to_string(),
            format!("tenants/plans.yaml:21:1: file contains a NUL byte{NUL_HINT}"),
        ]
    );
}

#[test]
fn a_nul_byte_read_from_disk_is_an_error_too() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    write(dir, "plans.yaml", PLANS);
    write(dir, "acme.yaml", &format!("{ACME}\0\nprotected: true\n"));
    // `a: b` saved as UTF-16, with a byte-order mark, which is not UTF-8...
    fs::write(dir.join("globex.yaml"), b"\xff\xfea\0:\0 \0b\0\n\0").unwrap();
    assert_eq!(
        load_errors(dir),
        vec![
            format!(
                "{}:6:1: file contains a NUL byte{NUL_HINT}",
                dir.join("acme.yaml").display()
            ),
            format!(
                "{}:1:1: file is not valid UTF-8\n  hint: save the file as UTF-8",
                dir.join("globex.yaml").display()
            ),
        ]
    );
    // ...and without one: valid UTF-8, with a NUL after every letter.
    fs::write(dir.join("globex.yaml"), b"a\0:\0 \0b\0\n\0").unwrap();
    assert_eq!(
        load_errors(dir)[1],
        format!(
            "{}:1:2: file contains a NUL byte{NUL_HINT}",
            dir.join("globex.yaml").display()
        )
    );
}

#[test]
fn a_nul_character_from_an_escape_is_an_error_naming_the_field() {
    let nul = |field: &str, position: &str| {
        format!("tenants/acme.yaml:{position}: {field}: contains a NUL character (`\\0`), which PostgreSQL cannot store\n  hint: remove the `\\0` escape from the value")
    };
    assert_eq!(
        tenant_errors(&ACME.replace("Acme Corp", "\"Acme\\0Corp\"")),
        vec![nul("name", "4:7")]
    );
    // Every escape of U+0000 is one.
    for escape in ["\\x00", "\\u0000", "\\U00000000"] {
        assert_eq!(
            tenant_errors(&ACME.replace("Acme Corp", &format!("\"Acme{escape}\""))),
            vec![nul("name", "4:7")]
        );
    }
    assert_eq!(
        tenant_errors(&format!(
            "{ACME}state: suspended\nsuspension:\n  reason: \"unpaid\\0\"\n"
        )),
        vec![nul("suspension.reason", "8:11")]
    );
    assert_eq!(
        tenant_errors(&format!("{ACME}config:\n  model: \"gpt-4o\\0\"\n")),
        vec![nul("config.model", "7:10")]
    );
    let plans = PLANS.replace("for paying teams", "\"for paying\\0 teams\"");
    assert_eq!(
        errors(&[("plans.yaml", &plans)]),
        vec![nul("description", "13:14").replace("acme.yaml", "plans.yaml")]
    );
    // In single quotes `\0` is a backslash and a zero, which any database stores.
    assert_eq!(
        tenant(&ACME.replace("Acme Corp", "'Acme\\0'")).name,
        "Acme\\0"
    );
}

/// `count` lines of 80 bytes.
fn comment_lines(count: usize) -> String {
    format!("# {}\n", "y".repeat(77)).repeat(count)
}

#[test]
fn a_file_over_1_mib_is_an_error_at_the_line_where_it_crosses_the_limit() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    write(dir, "plans.yaml", PLANS);
    write(dir, "acme.yaml", ACME);
    // 13,107 lines of 80 bytes and one of 16: exactly 1 MiB, which is allowed.
    let one_mib = format!("{}# fifteen bytes\n", comment_lines(13_107));
    assert_eq!(one_mib.len(), 1 << 20);
    write(dir, "notes.yaml", &one_mib);
    assert_eq!(load_dir(dir).unwrap().tenants.len(), 1);
    // The first byte past the limit is on line 13,108, after 16 bytes of it.
    write(dir, "notes.yaml", &comment_lines(20_000));
    assert_eq!(
        load_errors(dir),
        vec![format!(
            "{}:13108:17: file is larger than 1 MiB\n  hint: tenant and plan files are a few KB; split a large plans file into several files",
            dir.join("notes.yaml").display()
        )]
    );
}

#[test]
fn a_directory_over_32_mib_stops_being_read_at_the_file_that_crosses_the_limit() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    // 33 files of 1,000,000 bytes are under 32 MiB (33,554,432 bytes); the 34th crosses it at
    // its byte 554,432, on line 6,931. The files after it (`plans.yaml` too) are not read, and
    // the files before it are not checked either: a tenant among them would be on a plan that
    // is unknown only because `plans.yaml` was not read.
    let file = comment_lines(12_500);
    for index in 0..40 {
        write(dir, &format!("big{index:02}.yaml"), &file);
    }
    write(dir, "plans.yaml", PLANS);
    assert_eq!(
        load_errors(dir),
        vec![format!(
            "{}:6931:33: the YAML files of `{}` hold more than 32 MiB; this file crosses the limit, and neither it nor the files after it were read\n  hint: a directory of 10,000 tenants is about 10 MB; remove the files that do not belong to the desired state",
            dir.join("big33.yaml").display(),
            dir.display()
        )]
    );
}

// ---- auth ----

#[test]
fn auth_is_read_and_merged_over_the_plans_defaults() {
    let plans = "\
apiVersion: tenantctl/v1
kind: Plan
name: pro
config: { model: gpt-4o, max_tokens: 4000, rate_limit_per_minute: 600 }
auth:
  login: true
  connection_limit: 5
  api_keys: [{ name: default }]
";
    let state = load(&[
        ("plans.yaml", plans),
        (
            "acme.yaml",
            "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: Acme\nplan: pro\n\
             auth:\n  connection_limit: 10\n  api_keys:\n    - name: web\n    - name: batch\n      expires: 2027-06-01\n  rotate: \"2026-12-01\"\n",
        ),
        ("globex.yaml", "apiVersion: tenantctl/v1\nkind: Tenant\nid: globex\nname: Globex\nplan: pro\n"),
    ])
    .unwrap();
    let acme = state.tenants["acme"].auth.clone().unwrap();
    assert!(acme.login, "from the plan");
    assert_eq!(acme.connection_limit, Some(10), "the tenant's wins");
    let names: Vec<&str> = acme.api_keys.iter().map(|key| key.name.as_str()).collect();
    assert_eq!(
        names,
        ["web", "batch"],
        "the tenant's list replaces the plan's"
    );
    assert_eq!(
        acme.api_keys[1].expires,
        chrono::NaiveDate::from_ymd_opt(2027, 6, 1)
    );
    assert_eq!(acme.api_keys[1].location.line, 10);
    assert_eq!(acme.rotate.as_deref(), Some("2026-12-01"));
    let globex = state.tenants["globex"].auth.clone().unwrap();
    assert_eq!(globex.api_keys[0].name, "default");
    // Neither plan nor file: no auth at all, as before.
    assert_eq!(tenant(ACME).auth, None);
}

#[test]
fn bad_auth_is_a_clear_error() {
    let with = |auth: &str| tenant_errors(&format!("{ACME}auth:\n{auth}"));
    assert_one(
        &with("  logins: true\n"),
        "tenants/acme.yaml:7:3: auth.logins: unknown field `logins`",
    );
    assert_one(
        &with("  connection_limit: -5\n"),
        "auth.connection_limit: expected a non-negative integer, found -5",
    );
    assert_one(
        &with("  api_keys:\n    - name: web\n    - name: web\n"),
        "tenants/acme.yaml:9:13: auth.api_keys[1].name: duplicate API key name `web`, first declared at line 8",
    );
    assert_one(
        &with("  api_keys:\n    - name: Web\n"),
        "auth.api_keys[0].name: invalid API key name `Web`",
    );
    assert_one(
        &with("  api_keys:\n    - name: web\n      expires: next year\n"),
        "auth.api_keys[0].expires: expected a date `YYYY-MM-DD`",
    );
    assert_one(
        &with("  api_keys:\n    - name: web\n      expires: 2027-02-30\n"),
        "expected a date `YYYY-MM-DD`",
    );
    assert_one(
        &with("  api_keys: web\n"),
        "auth.api_keys: expected a sequence",
    );
}

#[test]
fn auth_settings_are_read_and_checked() {
    let settings = |auth: &str| format!("apiVersion: tenantctl/v1\nkind: Settings\nauth:\n{auth}");
    let state = load(&[
        ("plans.yaml", PLANS),
        (
            "settings.yaml",
            &settings("  app_role: app_api\n  rotation_grace: 2h\n"),
        ),
    ])
    .unwrap();
    assert_eq!(state.settings.auth.app_role.as_deref(), Some("app_api"));
    assert_eq!(
        state.settings.auth.rotation_grace,
        std::time::Duration::from_secs(7200)
    );
    let defaults = load(&[("plans.yaml", PLANS)]).unwrap();
    assert_eq!(
        defaults.settings.auth.rotation_grace,
        DEFAULT_ROTATION_GRACE
    );
    for (auth, expected) in [
        (
            "  app_role: \"app\\\"; DROP ROLE x; --\"\n",
            "auth.app_role: invalid role name",
        ),
        (
            "  app_role: pg_monitor\n",
            "auth.app_role: invalid role name `pg_monitor`",
        ),
        (
            "  rotation_grace: 24\n",
            "auth.rotation_grace: expected a duration up to 90 days",
        ),
        (
            "  rotation_grace: 100d\n",
            "auth.rotation_grace: expected a duration up to 90 days",
        ),
    ] {
        assert_one(
            &errors(&[("plans.yaml", PLANS), ("settings.yaml", &settings(auth))]),
            expected,
        );
    }
}
