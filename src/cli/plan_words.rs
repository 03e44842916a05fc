//! Plan items in words, as `jaros plan` and `jaros plan --diff` both print
//! them: durations, approval rules.

pub(super) fn ms(ms: u64) -> String {
    match ms {
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

/// What an approval rule applies to beyond its type (`paths …; to …;
/// when …`), `None` when it holds every decision of its type.
pub(super) fn approval_scope(a: &crate::plan::ApprovalRule) -> Option<String> {
    let mut scope: Vec<String> = Vec::new();
    if !a.paths.is_empty() {
        scope.push(format!("paths {}", a.paths.join(", ")));
    }
    if !a.targets.is_empty() {
        scope.push(format!("to {}", a.targets.join(", ")));
    }
    if let Some(when) = &a.when {
        scope.push(format!("when {when}"));
    }
    (!scope.is_empty()).then(|| scope.join("; "))
}

/// An approval rule in words, as `jaros plan --diff` prints it:
/// `refund when amount > 100 (approvers demo-operator; expires 24h)`.
pub(super) fn approval_words(a: &crate::plan::ApprovalRule) -> String {
    let scope = approval_scope(a)
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    format!(
        "{}{scope} (approvers {}; expires {})",
        a.decision_type,
        a.approvers.join(", "),
        ms(a.expires_ms)
    )
}
