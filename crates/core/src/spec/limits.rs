//! How much one file, and one directory, may make the loader read, build and report.
//!
//! Every file is hostile input: `tenantctl watch` on a git-synced directory loads whatever lands
//! there, in a loop, so one crafted file must not take the process down. A YAML alias copies a
//! whole node, so a few kilobytes can stand for billions of nodes ("billion laughs"), and limits
//! per document are not enough when a file can hold thousands of documents, or a directory
//! thousands of files. Everything is therefore bounded per file and per directory, and counted
//! while parsing, before anything large is built.
//!
//! Real files are small: a tenant is about 20 lines and 30 nodes (under 1 KB), a plans file a
//! handful of documents. The limits sit two or more orders of magnitude above that per file, and
//! leave room for a directory of 10,000 tenants of about 1 KB (about 10 MB and 300,000 nodes);
//! at those limits the loader needs tens of MB at worst, not gigabytes.

/// Bytes of one file: a plans file of hundreds of plans fits, and nothing is read past it.
pub(super) const FILE_BYTES: usize = 1 << 20;

/// Bytes of all the YAML files of a directory: 10,000 tenants of about 1 KB are about 10 MB, so
/// this leaves three times that; the files are held in memory while the directory is checked.
pub(super) const DIRECTORY_BYTES: usize = 32 << 20;

/// Documents in one file, empty ones included: only a plans file holds several, one per plan.
pub(super) const FILE_DOCUMENTS: usize = 1_000;

/// Nodes (scalars, sequences, mappings) of one file once aliases are expanded, at roughly 100
/// bytes of memory each: a tenant has about 30, so this is thousands of tenants' worth, and the
/// tree of the largest file allowed stays near 10 MB.
pub(super) const FILE_NODES: usize = 100_000;

/// Nodes of every file of a directory together: 10,000 tenants of about 30 nodes are 300,000,
/// so this leaves more than six times that. Trees are dropped file by file, so this bounds time
/// (a fraction of a second of parsing) more than memory.
pub(super) const DIRECTORY_NODES: usize = 2_000_000;

/// Bytes of scalar text of one file once aliases are expanded: an alias of a long string copies
/// the string, which a count of nodes does not see. Four times [`FILE_BYTES`], since a file's own
/// text is at most about its size and real aliases copy short values.
pub(super) const FILE_TEXT: usize = 4 << 20;

/// Bytes of scalar text of a directory once aliases are expanded: twice [`DIRECTORY_BYTES`], for
/// the same reason as [`FILE_TEXT`]. Like [`DIRECTORY_NODES`], this bounds time (copying text)
/// more than memory: error messages cut the names and values they quote.
pub(super) const DIRECTORY_TEXT: usize = 64 << 20;

/// Errors kept for one run: far more than anyone reads, and every tenant of a 10,000-tenant
/// directory can still have its own. Past it, the rest of the directory is not checked, which
/// keeps a file that makes an error of every node from filling memory with them.
pub(super) const ERRORS: usize = 10_000;

/// `1,000,000` for `1000000`: limits are printed the way the comments above write them.
pub(super) fn thousands(count: usize) -> String {
    let digits = count.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// `32 MiB` for a byte limit (every byte limit is a whole number of MiB).
pub(super) fn mebibytes(bytes: usize) -> String {
    format!("{} MiB", bytes >> 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_print_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(2_000_000), "2,000,000");
        assert_eq!(mebibytes(FILE_BYTES), "1 MiB");
        assert_eq!(mebibytes(DIRECTORY_BYTES), "32 MiB");
    }
}
