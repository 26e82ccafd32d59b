//! The CI examples in `examples/` parse, have the structure their platforms need, and every
//! `tenantctl` command in them is accepted by the real command line. No servers needed.

use clap::{CommandFactory, Parser};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use tenantctl::cli::Cli;
use yaml_rust2::{Yaml, YamlLoader};

const GITHUB: &str = "examples/github-actions.yml";
const GITLAB: &str = "examples/gitlab-ci.yml";
const README: &str = "examples/README.md";

/// Keys of a GitLab CI file that are not jobs.
const GITLAB_GLOBAL_KEYS: &[&str] = &[
    "stages",
    "variables",
    "workflow",
    "default",
    "include",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

fn path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(path(relative)).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

fn load(relative: &str) -> Yaml {
    let mut documents = YamlLoader::load_from_str(&read(relative))
        .unwrap_or_else(|error| panic!("{relative} is not YAML: {error}"));
    assert_eq!(documents.len(), 1, "{relative}: one YAML document");
    documents.remove(0)
}

fn key<'a>(map: &'a Yaml, name: &str) -> &'a Yaml {
    &map[name]
}

fn entries(map: &Yaml) -> Vec<(String, &Yaml)> {
    map.as_hash()
        .map(|hash| {
            hash.iter()
                .filter_map(|(k, v)| k.as_str().map(|k| (k.to_string(), v)))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(text) => vec![text.clone()],
        Yaml::Array(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// `(job, shell script)` of every `run:` of the GitHub workflow.
fn github_scripts(workflow: &Yaml) -> Vec<(String, String)> {
    let mut scripts = Vec::new();
    for (job, definition) in entries(key(workflow, "jobs")) {
        for step in key(definition, "steps").as_vec().into_iter().flatten() {
            if let Some(run) = step["run"].as_str() {
                scripts.push((job.clone(), run.to_string()));
            }
        }
    }
    scripts
}

fn gitlab_jobs(pipeline: &Yaml) -> Vec<(String, &Yaml)> {
    entries(pipeline)
        .into_iter()
        .filter(|(name, _)| !name.starts_with('.') && !GITLAB_GLOBAL_KEYS.contains(&name.as_str()))
        .collect()
}

/// `(job, shell script)` of every script line of the GitLab pipeline.
fn gitlab_scripts(pipeline: &Yaml) -> Vec<(String, String)> {
    let mut scripts = Vec::new();
    for (job, definition) in gitlab_jobs(pipeline) {
        for field in ["before_script", "script", "after_script"] {
            for text in strings(&definition[field]) {
                scripts.push((job.clone(), text));
            }
        }
    }
    for field in ["before_script", "after_script"] {
        for text in strings(&pipeline["default"][field]) {
            scripts.push(("default".to_string(), text));
        }
    }
    scripts
}

/// A shell word or operator.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A word after quote removal; `expanded` if it contained a `$` expansion.
    Word { text: String, expanded: bool },
    /// `;`, `&&`, `||`, `|`, `&`, `>`, `(`, a newline, ...
    Operator(String),
}

/// Replaces GitHub expressions `${{ ... }}` (which may contain spaces) with `$EXPR`.
fn strip_expressions(script: &str) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push_str("$EXPR");
                rest = &rest[start + end + 2..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A small POSIX-shell tokenizer: quotes, backslash escapes and line continuations, comments,
/// and the control and redirection operators. Enough for CI scripts.
fn tokenize(script: &str) -> Vec<Token> {
    let script = strip_expressions(script);
    let chars: Vec<char> = script.chars().collect();
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut expanded = false;
    let mut i = 0;
    let finish =
        |tokens: &mut Vec<Token>, word: &mut String, in_word: &mut bool, expanded: &mut bool| {
            if *in_word {
                tokens.push(Token::Word {
                    text: std::mem::take(word),
                    expanded: *expanded,
                });
            }
            *in_word = false;
            *expanded = false;
        };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
            '\\' => {
                if let Some(&next) = chars.get(i + 1) {
                    word.push(next);
                }
                in_word = true;
                i += 2;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    word.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    if chars[i] == '$' {
                        expanded = true;
                    }
                    word.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ' ' | '\t' => {
                finish(&mut tokens, &mut word, &mut in_word, &mut expanded);
                i += 1;
            }
            '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                // `2>` and `2>&1`: a file descriptor number belongs to the redirection.
                if matches!(c, '<' | '>') && in_word && word.chars().all(|d| d.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                finish(&mut tokens, &mut word, &mut in_word, &mut expanded);
                let mut operator = c.to_string();
                if let Some(&next) = chars.get(i + 1) {
                    if (c == next && matches!(c, ';' | '&' | '|' | '>' | '<'))
                        || (c == '>' && next == '&')
                    {
                        operator.push(next);
                    }
                }
                i += operator.chars().count();
                tokens.push(Token::Operator(operator));
            }
            '$' => {
                expanded = true;
                in_word = true;
                word.push(c);
                i += 1;
            }
            _ => {
                in_word = true;
                word.push(c);
                i += 1;
            }
        }
    }
    finish(&mut tokens, &mut word, &mut in_word, &mut expanded);
    tokens
}

/// Shell keywords after which a command starts.
const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "time",
];

fn is_tenantctl(word: &str) -> bool {
    word == "tenantctl" || word.ends_with("/tenantctl")
}

/// The arguments of every `tenantctl` command in a script, program name first; expansions are
/// replaced by a placeholder and redirections and what follows an operator are dropped.
fn invocations(script: &str) -> Vec<Vec<String>> {
    let tokens = tokenize(script);
    let mut found = Vec::new();
    let mut at_command_start = true;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Operator(operator) => {
                at_command_start = !operator.starts_with('>') && !operator.starts_with('<');
                if !at_command_start {
                    i += 1; // the redirection's target
                }
                // after a redirection target the command goes on; good enough for CI scripts
            }
            Token::Word { text, .. } if at_command_start && KEYWORDS.contains(&text.as_str()) => {}
            Token::Word { text, .. }
                if at_command_start && text.contains('=') && !text.starts_with('-') =>
            {
                // `NAME=value command`: an assignment, the command may follow
            }
            Token::Word { text, .. } if at_command_start && is_tenantctl(text) => {
                let mut args = vec!["tenantctl".to_string()];
                i += 1;
                while let Some(Token::Word { text, expanded }) = tokens.get(i) {
                    args.push(if *expanded {
                        "placeholder".to_string()
                    } else {
                        text.clone()
                    });
                    i += 1;
                }
                found.push(args);
                at_command_start = false;
                continue;
            }
            Token::Word { .. } => at_command_start = false,
        }
        i += 1;
    }
    found
}

