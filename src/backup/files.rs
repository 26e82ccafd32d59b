//! The backup folder on disk: inventory, deletion at purge, removal of what an interrupted run
//! left, and the folder helpers of the export. Never follows a symbolic link below the root.

use super::{io_error, BackupError, BackupUsage, FOLDER_MODE, MANIFEST, TIMESTAMP_FORMAT};
use crate::observed::ObservedBackup;
use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Removes one backup folder written by [`export`] (compensation when the tenant's transaction
/// rolls back), then its `<uid>` and `<tenant>` parents if they became empty. A missing folder
/// is fine.
///
/// # Errors
/// `dir`, its `<uid>` or its `<tenant>` folder is a symbolic link, `dir` is not named like a backup (a guard against removing the wrong
/// folder), or a file system error.
pub fn remove(dir: &Path) -> Result<(), BackupError> {
    let named_like_backup = dir
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(is_backup_name);
    if !named_like_backup {
        return Err(BackupError::NotABackup(dir.to_path_buf()));
    }
    // The folder, `<uid>` and `<tenant>`: none may be a link (the root may be).
    for ancestor in dir.ancestors().skip(1).take(2) {
        if std::fs::symlink_metadata(ancestor)
            .is_ok_and(|metadata| metadata.file_type().is_symlink())
        {
            return Err(BackupError::Symlink(ancestor.to_path_buf()));
        }
    }
    match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error("inspect", dir)(error)),
        Ok(metadata) if metadata.file_type().is_symlink() => {
            return Err(BackupError::Symlink(dir.to_path_buf()))
        }
        Ok(metadata) if !metadata.is_dir() => {
            return Err(BackupError::NotABackup(dir.to_path_buf()))
        }
        Ok(_) => {}
    }
    // remove_dir_all unlinks symbolic links inside instead of following them.
    std::fs::remove_dir_all(dir).map_err(io_error("remove", dir))?;
    let mut parent = dir.parent();
    for _level in 0..2 {
        match parent {
            Some(folder) if std::fs::remove_dir(folder).is_ok() => parent = folder.parent(),
            _ => break,
        }
    }
    Ok(())
}

/// Files and bytes of every backup of one tenant incarnation (`<root>/<tenant>/<uid>`), for the
/// plan of a purge: exactly what [`delete_all`] would delete. Zero when there is none.
///
/// # Errors
/// An unsafe tenant name, a symbolic link at `<root>/<tenant>` or `<root>/<tenant>/<uid>`
/// (which [`delete_all`] would refuse), or a file system error.
pub fn usage(root: &Path, tenant: &str, uid: Uuid) -> Result<BackupUsage, BackupError> {
    check_component(tenant)?;
    let dir = incarnation_dir(root, tenant, uid);
    if !folder_exists(&root.join(tenant))? || !folder_exists(&dir)? {
        return Ok(BackupUsage::default());
    }
    let mut usage = BackupUsage::default();
    for entry in std::fs::read_dir(&dir).map_err(io_error("read", &dir))? {
        let entry = entry.map_err(io_error("read", &dir))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error("inspect", &path))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if file_type.is_dir() && !hidden && path.join(MANIFEST).is_file() {
            usage.backups += 1;
        }
        add_tree(&path, file_type, &mut usage)?;
    }
    Ok(usage)
}

/// Adds the files under `path` (not following symbolic links; a link counts as a file of its
/// own size) to `usage`.
pub(super) fn add_tree(
    path: &Path,
    file_type: std::fs::FileType,
    usage: &mut BackupUsage,
) -> Result<(), BackupError> {
    if file_type.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_error("read", path))? {
            let entry = entry.map_err(io_error("read", path))?;
            let child = entry.path();
            let child_type = entry.file_type().map_err(io_error("inspect", &child))?;
            add_tree(&child, child_type, usage)?;
        }
    } else {
        let metadata = std::fs::symlink_metadata(path).map_err(io_error("inspect", path))?;
        usage.files += 1;
        usage.bytes += metadata.len();
    }
    Ok(())
}

