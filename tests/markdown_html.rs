//! The pull-request comments as GitHub shows them: every Markdown snapshot of the renderer
//! (`crates/core/src/render/markdown/snapshots/`, the mixed plan, the lifecycle plan, onboarding
//! plans of 300 and 2,500 new tenants, hostile values, ...) and the comment of a plan made
//! against the real servers (`tests/snapshots/`) is rendered with cmark-gfm, the
//! renderer GitHub uses (PyPI `cmarkgfm`, installed by `scripts/test.sh`), with GitHub's
//! extensions (tables, autolinks, tag filter), and the HTML is checked:
//!
//! - no markup of the comment's own (`<details>`, `<summary>`, `<code>`, `<b>`, `<br>`) shows as
//!   text outside code: it would mean a block broke;
//! - every `<details>` is closed, and never before it opens;
//! - no link at all: no URL (the header's database and Chroma URLs) is autolinked;
//! - outside code, no `#123` (an issue link on GitHub) and no `@name` (a mention).

use std::path::Path;
use std::process::Command;

const CHECK: &str = r#"
import html.parser, json, re, sys
import cmarkgfm
from cmarkgfm.cmark import Options

OURS = ("<details", "</details", "<summary", "</summary", "<code", "</code", "<b>", "</b>", "<br")

class Facts(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.code = 0
        self.depth = 0
        self.details = 0
        self.misnested = False
        self.links = []
        self.shown_markup = []
        self.references = []
    def handle_starttag(self, tag, attrs):
        if tag in ("code", "pre"):
            self.code += 1
        if tag == "details":
            self.depth += 1
            self.details += 1
        if tag == "a":
            self.links.append(dict(attrs).get("href", ""))
    def handle_endtag(self, tag):
        if tag in ("code", "pre"):
            self.code -= 1
        if tag == "details":
            self.depth -= 1
            if self.depth < 0:
                self.misnested = True
    def handle_data(self, data):
        if self.code:
            return
        for ours in OURS:
            if ours in data:
                self.shown_markup.append(data.strip()[:120])
        for match in re.finditer(r"(?<![\w&])(#\d+|@[A-Za-z][\w-]*)", data):
            self.references.append(match.group(0))

report = {}
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8").read()
    # The snapshot's own header: `---`, metadata, `---`.
    body = text.split("\n---\n", 1)[1]
    rendered = cmarkgfm.github_flavored_markdown_to_html(body, options=Options.CMARK_OPT_UNSAFE)
    facts = Facts()
    facts.feed(rendered)
    facts.close()
    report[path] = {
        "details": facts.details,
        "open_at_end": facts.depth,
        "misnested": facts.misnested,
        "links": facts.links,
        "shown_markup": facts.shown_markup,
        "references": facts.references,
        "html_bytes": len(rendered),
    }
print(json.dumps(report))
"#;

#[test]
fn every_markdown_snapshot_renders_as_github_shows_it() {
    let python = std::env::var("TENANTCTL_TEST_CI_PYTHON").unwrap_or_else(|_| {
        panic!("TENANTCTL_TEST_CI_PYTHON is not set: run the tests with `bash scripts/test.sh`, which installs cmarkgfm")
    });
    let folder =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/core/src/render/markdown/snapshots");
    let mut snapshots: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "snap")
        })
        .map(|path| path.display().to_string())
        .collect();
    // And the comment of a plan made against the real servers (tests/snapshots.rs).
    snapshots.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots/snapshots__plan_markdown.snap")
            .display()
            .to_string(),
    );
    snapshots.sort();
    for expected in [
        "markdown_plan_mixed",
        "markdown_plan_lifecycle",
        "markdown_onboarding_of_300_puts_risk_first",
        "markdown_onboarding_of_2500_puts_risk_first",
        "markdown_values_cannot_break_the_structure",
    ] {
        assert!(
            snapshots
                .iter()
                .any(|path| path.ends_with(&format!("__{expected}.snap"))),
            "no snapshot of {expected} in {}",
            folder.display()
        );
    }
    let output = Command::new(&python)
        .arg("-c")
        .arg(CHECK)
        .args(&snapshots)
        .output()
        .unwrap_or_else(|error| panic!("{python}: {error}"));
    assert!(
        output.status.success(),
        "cmarkgfm check failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut with_blocks = 0;
    for path in &snapshots {
        let facts = &report[path];
        let name = Path::new(path).file_name().unwrap().to_string_lossy();
        assert!(
            facts["html_bytes"].as_u64().unwrap() > 0,
            "{name}: nothing rendered"
        );
        assert_eq!(
            facts["open_at_end"], 0,
            "{name}: a <details> is not closed: {facts}"
        );
        assert_eq!(
            facts["misnested"], false,
            "{name}: </details> before <details>: {facts}"
        );
        assert_eq!(
            facts["links"],
            serde_json::json!([]),
            "{name}: links (an autolinked URL?): {facts}"
        );
        assert_eq!(
            facts["shown_markup"],
            serde_json::json!([]),
            "{name}: the comment's own markup shows as text: {facts}"
        );
        assert_eq!(
            facts["references"],
            serde_json::json!([]),
            "{name}: an issue reference or a mention outside code: {facts}"
        );
        if facts["details"].as_u64().unwrap() > 0 {
            with_blocks += 1;
        }
    }
    assert!(
        with_blocks >= 5,
        "{with_blocks} snapshots with <details>: {report}"
    );
}