#[derive(Debug)]
struct Invocation {
    file: &'static str,
    job: String,
    args: Vec<String>,
    /// The whole script it came from.
    script: String,
}

impl Invocation {
    fn subcommand(&self) -> &str {
        self.args.get(1).map(String::as_str).unwrap_or("")
    }

    fn has(&self, flag: &str) -> bool {
        self.args
            .iter()
            .any(|arg| arg == flag || arg.starts_with(&format!("{flag}=")))
    }

    fn value(&self, flag: &str) -> Option<&str> {
        let prefix = format!("{flag}=");
        self.args.iter().enumerate().find_map(|(index, arg)| {
            if arg == flag {
                self.args.get(index + 1).map(String::as_str)
            } else {
                arg.strip_prefix(&prefix)
            }
        })
    }

    /// Positional arguments after the subcommand, using the real CLI to know which flags
    /// take a value.
    fn positionals(&self) -> Vec<&str> {
        let command = Cli::command();
        let sub = command
            .find_subcommand(self.subcommand())
            .unwrap_or_else(|| panic!("no subcommand `{}`", self.subcommand()));
        let mut positionals = Vec::new();
        let mut args = self.args.iter().skip(2);
        while let Some(arg) = args.next() {
            if let Some(long) = arg.strip_prefix("--") {
                let takes_value = sub
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long))
                    .is_some_and(|a| a.get_action().takes_values());
                if takes_value {
                    args.next();
                }
            } else {
                positionals.push(arg.as_str());
            }
        }
        positionals
    }
}

