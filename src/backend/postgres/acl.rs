//! Reading an `aclitem` as PostgreSQL prints it (`grantee=privileges/grantor`), so that the
//! grants on thousands of relations come back as one row per grantee rather than one row per
//! privilege (`aclexplode`): the plan's largest result set, five times smaller.

/// The grantee and privileges of one `aclitem` text, privileges named as `aclexplode` names
/// them (`SELECT`, `INSERT`, ...); the grantee `PUBLIC` for the empty name.
///
/// # Errors
/// Text that is not an `aclitem`, described.
pub fn parse_item(text: &str) -> Result<(String, Vec<&'static str>), String> {
    let (grantee, rest) = if let Some(quoted) = text.strip_prefix('"') {
        // A quoted name: `""` is a quote, the next lone `"` ends it.
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        let mut end = None;
        while let Some((index, character)) = chars.next() {
            if character == '"' {
                if quoted[index + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    end = Some(index + 1);
                    break;
                }
            } else {
                name.push(character);
            }
        }
        let end = end.ok_or_else(|| format!("unterminated name in aclitem `{text}`"))?;
        (name, &quoted[end..])
    } else {
        let equals = text
            .find('=')
            .ok_or_else(|| format!("no `=` in aclitem `{text}`"))?;
        (text[..equals].to_string(), &text[equals..])
    };
    let rest = rest
        .strip_prefix('=')
        .ok_or_else(|| format!("no `=` after the grantee in aclitem `{text}`"))?;
    let letters = rest.split('/').next().unwrap_or_default();
    let mut privileges = Vec::new();
    for letter in letters.chars().filter(|c| *c != '*') {
        privileges.push(
            privilege(letter).ok_or_else(|| {
                format!("unknown privilege letter `{letter}` in aclitem `{text}`")
            })?,
        );
    }
    let grantee = if grantee.is_empty() {
        "PUBLIC".to_string()
    } else {
        grantee
    };
    Ok((grantee, privileges))
}

/// The letters of `src/include/utils/acl.h` (`ACL_*_CHR`), as `aclexplode` names them.
fn privilege(letter: char) -> Option<&'static str> {
    Some(match letter {
        'a' => "INSERT",
        'r' => "SELECT",
        'w' => "UPDATE",
        'd' => "DELETE",
        'D' => "TRUNCATE",
        'x' => "REFERENCES",
        't' => "TRIGGER",
        'X' => "EXECUTE",
        'U' => "USAGE",
        'C' => "CREATE",
        'T' => "TEMPORARY",
        'c' => "CONNECT",
        's' => "SET",
        'A' => "ALTER SYSTEM",
        'm' => "MAINTAIN",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_as_postgres_prints_them() {
        assert_eq!(
            parse_item("postgres=arwdDxt/postgres").unwrap(),
            (
                "postgres".to_string(),
                vec![
                    "INSERT",
                    "SELECT",
                    "UPDATE",
                    "DELETE",
                    "TRUNCATE",
                    "REFERENCES",
                    "TRIGGER"
                ]
            )
        );
        assert_eq!(
            parse_item("=r/postgres").unwrap(),
            ("PUBLIC".to_string(), vec!["SELECT"])
        );
        // Grant options are privileges all the same.
        assert_eq!(
            parse_item("app=r*w/postgres").unwrap(),
            ("app".to_string(), vec!["SELECT", "UPDATE"])
        );
        // Names PostgreSQL quotes: spaces, `=`, `/` and doubled quotes inside.
        assert_eq!(
            parse_item(r#""odd = ""role""/x"=U/postgres"#).unwrap(),
            (r#"odd = "role"/x"#.to_string(), vec!["USAGE"])
        );
        assert_eq!(
            parse_item(r#"tenant_a=arwd/"the owner""#).unwrap().0,
            "tenant_a"
        );
    }

    #[test]
    fn what_is_not_an_aclitem_is_an_error() {
        for text in ["", "postgres", r#""open=r/postgres"#, "x=rq/postgres"] {
            assert!(parse_item(text).is_err(), "{text}");
        }
    }
}
