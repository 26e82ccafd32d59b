//! Taking back what a tenant's Chroma steps and backup did when its transaction rolls back.

use super::RunError;
use crate::backend::chroma::ChromaClient;
use serde_json::{Map, Value};
use uuid::Uuid;

/// A step done outside the tenant's transaction, and how to take it back.
pub(super) enum Compensation {
    /// Delete the collection, but only if it still carries this incarnation's uid: never
    /// someone else's collection of the same name.
    DeleteCreatedCollection { name: String, uid: Uuid },
    /// Put the previous metadata back.
    RestoreMetadata {
        name: String,
        id: String,
        previous: Map<String, Value>,
    },
    /// Remove a backup written by this run (its soft delete rolled back).
    RemoveBackup {
        store: crate::backup::BackupStore,
        location: crate::backup::BackupLocation,
    },
}

impl Compensation {
    /// What was done, for the report.
    pub(super) fn done(&self) -> String {
        match self {
            Compensation::DeleteCreatedCollection { name, .. } => {
                format!("collection `{name}` created by this run is gone")
            }
            Compensation::RestoreMetadata { name, .. } => {
                format!("metadata of collection `{name}` restored")
            }
            Compensation::RemoveBackup { store, location } => {
                format!(
                    "backup `{}` written by this run removed",
                    store.show(location)
                )
            }
        }
    }

    /// What was attempted, for a failure message.
    pub(super) fn attempt(&self) -> String {
        match self {
            Compensation::DeleteCreatedCollection { name, .. } => {
                format!("delete collection `{name}` if this run created it")
            }
            Compensation::RestoreMetadata { name, .. } => {
                format!("restore the metadata of collection `{name}`")
            }
            Compensation::RemoveBackup { store, location } => {
                format!(
                    "remove backup `{}` written by this run",
                    store.show(location)
                )
            }
        }
    }

    pub(super) async fn run(&self, chroma: &ChromaClient) -> Result<(), RunError> {
        match self {
            Compensation::DeleteCreatedCollection { name, uid } => {
                match chroma.get_collection(name).await? {
                    Some(collection)
                        if collection.metadata_str("tenant_uid") == Some(&uid.to_string()) =>
                    {
                        chroma.delete_collection(name).await?;
                    }
                    // Never created (the request failed before reaching the server), or not ours.
                    _ => {}
                }
                Ok(())
            }
            Compensation::RestoreMetadata { id, previous, .. } => {
                chroma.update_metadata(id, previous).await?;
                Ok(())
            }
            Compensation::RemoveBackup { store, location } => {
                store.remove(location).await?;
                Ok(())
            }
        }
    }
}
