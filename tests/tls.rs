//! TLS to a real PostgreSQL that accepts only encrypted connections, with libpq's `sslmode`
//! meanings. Certificates are made for the test with the `openssl` command.

mod common;

use common::scratch_postgres::ScratchPostgres;
use common::TestEnv;
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command is installed (scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test CA and a server certificate for `localhost` and 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=tenantctl test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    dir.join("ca.pem")
}

/// A server that listens on 127.0.0.1 and 127.0.0.2 (the latter is not in its certificate) and
/// accepts only TLS connections.
fn tls_only_server() -> (ScratchPostgres, PathBuf, tempfile::TempDir) {
    let certificates = tempfile::tempdir().unwrap();
    let root = make_certificates(certificates.path());
    let source = certificates.path().to_path_buf();
    let server = ScratchPostgres::start_with(
        |data| {
            std::fs::copy(source.join("server.pem"), data.join("server.crt")).unwrap();
            std::fs::copy(source.join("server.key"), data.join("server.key")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            // Plain TCP is refused: only `hostssl` lines.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all 127.0.0.2/32 trust\n",
            )
            .unwrap();
        },
        "-c ssl=on -c listen_addresses=127.0.0.1,127.0.0.2",
    );
    (server, root, certificates)
}

fn plan_with(env: &TestEnv, url: &str) -> common::Output {
    env.tenantctl_with(&["plan"], &[("DATABASE_URL", url)])
}

#[test]
fn sslmode_has_libpq_meanings_against_a_tls_only_server() {
    let env = TestEnv::new("tls");
    env.tenant("acme", "pro", "");
    let (server, root, _certificates) = tls_only_server();
    let port = server.port;
    let root = root.display().to_string();
    let url =
        |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/postgres?{query}");

    // Without TLS the server refuses us.
    let refused = plan_with(&env, &url("127.0.0.1", "sslmode=disable")).expect_code(1);
    assert!(
        refused.stderr.contains("no encryption"),
        "{}",
        refused.stderr
    );

    // The default (prefer) and require encrypt without checking the certificate, as libpq does.
    for query in ["application_name=tls_default", "sslmode=require"] {
        let out = plan_with(&env, &url("127.0.0.1", query)).expect_code(0);
        assert!(out.stdout.contains("+ acme"), "{}", out.stdout);
    }

    // verify-full: the chain must lead to the given root and the name must match.
    plan_with(
        &env,
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={root}"),
        ),
    )
    .expect_code(0);
    plan_with(
        &env,
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={root}"),
        ),
    )
    .expect_code(0);
    let unknown_ca = plan_with(&env, &url("127.0.0.1", "sslmode=verify-full")).expect_code(1);
    assert!(
        unknown_ca
            .stderr
            .contains("invalid peer certificate: UnknownIssuer"),
        "{}",
        unknown_ca.stderr
    );
    let wrong_name = plan_with(
        &env,
        &url(
            "127.0.0.2",
            &format!("sslmode=verify-full&sslrootcert={root}"),
        ),
    )
    .expect_code(1);
    assert!(
        wrong_name
            .stderr
            .contains("certificate not valid for name \"127.0.0.2\""),
        "{}",
        wrong_name.stderr
    );

    // verify-ca checks the chain but not the name.
    plan_with(
        &env,
        &url(
            "127.0.0.2",
            &format!("sslmode=verify-ca&sslrootcert={root}"),
        ),
    )
    .expect_code(0);

    // The password never shows, TLS settings or not.
    let secret = plan_with(
        &env,
        &format!("postgres://postgres:tls-secret@127.0.0.1:{port}/postgres?sslmode=disable"),
    )
    .expect_code(1);
    assert!(!secret.stderr.contains("tls-secret"), "{}", secret.stderr);
}

#[test]
fn apply_over_tls_is_encrypted_end_to_end() {
    let env = TestEnv::new("tls_apply");
    env.tenant("acme", "pro", "");
    let (server, root, _certificates) = tls_only_server();
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        server.port,
        root.display()
    );
    env.tenantctl_with(&["apply", "--auto-approve"], &[("DATABASE_URL", &url)])
        .expect_code(0);
    let again = plan_with(&env, &url).expect_code(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
}