/// Deletes every backup of one tenant incarnation (purge), leftovers of interrupted exports
/// included, then `<root>/<tenant>` if it became empty. A missing folder is fine.
///
/// Returns what was deleted, measured just before deleting.
///
/// # Errors
/// An unsafe tenant name, a symbolic link at `<root>/<tenant>` or `<root>/<tenant>/<uid>`
/// (never deleted through), or a file system error naming the path; files already deleted stay
/// deleted.
pub fn delete_all(root: &Path, tenant: &str, uid: Uuid) -> Result<BackupUsage, BackupError> {
    let usage = usage(root, tenant, uid)?;
    let tenant_dir = root.join(tenant);
    let dir = incarnation_dir(root, tenant, uid);
    if folder_exists(&tenant_dir)? && folder_exists(&dir)? {
        // remove_dir_all unlinks symbolic links inside instead of following them.
        std::fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))?;
    }
    if folder_exists(&tenant_dir)? {
        let empty = std::fs::read_dir(&tenant_dir)
            .map_err(io_error("read", &tenant_dir))?
            .next()
            .is_none();
        if empty {
            std::fs::remove_dir(&tenant_dir).map_err(io_error("remove", &tenant_dir))?;
        }
    }
    Ok(usage)
}

/// Every backup folder under `root`, complete or partial, for the plan to account for:
/// `<root>/<tenant>/<uid>/<timestamp>` (complete once it holds a manifest) and the hidden
/// `.<timestamp>.partial-<random>` folders an interrupted export leaves. Names that do not fit
/// the layout and symbolic links are skipped, never followed. A missing root is empty.
///
/// # Errors
/// A file system error other than a missing folder, naming the path.
pub fn inventory(root: &Path) -> Result<Vec<ObservedBackup>, BackupError> {
    let mut found = Vec::new();
    for (tenant, tenant_dir) in subfolders(root)? {
        if check_component(&tenant).is_err() {
            continue;
        }
        for (uid_text, uid_dir) in subfolders(&tenant_dir)? {
            let Ok(uid) = Uuid::parse_str(&uid_text) else {
                continue;
            };
            for (folder, path) in subfolders(&uid_dir)? {
                let partial = is_partial_name(&folder);
                let complete = !partial && is_backup_name(&folder);
                if !partial && !complete {
                    continue;
                }
                let mut usage = BackupUsage::default();
                add_tree(
                    &path,
                    std::fs::symlink_metadata(&path)
                        .map_err(io_error("inspect", &path))?
                        .file_type(),
                    &mut usage,
                )?;
                found.push(ObservedBackup {
                    tenant: tenant.clone(),
                    uid,
                    folder,
                    partial: partial || !path.join(MANIFEST).is_file(),
                    files: usage.files,
                    bytes: usage.bytes,
                    recorded: false,
                });
            }
        }
    }
    Ok(found)
}

/// `<timestamp>` or `<timestamp>-<n>`, as [`export`] names a backup folder.
pub(super) fn is_backup_name(name: &str) -> bool {
    let stamp = match name.split_once('-') {
        Some((stamp, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => stamp,
        Some(_) => return false,
        None => name,
    };
    chrono::NaiveDateTime::parse_from_str(stamp, TIMESTAMP_FORMAT).is_ok()
}

/// `.<timestamp>.partial-<hex>`, as [`export`] names its temporary folder.
pub(super) fn is_partial_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((stamp, random)) = rest.split_once(".partial-") else {
        return false;
    };
    chrono::NaiveDateTime::parse_from_str(stamp, TIMESTAMP_FORMAT).is_ok()
        && !random.is_empty()
        && random.chars().all(|c| c.is_ascii_hexdigit())
}

/// The real sub-folders of `dir` (not symbolic links), by name; none when `dir` is missing.
pub(super) fn subfolders(dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(io_error("read", dir)(error)),
    };
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("read", dir))?;
        let file_type = entry
            .file_type()
            .map_err(io_error("inspect", &entry.path()))?;
        if file_type.is_dir() {
            if let Ok(name) = entry.file_name().into_string() {
                folders.push((name, entry.path()));
            }
        }
    }
    folders.sort();
    Ok(folders)
}

