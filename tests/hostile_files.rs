//! Hostile files through the real binary: `validate` refuses them with the file and line, and
//! stays small while doing it. No server is needed: `validate` reads only the directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `tenantctl validate --dir <dir>`, with no variable of the developer's shell in the way.
fn validate(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantctl"))
        .args(["validate", "--dir"])
        .arg(dir)
        .env_remove("TENANTCTL_DIR")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("tenantctl runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Four lines that are 13,582 nodes once aliases are expanded.
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

#[test]
fn a_multi_document_alias_bomb_is_refused_at_the_line_where_it_crosses_the_limit() {
    let temp = tempfile::tempdir().unwrap();
    // 2,000 documents (500 KB), each under 100,000 nodes: 27 million nodes in all, which used
    // to take gigabytes before failing or aborting.
    std::fs::write(
        temp.path().join("plans.yaml"),
        vec![laughs(); 2_000].join("---\n"),
    )
    .unwrap();
    let output = validate(temp.path());
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let file = temp.path().join("plans.yaml");
    assert!(
        stderr.contains(&format!(
            "error: {}:39:13: file has more than 100,000 nodes once aliases are expanded\n  hint: ",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.ends_with("; nothing was changed\n"), "{stderr}");
}

#[test]
fn a_nul_byte_is_refused_at_its_position() {
    let temp = tempfile::tempdir().unwrap();
    std::fs::write(
        temp.path().join("plans.yaml"),
        "apiVersion: tenantctl/v1\nkind: Plan\nname: pro\nconfig: { model: gpt-4o, max_tokens: 1000, rate_limit_per_minute: 60 }\n",
    )
    .unwrap();
    // Everything after the NUL used to be ignored: the tenant loaded unprotected.
    std::fs::write(
        temp.path().join("acme.yaml"),
        "apiVersion: tenantctl/v1\nkind: Tenant\nid: acme\nname: Acme\nplan: pro\n\0\nprotected: true\n",
    )
    .unwrap();
    let output = validate(temp.path());
    let stderr = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: {}:6:1: file contains a NUL byte\n  hint: remove it; a file saved as UTF-16 has one after every ASCII character: save it as UTF-8\n1 error in `{}`; nothing was changed\n",
            temp.path().join("acme.yaml").display(),
            temp.path().display()
        )
    );
}
