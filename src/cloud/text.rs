//! Text that comes from a cloud endpoint (which a tenant may choose, so may be hostile) made safe
//! to show: bounded and on one line for status, Events and logs; escaped for a terminal.

/// The most characters of any one cloud-supplied string kept in an error, before the ellipsis.
pub const MAX_CLOUD_TEXT: usize = 256;

/// Characters a terminal acts on or that reorder what is shown: C0/C1 controls (ESC, CR, BEL...),
/// and the zero-width and bidirectional marks that can make text read as something else.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` on one line (every control character and run of whitespace becomes one space), at most
/// [`MAX_CLOUD_TEXT`] characters, with `…` when it was cut.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_CLOUD_TEXT * 4 + 3));
    let mut kept = 0;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() || is_unsafe(c) {
            pending_space = kept > 0;
            continue;
        }
        // A space counts against the bound as any other character.
        let needed = 1 + usize::from(pending_space);
        if kept + needed > MAX_CLOUD_TEXT {
            out.push('…');
            return out;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
        kept += needed;
    }
    out
}

/// `text` for a terminal: every unsafe character shown as its escape (`\u{1b}`), the rest as is.
pub fn escape_for_terminal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Serde `deserialize_with` helpers for the API's enum-like strings (a setting, a device type),
/// which controllers copy into status and Events: read as [`one_line`].
pub mod de {
    use serde::{Deserialize, Deserializer};

    /// More than any enum-valued list the APIs document (five verification types).
    const MAX_ITEMS: usize = 32;

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        String::deserialize(d).map(|text| super::one_line(&text))
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Option::<String>::deserialize(d).map(|text| text.map(|text| super::one_line(&text)))
    }

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        Option::<Vec<String>>::deserialize(d).map(|items| {
            items.map(|items| {
                items
                    .iter()
                    .take(MAX_ITEMS)
                    .map(|text| super::one_line(text))
                    .collect()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_strips_controls_and_joins_lines() {
        assert_eq!(
            one_line("  a\r\nb\u{1b}[31mc\u{7}\td\u{202E}e  "),
            "a b [31mc d e"
        );
        assert_eq!(one_line("plain message"), "plain message");
        assert_eq!(one_line(""), "");
    }

    #[test]
    fn one_line_is_bounded_with_an_ellipsis() {
        let long = "x".repeat(10_000);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), MAX_CLOUD_TEXT + 1);
        assert!(cut.ends_with('…'));
        let exact = "y".repeat(MAX_CLOUD_TEXT);
        assert_eq!(one_line(&exact), exact);
        // Multi-byte characters count as one each and are never split.
        let wide = "界".repeat(1_000);
        assert_eq!(one_line(&wide).chars().count(), MAX_CLOUD_TEXT + 1);
        // Spaces count too: many short words stay within the bound.
        let words = "a ".repeat(1_000);
        assert!(one_line(&words).chars().count() <= MAX_CLOUD_TEXT + 1);
    }

    #[test]
    fn enum_like_fields_are_read_as_one_bounded_line() {
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(deserialize_with = "de::option")]
            setting: Option<String>,
            #[serde(deserialize_with = "de::list")]
            types: Option<Vec<String>>,
        }
        let types: Vec<String> = (0..1000).map(|i| format!("T{i}")).collect();
        let answer: Answer = serde_json::from_value(serde_json::json!({
            "setting": format!("Enabled\u{1b}[2J{}", "x".repeat(5000)), "types": types
        }))
        .unwrap();
        let setting = answer.setting.unwrap();
        assert!(
            setting.starts_with("Enabled [2Jxx") && setting.chars().count() == MAX_CLOUD_TEXT + 1
        );
        assert_eq!(answer.types.unwrap().len(), 32);
    }

    #[test]
    fn terminal_escape_leaves_no_control_byte() {
        let escaped = escape_for_terminal("Phone\u{1b}[31m\r\u{7}名前\u{202E}");
        assert_eq!(escaped, "Phone\\u{1b}[31m\\u{d}\\u{7}名前\\u{202e}");
        assert!(!escaped.bytes().any(|b| b < 0x20 || b == 0x7f));
    }
}
