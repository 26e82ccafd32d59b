//! The directory walk: the only I/O of the `spec` module.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::limits::{self, mebibytes};
use super::yaml::Mark;
use super::{SourceFile, SpecError};

/// Whether `path` names a file the loader reads (`.yaml` or `.yml`).
pub(super) fn is_yaml_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|extension| extension.to_str()),
        Some("yaml" | "yml")
    )
}

/// Reads every visible YAML file under `dir`, recursively, sorted by relative path.
///
/// Returns what could be read together with every error met on the way, so that one run reports
/// an unreadable file and the problems of all the other files, and whether every file was read:
/// `false` when the directory is over [`limits::DIRECTORY_BYTES`], which stops the walk.
pub(super) fn read_sources(dir: &Path) -> (Vec<SourceFile>, Vec<SpecError>, bool) {
    let mut walk = Walk {
        dir,
        root: PathBuf::new(),
        sources: Vec::new(),
        errors: Vec::new(),
        bytes: 0,
        stopped: false,
    };
    match fs::canonicalize(dir) {
        Err(error) => walk.error(dir, directory_message(&error), None),
        Ok(root) if !root.is_dir() => walk.error(dir, "not a directory".to_string(), None),
        Ok(root) => {
            walk.root = root.clone();
            let mut ancestors = vec![root];
            walk.folder(Path::new(""), &mut ancestors);
        }
    }
    walk.sources
        .sort_by(|left, right| left.relative.cmp(&right.relative));
    (walk.sources, walk.errors, !walk.stopped)
}

fn directory_message(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "directory does not exist".to_string(),
        _ => format!(
            "cannot read directory: {}",
            lowercase_first(&error.to_string())
        ),
    }
}

/// `std::io::Error` messages start with a capital; ours are lowercase.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

struct Walk<'a> {
    /// The directory as the user passed it; every reported path starts with it.
    dir: &'a Path,
    /// The directory, canonicalized: symlinks must resolve inside it.
    root: PathBuf,
    sources: Vec<SourceFile>,
    errors: Vec<SpecError>,
    /// Bytes of the files read so far.
    bytes: usize,
    /// The directory is over its byte limit: nothing more is read.
    stopped: bool,
}

impl Walk<'_> {
    fn error(&mut self, file: &Path, message: String, hint: Option<String>) {
        self.errors.push(SpecError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: None,
            message,
            hint,
        });
    }

    /// Reads the folder at `relative`; `ancestors` holds the canonical paths of the folders being
    /// walked, so that a symlink leading back to one of them is reported instead of followed
    /// forever.
    fn folder(&mut self, relative: &Path, ancestors: &mut Vec<PathBuf>) {
        let path = self.dir.join(relative);
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(error) => {
                self.error(&path, directory_message(&error), None);
                return;
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => names.push(entry.file_name()),
                Err(error) => self.error(&path, directory_message(&error), None),
            }
        }
        names.sort();

        for name in names {
            if self.stopped {
                return;
            }
            // Hidden entries are skipped: editor and VCS files, and the `..data` /
            // `..2026_...` folders a Kubernetes ConfigMap mount uses behind its visible symlinks.
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            // The tenant schema's SQL migrations are read by `migrations`, not as YAML.
            if relative.as_os_str().is_empty() && name == super::migrations::FOLDER {
                continue;
            }
            let relative = relative.join(&name);
            let path = self.dir.join(&relative);
            let Ok(link_metadata) = fs::symlink_metadata(&path) else {
                // Vanished between listing and reading: nothing to load.
                continue;
            };
            let yaml_name = is_yaml_name(&relative);
            let mut target = None;
            if link_metadata.file_type().is_symlink() {
                match fs::canonicalize(&path) {
                    Ok(resolved) => target = Some(resolved),
                    Err(_) => {
                        if yaml_name {
                            let points_to = fs::read_link(&path)
                                .map(|target| target.display().to_string())
                                .unwrap_or_default();
                            self.error(
                                &path,
                                format!("broken symlink: its target `{points_to}` does not exist"),
                                None,
                            );
                        }
                        continue;
                    }
                }
            }
            let Ok(metadata) = fs::metadata(&path) else {
                continue;
            };
            if !(metadata.is_dir() || metadata.is_file() && yaml_name) {
                continue;
            }
            if let Some(target) = &target {
                // The desired state is what is in the directory (the git checkout); a link out
                // of it would let files nobody reviewed decide what gets applied.
                if !target.starts_with(&self.root) {
                    self.error(
                        &path,
                        format!(
                            "symlink leads outside `{}`, to `{}`",
                            self.dir.display(),
                            target.display()
                        ),
                        Some("copy the file into the directory, or point the link at a file inside it".to_string()),
                    );
                    continue;
                }
            }
            if metadata.is_dir() {
                let canonical = match target {
                    Some(target) => target,
                    None => match fs::canonicalize(&path) {
                        Ok(canonical) => canonical,
                        Err(error) => {
                            self.error(&path, directory_message(&error), None);
                            continue;
                        }
                    },
                };
                if ancestors.contains(&canonical) {
                    self.error(
                        &path,
                        "symlinked folder leads back to a folder that contains it".to_string(),
                        Some(
                            "remove the link: it would load the same files again and again"
                                .to_string(),
                        ),
                    );
                    continue;
                }
                ancestors.push(canonical);
                self.folder(&relative, ancestors);
                ancestors.pop();
            } else {
                self.file(path, relative);
            }
        }
    }

    fn file(&mut self, path: PathBuf, relative: PathBuf) {
        // One byte past the limit tells that a file is too large without reading all of it (it
        // may be endless, or growing while it is read).
        let mut bytes = Vec::new();
        let read = fs::File::open(&path).and_then(|file| {
            file.take(limits::FILE_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        });
        if let Err(error) = read {
            let message = format!("cannot read file: {}", lowercase_first(&error.to_string()));
            self.error(&path, message, None);
            return;
        }
        if bytes.len() > limits::FILE_BYTES {
            self.error_at(
                path,
                &bytes[..limits::FILE_BYTES],
                format!("file is larger than {}", mebibytes(limits::FILE_BYTES)),
                "tenant and plan files are a few KB; split a large plans file into several files",
            );
            return;
        }
        let room = limits::DIRECTORY_BYTES - self.bytes;
        if bytes.len() > room {
            self.stopped = true;
            let message = format!(
                "the YAML files of `{}` hold more than {}; this file crosses the limit, and neither it nor the files after it were read",
                self.dir.display(),
                mebibytes(limits::DIRECTORY_BYTES)
            );
            self.error_at(
                path,
                &bytes[..room],
                message,
                "a directory of 10,000 tenants is about 10 MB; remove the files that do not belong to the desired state",
            );
            return;
        }
        self.bytes += bytes.len();
        match String::from_utf8(bytes) {
            Ok(text) => self.sources.push(SourceFile {
                path,
                relative,
                text,
            }),
            Err(error) => {
                // Point at the first bad byte, the way an editor would show it.
                let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
                self.error_at(
                    path,
                    valid,
                    "file is not valid UTF-8".to_string(),
                    "save the file as UTF-8",
                );
            }
        }
    }

    /// Records an error at the end of `before`, the start of the file at `path`.
    fn error_at(&mut self, path: PathBuf, before: &[u8], message: String, hint: &str) {
        // A limit may cut a character in two; the column is then off by one at most.
        let mark = Mark::after(&String::from_utf8_lossy(before));
        self.errors.push(SpecError {
            file: path,
            line: Some(mark.line),
            column: Some(mark.column),
            field: None,
            message,
            hint: Some(hint.to_string()),
        });
    }
}
