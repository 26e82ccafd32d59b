//! Writers of plans and apply reports: human text (terraform's visual language) and JSON.
//! Pure: they take data and return strings, so every format is snapshot-tested.

pub mod json;
pub mod markdown;
pub mod text;

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