/// Removes a partial backup folder that [`inventory`] found, then its `<uid>` and `<tenant>`
/// parents if they became empty. Refuses anything not named like a partial backup.
///
/// # Errors
/// The name does not fit, a symbolic link is in the way, or a file system error.
pub fn remove_partial(
    root: &Path,
    leftover: &crate::plan::BackupLeftover,
) -> Result<(), BackupError> {
    check_component(&leftover.tenant)?;
    if !is_partial_name(&leftover.folder) {
        return Err(BackupError::NotABackup(PathBuf::from(&leftover.path)));
    }
    let tenant_dir = root.join(&leftover.tenant);
    let uid_dir = incarnation_dir(root, &leftover.tenant, leftover.uid);
    if !folder_exists(&tenant_dir)? || !folder_exists(&uid_dir)? {
        return Ok(());
    }
    let dir = uid_dir.join(&leftover.folder);
    if !folder_exists(&dir)? {
        return Ok(());
    }
    // remove_dir_all unlinks symbolic links inside instead of following them.
    std::fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))?;
    for folder in [&uid_dir, &tenant_dir] {
        if std::fs::remove_dir(folder).is_err() {
            break;
        }
    }
    Ok(())
}

pub(super) fn incarnation_dir(root: &Path, tenant: &str, uid: Uuid) -> PathBuf {
    root.join(tenant).join(uid.hyphenated().to_string())
}

/// A tenant id used as a folder name: letters, digits, `_` and `-`, so it cannot climb out of
/// the root or hide.
pub(super) fn check_component(name: &str) -> Result<(), BackupError> {
    let safe = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if safe {
        Ok(())
    } else {
        Err(BackupError::Name(name.to_string()))
    }
}

/// True when `path` is a folder, false when it is missing; a symbolic link is an error.
pub(super) fn folder_exists(path: &Path) -> Result<bool, BackupError> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            Err(BackupError::Symlink(path.to_path_buf()))
        }
        Ok(metadata) if metadata.is_dir() => Ok(true),
        Ok(_) => Err(BackupError::NotAFolder(path.to_path_buf())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error("inspect", path)(error)),
    }
}

/// Creates `<root>/<tenant>/<uid>` as needed (0700); returns the folders it created, outermost
/// first, so a failed export can take them back.
pub(super) fn create_folders(
    root: &Path,
    tenant: &str,
    uid: Uuid,
) -> Result<Vec<PathBuf>, BackupError> {
    let mut created = Vec::new();
    // The root itself may be a symbolic link: the operator chose it.
    match std::fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => return Err(BackupError::NotAFolder(root.to_path_buf())),
        // Not a directory: a parent is a file; creating says so with the path.
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            DirBuilder::new()
                .recursive(true)
                .mode(FOLDER_MODE)
                .create(root)
                .map_err(io_error("create", root))?;
            created.push(root.to_path_buf());
        }
        Err(error) => return Err(io_error("inspect", root)(error)),
    }
    let tenant_dir = root.join(tenant);
    for folder in [tenant_dir.clone(), incarnation_dir(root, tenant, uid)] {
        if !folder_exists(&folder).inspect_err(|_| remove_created(&created))? {
            make_folder(&folder).inspect_err(|_| remove_created(&created))?;
            created.push(folder);
        }
    }
    Ok(created)
}

pub(super) fn remove_created(created: &[PathBuf]) {
    for folder in created.iter().rev() {
        let _ = std::fs::remove_dir(folder);
    }
}

pub(super) fn make_folder(path: &Path) -> Result<(), BackupError> {
    DirBuilder::new()
        .mode(FOLDER_MODE)
        .create(path)
        .map_err(io_error("create", path))
}

/// Makes the entries of a folder durable (new files, renames).
pub(super) fn sync_folder(path: &Path) -> Result<(), BackupError> {
    // The parent of a relative root such as the default `backups` is the empty path: the
    // working directory.
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    File::open(path)
        .and_then(|folder| folder.sync_all())
        .map_err(io_error("sync", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_cannot_leave_the_root() {
        for name in ["", "..", ".", "a/b", "-x", ".hidden", "a b"] {
            assert!(check_component(name).is_err(), "{name:?}");
        }
        assert!(check_component("acme_2").is_ok());
    }

    #[test]
    fn remove_refuses_folders_not_named_like_a_backup() {
        let root = tempfile::tempdir().unwrap();
        let error = remove(root.path()).unwrap_err();
        assert!(matches!(error, BackupError::NotABackup(_)), "{error}");
        assert!(root.path().exists());
    }
}