fn all_invocations() -> Vec<Invocation> {
    let mut all = Vec::new();
    let sources: [(&'static str, Vec<(String, String)>); 2] = [
        (GITHUB, github_scripts(&load(GITHUB))),
        (GITLAB, gitlab_scripts(&load(GITLAB))),
    ];
    for (file, scripts) in sources {
        for (job, script) in scripts {
            for args in invocations(&script) {
                all.push(Invocation {
                    file,
                    job: job.clone(),
                    args,
                    script: script.clone(),
                });
            }
        }
    }
    all
}

fn in_file<'a>(all: &'a [Invocation], file: &str) -> Vec<&'a Invocation> {
    all.iter().filter(|i| i.file == file).collect()
}

#[test]
fn the_shell_tokenizer_finds_tenantctl_commands() {
    let script = "set -e\n\
        code=0\n\
        tenantctl plan --detailed-exitcode \\\n  --out \"$PLAN\" --format markdown > plan.md || code=$?\n\
        echo \"tenantctl apply is not a command here\" # tenantctl show x\n\
        if target/release/tenantctl apply x.plan --auto-approve 2> err; then ./tenantctl show x.plan; fi\n\
        ENV=1 tenantctl validate --dir ${{ env.DIR }}; cp tenantctl /bin/tenantctl\n";
    assert_eq!(
        invocations(script),
        vec![
            vec![
                "tenantctl",
                "plan",
                "--detailed-exitcode",
                "--out",
                "placeholder",
                "--format",
                "markdown"
            ],
            vec!["tenantctl", "apply", "x.plan", "--auto-approve"],
            vec!["tenantctl", "show", "x.plan"],
            vec!["tenantctl", "validate", "--dir", "placeholder"],
        ]
    );
}

#[test]
fn github_workflow_has_the_structure_actions_needs() {
    let workflow = load(GITHUB);
    // yaml-rust2 reads the key `on` as the string "on" (YAML 1.2), not as `true`.
    let on = key(&workflow, "on");
    assert!(!on["pull_request"].is_badvalue(), "on.pull_request");
    assert!(
        strings(&on["pull_request"]["paths"])
            .iter()
            .any(|p| p.starts_with("tenants/")),
        "pull_request.paths covers the tenant files"
    );
    assert!(
        strings(&on["push"]["branches"]).contains(&"main".to_string()),
        "on.push.branches contains main"
    );

    let jobs = entries(key(&workflow, "jobs"));
    assert!(!jobs.is_empty(), "jobs");
    for (name, job) in &jobs {
        assert!(job["runs-on"].as_str().is_some(), "{name}: runs-on");
        let steps = job["steps"]
            .as_vec()
            .unwrap_or_else(|| panic!("{name}: steps"));
        assert!(!steps.is_empty(), "{name}: steps");
        for step in steps {
            let has_uses = step["uses"].as_str().is_some();
            let has_run = step["run"].as_str().is_some();
            assert!(
                has_uses != has_run,
                "{name}: a step has `uses` or `run`: {step:?}"
            );
        }
    }

    let plan = &workflow["jobs"]["plan"];
    assert_eq!(plan["permissions"]["pull-requests"].as_str(), Some("write"));
    let apply = &workflow["jobs"]["apply"];
    assert_eq!(apply["environment"].as_str(), Some("production"));
    assert!(apply["concurrency"]["group"].as_str().is_some());
    assert_eq!(
        apply["concurrency"]["cancel-in-progress"].as_bool(),
        Some(false)
    );
    for (job, name) in [("plan", "DATABASE_URL"), ("apply", "DATABASE_URL")] {
        let value = workflow["jobs"][job]["env"][name].as_str().unwrap_or("");
        assert!(
            value.contains("secrets.DATABASE_URL"),
            "{job}: {name} from a secret"
        );
    }
}

