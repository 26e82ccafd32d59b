//! Connection strings: parsed by tokio-postgres after the TLS keys are taken out, and shown
//! rebuilt from their parts, never as typed (a password may hide anywhere in the text).

use super::PostgresError;

/// The forms a connection string may take, for error messages.
const EXPECTED_FORMS: &str = "expected `postgres://user:password@host:port/database` or libpq key=value pairs such as `host=db user=app dbname=saas`";

/// A parsed connection string: what to connect with, and what may be shown of it.
pub struct Target {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: crate::backend::tls::TlsSettings,
    /// Built from the parsed parts, never from the input: user, hosts, ports, database and
    /// the TLS mode; the password (and every other option) is left out.
    pub(super) shown: String,
}

impl Target {
    /// Parses a URL or a key=value string with tokio-postgres's own parser (after taking out
    /// `sslmode` and `sslrootcert`, which tenantctl handles with libpq's meanings).
    ///
    /// # Errors
    /// [`PostgresError::InvalidUrl`], which shows at most the scheme and the host of the input
    /// and says what form is expected.
    pub fn parse(input: &str) -> Result<Target, PostgresError> {
        let invalid = |reason: String| PostgresError::InvalidUrl {
            shown: unparsed_display(input),
            reason,
        };
        let tls = crate::backend::tls::split(input)
            .map_err(|reason| invalid(format!("{reason}; {EXPECTED_FORMS}")))?;
        let config: tokio_postgres::Config =
            tls.rest.parse().map_err(|error: tokio_postgres::Error| {
                // The driver's words may quote a fragment of the input; only an option name is
                // kept, and only when it is a plain word.
                let text = error.to_string();
                let option = text.split('`').nth(1).filter(|name| {
                    !name.is_empty()
                        && name.len() <= 32
                        && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                });
                invalid(match option {
                    Some(name) if text.contains("invalid value") => {
                        format!("the value of `{name}` is not valid; {EXPECTED_FORMS}")
                    }
                    Some(name) if text.contains("unknown option") => {
                        format!("`{name}` is not a connection option; {EXPECTED_FORMS}")
                    }
                    _ => format!("it cannot be parsed; {EXPECTED_FORMS}"),
                })
            })?;
        let shown = parsed_display(&config, &tls);
        Ok(Target { config, tls, shown })
    }

    /// The connection string as it may be printed.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// The URL a tenant's role connects with: the hosts, ports, database and TLS settings of
/// tenantctl's own connection, with the role and its password. Given to the secrets sink only.
pub fn tenant_url(
    connection_string: &str,
    role: &str,
    password: &str,
) -> Result<String, PostgresError> {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    use tokio_postgres::config::Host;
    let target = Target::parse(connection_string)?;
    let config = &target.config;
    let ports = config.get_ports();
    let mut hosts = Vec::new();
    let mut sockets = Vec::new();
    for (index, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
        match host {
            Host::Tcp(name) if name.contains(':') => hosts.push(format!("[{name}]:{port}")),
            Host::Tcp(name) => hosts.push(format!("{name}:{port}")),
            Host::Unix(path) => sockets.push(path.display().to_string()),
        }
    }
    let mut url = format!(
        "postgres://{}:{}@{}",
        utf8_percent_encode(role, NON_ALPHANUMERIC),
        utf8_percent_encode(password, NON_ALPHANUMERIC),
        hosts.join(",")
    );
    if let Some(database) = config.get_dbname() {
        url.push('/');
        url.push_str(&utf8_percent_encode(database, NON_ALPHANUMERIC).to_string());
    }
    let mut query = Vec::new();
    for socket in sockets {
        query.push(format!(
            "host={}",
            utf8_percent_encode(&socket, NON_ALPHANUMERIC)
        ));
    }
    if target.tls.mode != crate::backend::tls::SslMode::Prefer {
        query.push(format!("sslmode={}", target.tls.mode.as_str()));
    }
    if let Some(root) = &target.tls.root_cert {
        query.push(format!(
            "sslrootcert={}",
            utf8_percent_encode(&root.display().to_string(), NON_ALPHANUMERIC)
        ));
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    Ok(url)
}

/// Builds tenant roles' URLs from tenantctl's own connection string, which it holds as a
/// [`crate::secrets::Secret`] (it may carry tenantctl's password).
#[derive(Clone)]
pub struct TenantUrls {
    pub(super) connection_string: crate::secrets::Secret,
}

impl TenantUrls {
    /// The URL `role` connects with, `password` in it.
    ///
    /// # Errors
    /// Never in practice: the connection string parsed when the session was opened.
    pub fn for_role(&self, role: &str, password: &str) -> Result<String, PostgresError> {
        tenant_url(self.connection_string.expose(), role, password)
    }
}

/// What may be shown of a connection string: its parsed parts without the password, or, when
/// it does not parse, at most its scheme and host.
pub fn redact_url(input: &str) -> String {
    match Target::parse(input) {
        Ok(target) => target.shown,
        Err(_) => unparsed_display(input),
    }
}

fn parsed_display(
    config: &tokio_postgres::Config,
    tls: &crate::backend::tls::TlsSettings,
) -> String {
    use tokio_postgres::config::Host;
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let name = match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => format!("[{}]", path.display()),
            };
            let port = ports.get(index).or(ports.first()).copied().unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    let mut shown = String::from("postgres://");
    if let Some(user) = config.get_user() {
        shown.push_str(user);
        shown.push('@');
    }
    shown.push_str(&hosts.join(","));
    if let Some(database) = config.get_dbname() {
        shown.push('/');
        shown.push_str(database);
    }
    let mut query = Vec::new();
    if tls.mode != crate::backend::tls::SslMode::Prefer {
        query.push(format!("sslmode={}", tls.mode.as_str()));
    }
    if let Some(root) = &tls.root_cert {
        query.push(format!("sslrootcert={}", root.display()));
    }
    if !query.is_empty() {
        shown.push('?');
        shown.push_str(&query.join("&"));
    }
    if config.get_password().is_some() {
        shown.push_str(" (password hidden)");
    }
    shown
}

/// At most the scheme and host of a string that did not parse: the host is what follows the
/// last `@` (a password may hold `@`, `/` or `:` unencoded), up to the next `:`, `/`, `?` or
/// `,`. A key=value string shows nothing.
fn unparsed_display(input: &str) -> String {
    match crate::backend::scheme_and_host(input) {
        Some(shown) => format!("`{shown}`"),
        None => "(a key=value connection string, not shown)".to_string(),
    }
}
