//! Archive keys: their layout and the rules every store enforces.

use crate::archive::archive_error;
use crate::error::{ArchiveErrorKind, Result};

/// The longest key a store accepts, in bytes (S3's limit).
pub const MAX_KEY_LEN: usize = 1024;

/// The key of an archived segment: `{topic}/{partition}/{base_offset:020}.seg`,
/// for example `orders/3/00000000000000001024.seg`. Zero-padding makes the
/// keys of a partition sort (and list) in offset order.
///
/// The result is a valid key if `topic` is a valid key component (ASCII
/// letters, digits, `.`, `_`, `-`, not starting with `.`); stores refuse it
/// otherwise.
pub fn segment_key(topic: &str, partition: u32, base_offset: u64) -> String {
    format!("{topic}/{partition}/{base_offset:020}.seg")
}

/// True if `key` follows the key rules (see the [module documentation](crate::archive)).
pub fn is_valid_key(key: &str) -> bool {
    key_problem(key).is_none()
}

/// Refuses an invalid key with an [`ArchiveErrorKind::InvalidKey`] error.
pub(crate) fn check_key(store: &str, key: &str) -> Result<()> {
    match key_problem(key) {
        None => Ok(()),
        Some(why) => Err(archive_error(store, key, ArchiveErrorKind::InvalidKey, why)),
    }
}

/// Refuses an invalid list prefix: a prefix is empty, or a valid key, or a
/// valid key followed by `/`.
pub(crate) fn check_prefix(store: &str, prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    match key_problem(prefix.strip_suffix('/').unwrap_or(prefix)) {
        None => Ok(()),
        Some(why) => Err(archive_error(store, prefix, ArchiveErrorKind::InvalidKey, format!("invalid prefix: {why}"))),
    }
}

/// Why `key` is not a valid key, or `None` if it is.
fn key_problem(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("the key is empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Some(format!("the key has {} bytes, more than {MAX_KEY_LEN}", key.len()));
    }
    if key.starts_with('/') {
        return Some("the key is an absolute path".into());
    }
    if let Some(c) = key.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))) {
        return Some(format!("the key contains {c:?}: only ASCII letters, digits, '.', '_', '-' and '/' are allowed"));
    }
    for component in key.split('/') {
        if component.is_empty() {
            return Some("the key has an empty component ('//' or a trailing '/')".into());
        }
        if component == ".." || component == "." {
            return Some(format!("the key has a {component:?} component"));
        }
        if component.starts_with('.') {
            return Some(format!("the component {component:?} starts with '.' (reserved for temporary files)"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_are_valid_and_sort_by_offset() {
        let a = segment_key("orders", 3, 999);
        let b = segment_key("orders", 3, 1024);
        assert_eq!(b, "orders/3/00000000000000001024.seg");
        assert!(is_valid_key(&a) && is_valid_key(&b));
        assert!(a < b);
    }

    #[test]
    fn invalid_keys() {
        let long = "a".repeat(MAX_KEY_LEN + 1);
        for key in
            ["", "/abs", "a/../b", "..", ".", "a//b", "a/", "a/./b", ".tmp", "a/.x", "a\\b", "a b", "a\0b", "é", &long]
        {
            assert!(!is_valid_key(key), "{key:?} should be invalid");
        }
        for key in ["a", "topic/0/00000000000000000000.seg", "a.b/c_d-e", "a..b", &"a".repeat(MAX_KEY_LEN)] {
            assert!(is_valid_key(key), "{key:?} should be valid");
        }
    }

    #[test]
    fn prefixes() {
        for prefix in ["", "t", "t/", "t/0", "t/0/"] {
            assert!(check_prefix("s", prefix).is_ok(), "{prefix:?}");
        }
        for prefix in ["/", "//", "t//", "../", "t/../", "/t"] {
            assert!(check_prefix("s", prefix).is_err(), "{prefix:?}");
        }
    }
}
