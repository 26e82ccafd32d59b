//! The JSON plan and apply report: stable field names, versioned by `format_version`.

use crate::plan::{Plan, Summary, FORMAT_VERSION};
use crate::report::ApplyReport;
use serde::Serialize;

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: u32,
    tool_version: &'static str,
    #[serde(flatten)]
    plan: &'a Plan,
    summary: Summary,
    has_changes: bool,
}

/// The plan as pretty JSON.
pub fn plan(plan: &Plan) -> String {
    let document = JsonPlan {
        format_version: FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION"),
        plan,
        summary: plan.summary(),
        has_changes: !plan.is_empty(),
    };
    serde_json::to_string_pretty(&document).expect("plan serializes")
}

#[derive(Serialize)]
struct JsonReport<'a> {
    format_version: u32,
    tool_version: &'static str,
    #[serde(flatten)]
    report: &'a ApplyReport,
    applied: usize,
    failed: usize,
}

/// An apply report as pretty JSON.
pub fn report(report: &ApplyReport) -> String {
    let document = JsonReport {
        format_version: FORMAT_VERSION,
        tool_version: env!("CARGO_PKG_VERSION"),
        report,
        applied: report.applied(),
        failed: report.tenants.len() - report.applied(),
    };
    serde_json::to_string_pretty(&document).expect("report serializes")
}