#[test]
fn github_actions_are_pinned_to_commit_hashes_with_their_version() {
    let text = read(GITHUB);
    let mut used = BTreeSet::new();
    for line in text.lines() {
        let Some(uses) = line
            .trim()
            .strip_prefix("uses:")
            .or_else(|| line.trim().strip_prefix("- uses:"))
        else {
            continue;
        };
        let (reference, comment) = uses.split_once('#').unwrap_or((uses, ""));
        let (action, hash) = reference
            .trim()
            .split_once('@')
            .unwrap_or_else(|| panic!("`{line}` is not pinned"));
        assert!(
            hash.len() == 40
                && hash
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "`{line}` is not pinned to a full commit hash"
        );
        let version = comment.trim().strip_prefix('v').unwrap_or_default();
        assert!(
            !version.is_empty()
                && version
                    .split('.')
                    .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit())),
            "`{line}` does not name its version in a comment (`# vX.Y.Z`)"
        );
        used.insert(action.to_string());
    }
    for action in [
        "actions/checkout",
        "actions/cache",
        "actions/upload-artifact",
        "actions/download-artifact",
        "actions/github-script",
        "aws-actions/configure-aws-credentials",
    ] {
        assert!(used.contains(action), "{action} is used");
    }
}

#[test]
fn github_jobs_get_least_privilege_and_no_expression_reaches_a_shell() {
    let workflow = load(GITHUB);
    // Nothing at the top: each job names what it needs.
    assert!(
        workflow["permissions"]
            .as_hash()
            .is_some_and(|map| map.is_empty()),
        "top-level permissions: {{}}"
    );
    for (name, job) in entries(&workflow["jobs"]) {
        let permissions = entries(&job["permissions"]);
        assert!(!permissions.is_empty(), "{name}: names its permissions");
        for (scope, level) in &permissions {
            let writes = level.as_str() == Some("write");
            assert!(
                !writes || ["pull-requests", "id-token"].contains(&scope.as_str()),
                "{name}: {scope}: write"
            );
        }
        for step in job["steps"].as_vec().into_iter().flatten() {
            if step["uses"]
                .as_str()
                .is_some_and(|uses| uses.starts_with("actions/checkout@"))
            {
                assert_eq!(
                    step["with"]["persist-credentials"].as_bool(),
                    Some(false),
                    "{name}: a checkout keeps its token: {step:?}"
                );
            }
            if let Some(script) = step["run"].as_str() {
                assert!(
                    !script.contains("${{"),
                    "{name}: an expression is expanded into a shell script:\n{script}"
                );
            }
        }
    }
    // The apply job runs only signed plans and keeps backups in the bucket.
    let apply = &workflow["jobs"]["apply"];
    for variable in ["TENANTCTL_PLAN_KEY", "TENANTCTL_BACKUP_DIR"] {
        assert!(
            apply["env"][variable].as_str().is_some(),
            "apply: {variable} is set"
        );
    }
    assert!(
        !read(GITHUB).contains("path: backups/"),
        "no backup as an artifact"
    );
}

