//! Writers of plans and apply reports: human text (terraform's visual language), JSON (stable,
//! versioned) and Markdown (pull-request comments).
//! Pure: they take data and return strings, so every format is snapshot-tested.

pub mod json;
pub mod markdown;
pub mod text;
pub mod view;

/// Where the plan was made, for its header. URLs carry no password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanContext {
    pub dir: String,
    pub database: String,
    pub chroma: String,
}

/// Terminal styling. Off unless stdout is a terminal and `NO_COLOR` is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Color only on a terminal, never with `NO_COLOR` set to anything non-empty.
    pub fn detect(is_terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Style {
            color: is_terminal && !no_color,
        }
    }

    pub(crate) fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
mod tests;

// Number and text formatting shared by the renderers.

/// What happens to the application role of `tenantctl.authenticate`, a sentence each.
pub(crate) fn app_role_lines(change: &crate::plan::AppRoleChange) -> Vec<String> {
    let mut lines = Vec::new();
    if let (Some(role), true) = (&change.role, change.grant) {
        lines.push(format!(
            "`{role}` may call tenantctl.authenticate (and read nothing else)"
        ));
    }
    for role in &change.revoke {
        lines.push(format!(
            "`{role}` may no longer call tenantctl.authenticate"
        ));
    }
    lines
}

/// `1204` -> `1,204`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `18.2 MB`.
pub(crate) fn bytes(value: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut size = value as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

pub(crate) fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

pub(crate) fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}
