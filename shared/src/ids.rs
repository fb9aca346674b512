//! Identifiers that travel in headers, URLs, storage keys and container labels.

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    Empty,
    TooLong,
    BadFirstChar,
    BadChar,
}

impl core::fmt::Display for IdError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            IdError::Empty => "is empty",
            IdError::TooLong => "is longer than 63 characters",
            IdError::BadFirstChar => "must start with a letter or digit",
            IdError::BadChar => "may only contain letters, digits, '.', '_' and '-'",
        })
    }
}

/// Checks `^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`, the grammar of node ids and env names.
///
/// The grammar excludes `:`, `|`, `/`, `?`, `&`, whitespace and newlines, so an id can be
/// embedded in a canonical signing string, a KV key or a URL query without escaping.
pub fn validate_id(s: &str) -> Result<(), IdError> {
    let b = s.as_bytes();
    let Some(first) = b.first() else {
        return Err(IdError::Empty);
    };
    if b.len() > 63 {
        return Err(IdError::TooLong);
    }
    if !first.is_ascii_alphanumeric() {
        return Err(IdError::BadFirstChar);
    }
    if b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        Ok(())
    } else {
        Err(IdError::BadChar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        for ok in ["a", "brh-node-01", "Node_1.eu", "0", &"x".repeat(63)] {
            assert_eq!(validate_id(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_id(""), Err(IdError::Empty));
        assert_eq!(validate_id(&"x".repeat(64)), Err(IdError::TooLong));
        assert_eq!(validate_id("-a"), Err(IdError::BadFirstChar));
        assert_eq!(validate_id(".a"), Err(IdError::BadFirstChar));
        for bad in ["a b", "a:b", "a|b", "a/b", "a\nb", "é"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }
}
