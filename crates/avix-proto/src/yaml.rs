//! The one YAML entry point. Every YAML document Avix reads goes through [`from_slice`], which caps
//! the input size and turns parser errors into one readable line with a location.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest YAML document Avix parses (1 MiB). Config files are a few KiB; the cap keeps a
/// hostile or mistaken write from costing memory or time.
pub const MAX_YAML_BYTES: usize = 1024 * 1024;

/// A YAML document that cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    /// Larger than [`MAX_YAML_BYTES`].
    #[error("document is {0} bytes, over the {MAX_YAML_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not UTF-8.
    #[error("document is not valid UTF-8")]
    NotUtf8,
    /// The parser or the schema refused it; the message carries the location.
    #[error("{0}")]
    Invalid(String),
    /// Serialization failed (a bug: every Avix type serializes).
    #[error("cannot write YAML: {0}")]
    Write(String),
}

/// Parses `bytes` as one YAML document of type `T`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, YamlError> {
    if bytes.len() > MAX_YAML_BYTES {
        return Err(YamlError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| YamlError::NotUtf8)?;
    from_str(text)
}

/// Parses `text` as one YAML document of type `T`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    if text.len() > MAX_YAML_BYTES {
        return Err(YamlError::TooLarge(text.len()));
    }
    serde_saphyr::from_str::<T>(text).map_err(|e| YamlError::Invalid(one_line(&e.to_string())))
}

/// Writes `value` as YAML.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError::Write(e.to_string()))
}

/// Squeezes a multi-line parser report (with source snippets) into one line: the first line
/// that says what is wrong, plus the location if the report gives one.
fn one_line(report: &str) -> String {
    let mut lines = report.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid YAML").to_owned();
    let location = report
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("-->").or_else(|| l.strip_prefix("at ")))
        .map(str::trim);
    match location {
        Some(loc) if !first.contains(loc) => format!("{first} (at {loc})"),
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn errors_are_one_line_with_a_location() {
        let e = from_str::<T>("a: [1, 2").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("line") || e.contains(':'), "{e}");
        let e = from_str::<T>("a: 1\nb: 2\n").unwrap_err().to_string();
        assert!(e.contains('b'), "{e}");
    }

    #[test]
    fn rejects_oversized_and_binary_input() {
        let big = vec![b'#'; MAX_YAML_BYTES + 1];
        assert_eq!(
            from_slice::<T>(&big).unwrap_err(),
            YamlError::TooLarge(MAX_YAML_BYTES + 1)
        );
        assert_eq!(
            from_slice::<T>(&[0xff, 0xfe]).unwrap_err(),
            YamlError::NotUtf8
        );
    }
}
