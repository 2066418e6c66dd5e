//! File modes as manifests write them: octal text (`"0644"`, `"644"`),
//! read one way for every type that takes a `mode`.

use crate::core::ResourceError;

/// Parses an octal mode written as a string (`"0644"`, `"644"`).
pub fn parse_mode(text: &str) -> Result<u32, ResourceError> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            ResourceError::Invalid(format!("invalid mode '{text}': expected octal like 0644"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_text_with_or_without_prefix() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("644").unwrap(), 0o644);
        assert_eq!(parse_mode("0o4755").unwrap(), 0o4755);
        assert!(parse_mode("0899").is_err());
        assert!(parse_mode("17777").is_err());
    }
}
