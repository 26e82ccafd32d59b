//! Final backups of soft-deleted tenants (being written).
