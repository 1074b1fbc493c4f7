//! `--onApplyError`: what an applier does with a row version the target refuses for good.

/// What an applier does when a window fails with an error that is the data's or the target's
/// fault (a constraint, a value or a type the target refuses; never a connection, serialization
/// or lock error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnApplyError {
    /// The partition stops until the target or the data changes; `wharfctl status` names the
    /// table, key, SQLSTATE and message of the refused row.
    #[default]
    Halt,
    /// The refused row versions go to the staging schema's `quarantine` table in the window's
    /// transaction, with every later version of their keys; the rest of the window commits.
    Quarantine,
}

impl std::str::FromStr for OnApplyError {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "halt" => Ok(OnApplyError::Halt),
            "quarantine" => Ok(OnApplyError::Quarantine),
            other => Err(format!("{other:?} is not an apply-error policy: halt or quarantine")),
        }
    }
}

impl std::fmt::Display for OnApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OnApplyError::Halt => "halt",
            OnApplyError::Quarantine => "quarantine",
        })
    }
}
