//! Markdown for pull-request comments (being written).

use super::PlanContext;
use crate::plan::Plan;

/// GitHub's limit on the body of an issue or pull-request comment.
pub const COMMENT_LIMIT: usize = 65_536;

/// The plan as a pull-request comment of at most [`COMMENT_LIMIT`] characters.
pub fn plan(plan: &Plan, context: &PlanContext) -> String {
    let _ = (plan, context);
    String::new()
}
