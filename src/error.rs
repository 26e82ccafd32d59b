//! Exit codes as data, and errors that were already reported to the user.

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

/// An error with a complete, pre-formatted message (e.g. the count after every validation error
/// was listed): `main` prints it verbatim instead of as `error: ...`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);
