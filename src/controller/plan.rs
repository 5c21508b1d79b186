//! What a planner returns: the fields where the cloud differs from the spec, and the write (if
//! any) that makes it match. Shared by every kind that writes; messages and Events describe the
//! changes the same way for all of them.

/// One field whose cloud value differs from the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub from: String,
    pub to: String,
}

impl std::fmt::Display for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} from {} to {}", self.field, self.from, self.to)
    }
}

/// `a from x to y, b from ...`: how conditions and Events name what differs.
pub fn describe(changes: &[FieldChange]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What reconciling should do, decided from spec and observation alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<W> {
    /// Where the cloud differs from the spec.
    pub changes: Vec<FieldChange>,
    /// The write that makes it match; None under Observe or when nothing differs.
    pub write: Option<W>,
}

/// The cloud's value as a message shows it.
pub fn shown(value: Option<&str>) -> String {
    value.unwrap_or("(unset)").to_string()
}
