//! Read-only inspection of a log directory: verification and dumps.
