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
}

impl Exit {
    pub fn code(self) -> i32 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Changes => 2,
        }
    }
}

/// An error with a complete, pre-formatted message (e.g. the count after every validation error
/// was listed): `main` prints it verbatim instead of as `error: ...`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);
