//! Names people read: trimmed, bounded, and free of characters that hide or reorder text.
//!
//! Control characters break logs and CSV exports; bidirectional overrides (`U+202E`) and
//! zero-width characters make two different names look the same, or one name look like another,
//! in the console and the audit. Names are refused with them rather than silently cleaned.

/// Characters that change how surrounding text is shown without being seen themselves.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // bidi isolates
        | '\u{061C}' // Arabic letter mark
        | '\u{FEFF}' // zero-width no-break space
        | '\u{00AD}' // soft hyphen
    )
}

/// Why a piece of text cannot be a name, if it cannot.
pub fn hidden_characters(text: &str) -> Option<&'static str> {
    if text.chars().any(char::is_control) {
        Some("control characters")
    } else if text.chars().any(is_invisible) {
        Some("invisible or direction-changing characters (zero-width, bidi overrides)")
    } else {
        None
    }
}

/// A display name: trimmed, 1 to `max` characters, nothing hidden. The error names `what`.
pub fn check_name(what: &str, text: &str, max: usize) -> Result<String, String> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > max {
        return Err(format!("{what} is 1 to {max} characters"));
    }
    if let Some(why) = hidden_characters(name) {
        return Err(format!("{what} contains {why}"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names_refuse_what_hides_or_reorders_text() {
        assert_eq!(check_name("a name", "  Line 1 ", 100).as_deref(), Ok("Line 1"));
        assert_eq!(check_name("a name", "产线 1", 100).as_deref(), Ok("产线 1"));
        for bad in ["a\u{0}b", "a\nb", "gw\u{202E}1-fdp", "gw\u{200B}1", "\u{FEFF}gw", "a\u{2066}b", ""] {
            assert!(check_name("a name", bad, 100).is_err(), "{bad:?}");
        }
        assert!(check_name("a name", &"x".repeat(101), 100).is_err());
    }
}