/// The example pipelines pass the GitHub Actions static analyser (zizmor, every persona,
/// nothing at medium or above) and validate against GitHub's and GitLab's published schemas
/// (check-jsonschema ships both). `scripts/test.sh` installs both tools from PyPI.
#[test]
fn example_pipelines_pass_zizmor_and_their_schemas() {
    let tool = |variable: &str| {
        std::env::var(variable).unwrap_or_else(|_| {
            panic!("{variable} is not set: run the tests with `bash scripts/test.sh`, which installs the tool")
        })
    };
    let zizmor = tool("TENANTCTL_TEST_ZIZMOR");
    for persona in ["regular", "auditor"] {
        let output = Command::new(&zizmor)
            .args([
                "--offline",
                "--no-progress",
                "--persona",
                persona,
                "--min-severity",
                "medium",
            ])
            .arg(path(GITHUB))
            .output()
            .unwrap_or_else(|error| panic!("{zizmor}: {error}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("No findings to report"),
            "zizmor ({persona}) found problems in {GITHUB}:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let check = tool("TENANTCTL_TEST_CHECK_JSONSCHEMA");
    for (schema, file) in [
        ("vendor.github-workflows", GITHUB),
        ("vendor.gitlab-ci", GITLAB),
    ] {
        let output = Command::new(&check)
            .args(["--builtin-schema", schema])
            .arg(path(file))
            .output()
            .unwrap_or_else(|error| panic!("{check}: {error}"));
        assert!(
            output.status.success(),
            "{file} does not validate against {schema}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn github_plan_comment_updates_a_marked_comment() {
    let text = read(GITHUB);
    assert!(text.contains("<!-- tenantctl-plan -->"));
    assert!(text.contains("updateComment") && text.contains("createComment"));
    // the artifact the pull request uploads is the one the apply job downloads
    let workflow = load(GITHUB);
    let names = |job: &str, action: &str| -> Vec<String> {
        workflow["jobs"][job]["steps"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter(|step| step["uses"].as_str().is_some_and(|u| u.starts_with(action)))
            .filter_map(|step| step["with"]["name"].as_str().map(str::to_string))
            .collect()
    };
    let uploaded = names("plan", "actions/upload-artifact");
    let downloaded = names("apply", "actions/download-artifact");
    assert_eq!(uploaded, vec!["tenantctl-plan".to_string()]);
    assert_eq!(downloaded, uploaded);
    assert!(
        text.contains("name: 'tenantctl-plan'"),
        "the lookup searches the same name"
    );
}

#[test]
fn gitlab_pipeline_has_the_structure_gitlab_needs() {
    let pipeline = load(GITLAB);
    let stages = strings(key(&pipeline, "stages"));
    assert_eq!(stages, ["validate", "plan", "apply"]);
    let jobs = gitlab_jobs(&pipeline);
    assert!(!jobs.is_empty());
    for (name, job) in &jobs {
        let stage = job["stage"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: stage"));
        assert!(
            stages.iter().any(|s| s == stage),
            "{name}: unknown stage `{stage}`"
        );
        assert!(!strings(&job["script"]).is_empty(), "{name}: script");
        for need in strings(&job["needs"]) {
            assert!(
                jobs.iter().any(|(other, _)| *other == need),
                "{name}: needs `{need}`"
            );
        }
        assert!(
            !job["rules"].is_badvalue() || name == "validate",
            "{name}: rules"
        );
    }
    let apply = &pipeline["apply"];
    assert_eq!(
        apply["resource_group"].as_str(),
        Some("tenantctl-production")
    );
    assert_eq!(apply["environment"]["name"].as_str(), Some("production"));
    let rules = format!("{:?}", apply["rules"]);
    assert!(
        rules.contains("CI_DEFAULT_BRANCH"),
        "apply runs on the default branch"
    );
    let rules = format!("{:?}", pipeline["plan"]["rules"]);
    assert!(
        rules.contains("merge_request_event"),
        "plan runs for merge requests"
    );
    for job in ["plan", "apply"] {
        let artifacts = strings(&pipeline[job]["artifacts"]["paths"]);
        assert!(artifacts.contains(&"tenantctl.plan".to_string()), "{job}");
        assert!(artifacts.contains(&"plan.md".to_string()), "{job}");
        assert!(
            pipeline[job]["artifacts"]["expire_in"].as_str().is_some(),
            "{job}"
        );
    }
    let text = read(GITLAB);
    assert!(text.contains("GITLAB_TOKEN") && text.contains("/notes"));
    assert!(text.contains("<!-- tenantctl-plan -->"));
}

#[test]
fn every_tenantctl_command_is_accepted_by_the_cli() {
    let all = all_invocations();
    assert!(!all.is_empty());
    let mut errors = Vec::new();
    for invocation in &all {
        if let Err(error) = Cli::try_parse_from(&invocation.args) {
            if matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayVersion | clap::error::ErrorKind::DisplayHelp
            ) {
                continue;
            }
            errors.push(format!(
                "{} ({}): `{}`:\n{}",
                invocation.file,
                invocation.job,
                invocation.args.join(" "),
                error.render()
            ));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn both_examples_validate_plan_show_and_apply_a_saved_plan() {
    let all = all_invocations();
    for file in [GITHUB, GITLAB] {
        let these = in_file(&all, file);
        let commands: BTreeSet<&str> = these.iter().map(|i| i.subcommand()).collect();
        for command in ["validate", "plan", "show", "apply"] {
            assert!(
                commands.contains(command),
                "{file}: no `tenantctl {command}`"
            );
        }
        assert!(
            these.iter().any(|i| i.subcommand() == "plan"
                && i.has("--detailed-exitcode")
                && i.has("--out")
                && i.value("--format") == Some("markdown")),
            "{file}: no `plan --detailed-exitcode --out FILE --format markdown`"
        );
        assert!(
            these
                .iter()
                .any(|i| i.subcommand() == "apply" && !i.positionals().is_empty()),
            "{file}: no `apply PLANFILE`"
        );
    }
}

#[test]
fn commands_are_safe_to_run_without_a_terminal() {
    for invocation in all_invocations() {
        let shown = format!(
            "{} ({}): `{}`",
            invocation.file,
            invocation.job,
            invocation.args.join(" ")
        );
        match invocation.subcommand() {
            // without a terminal, a fresh apply refuses unless --auto-approve is given; a saved
            // plan was reviewed and applies without a prompt
            "apply" => assert!(
                invocation.has("--auto-approve") || !invocation.positionals().is_empty(),
                "{shown}"
            ),
            // exit code 2 is success with changes: the script must catch it, not let `-e` end it
            "plan" if invocation.has("--detailed-exitcode") => assert!(
                invocation.script.contains("|| code=$?"),
                "{shown}: exit code 2 is not caught"
            ),
            _ => {}
        }
        // a plan saved in one place and applied from another must agree on the file name
        if let Some(out) = invocation.value("--out") {
            assert_eq!(out, "tenantctl.plan", "{shown}");
        }
    }
}

#[test]
fn readme_documents_every_secret_and_variable() {
    let readme = read(README);
    let mut names = BTreeSet::new();
    let github = read(GITHUB);
    for marker in ["secrets.", "vars."] {
        for (index, _) in github.match_indices(marker) {
            let name: String = github[index + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
    }
    names.insert("GITLAB_TOKEN".to_string());
    for name in &names {
        assert!(
            readme.contains(name.as_str()),
            "{README} does not mention `{name}`"
        );
    }
    for topic in [
        "--max-deletes",
        "protected",
        "--detailed-exitcode",
        "resource_group",
    ] {
        assert!(
            readme.contains(topic),
            "{README} does not explain `{topic}`"
        );
    }
}

/// The scripts treat exit code 2 of `plan --detailed-exitcode` as "changes present": a usage
/// error or an unreachable server must never exit 2.
#[test]
fn errors_exit_1_so_they_cannot_pass_for_changes() {
    let binary = env!("CARGO_BIN_EXE_tenantctl");
    let usage = Command::new(binary)
        .args(["plan", "--detailed-exitcode", "--no-such-flag"])
        .output()
        .expect("tenantctl runs");
    assert_eq!(usage.status.code(), Some(1), "usage error");

    let dir = tempfile::tempdir().expect("temp dir");
    let unreachable = Command::new(binary)
        .current_dir(dir.path())
        .args(["plan", "--detailed-exitcode", "--out", "tenantctl.plan"])
        .arg("--dir")
        .arg(dir.path())
        .env(
            "DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none?connect_timeout=5",
        )
        .env("CHROMA_URL", "http://127.0.0.1:1")
        .output()
        .expect("tenantctl runs");
    assert_eq!(
        unreachable.status.code(),
        Some(1),
        "unreachable server: {}",
        String::from_utf8_lossy(&unreachable.stderr)
    );
    assert!(
        !dir.path().join("tenantctl.plan").exists(),
        "no plan saved on error"
    );

    for sub in ["validate", "plan", "apply", "show"] {
        let help = Command::new(binary)
            .args([sub, "--help"])
            .output()
            .expect("tenantctl runs");
        assert_eq!(help.status.code(), Some(0), "{sub} --help");
    }
}
