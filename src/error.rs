//! Exit codes as data, and the error a user reads.

/// What the process exits with. Documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success; for `plan`, also "changes present" unless `--detailed-exitcode` is given.
    Success,
    /// Usage error, invalid files, unreachable server, conflict, refused or failed apply.
    Failure,
    /// `plan --detailed-exitcode` found changes (terraform's meaning).
    Changes,
    /// `apply PLANFILE` refused a saved plan that no longer matches the files or the live
    /// state, or was already applied; nothing was changed and a new plan is the remedy.
    Stale,
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Changes => 2,
            Exit::Stale => 3,
        }
    }
}

/// An error for the person at the terminal: a message and an optional hint. `main` prints it
/// once, as `error: <message>` and `  hint: <hint>`; a closing line (after every validation
/// error was listed, say) is printed as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserError {
    pub message: String,
    pub hint: Option<String>,
    /// Printed verbatim, without `error: `.
    pub closing: bool,
}

impl UserError {
    pub fn new(message: impl Into<String>) -> Self {
        UserError {
            message: message.into(),
            hint: None,
            closing: false,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A closing line after errors already printed, e.g. `4 errors in `tenants`; nothing was
    /// changed`.
    pub fn closing(line: impl Into<String>) -> Self {
        UserError {
            message: line.into(),
            hint: None,
            closing: true,
        }
    }
}

impl std::fmt::Display for UserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.closing {
            return f.write_str(&self.message);
        }
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UserError {}
