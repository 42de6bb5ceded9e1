//! Who a reviewer or a submitter is: ids as people type them, checked and compared so that
//! one person cannot pass for two reviewers (dual control), nor for someone other than the
//! run's submitter.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_security::general_security_profile::{GeneralSecurityProfile, IdentifierType};

/// The longest id recorded, in bytes.
pub(crate) const MAX_BYTES: usize = 256;

/// What is wrong with an id, if anything: empty, too long, spaces around it, a control
/// character, or an invisible one (a zero-width space, a soft hyphen, a byte-order mark,
/// a direction mark: Unicode's default-ignorable code points), which would make two ids
/// that look the same differ.
pub(crate) fn problem(id: &str) -> Option<String> {
    let problem = if id.trim().is_empty() {
        "is empty".to_string()
    } else if id.len() > MAX_BYTES {
        format!("is longer than {MAX_BYTES} bytes")
    } else if id.trim() != id {
        "has spaces before or after it".to_string()
    } else if id.chars().any(char::is_control) {
        "holds a control character".to_string()
    } else if let Some(c) = id
        .chars()
        .find(|c| c.identifier_type() == Some(IdentifierType::Default_Ignorable))
    {
        format!("holds an invisible character (U+{:04X})", u32::from(c))
    } else {
        return None;
    };
    Some(format!(
        "{problem}: {:?}",
        id.chars().take(64).collect::<String>()
    ))
}

/// Whether two ids could name the same person: they are compared by [`key`], so that ids
/// that differ only in case, width, accents, normalisation, invisible characters or letters
/// of another script that look the same (Cyrillic `о` for Latin `o`) are one person. This
/// errs on the side of refusing: `bob` and `b0b` are one person too.
pub(crate) fn same_person(a: &str, b: &str) -> bool {
    key(a) == key(b)
}

/// The form ids are compared in: NFKC (fullwidth and compatibility forms), lower case with
/// `ß` as `ss` and the dotless `ı` as `i`, accents and other combining marks removed, then
/// the UTS #39 skeleton (which maps each letter to the one it is confusable with and drops
/// invisible characters), in lower case.
fn key(id: &str) -> String {
    let folded: String = id
        .trim()
        .nfkc()
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .replace('ß', "ss")
        .replace('ı', "i");
    let bare: String = folded.nfd().filter(|c| !is_combining_mark(*c)).collect();
    unicode_security::skeleton(&bare)
        .flat_map(char::to_lowercase)
        .filter(|c| !is_combining_mark(*c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The red team's pairs: each is one person.
    #[test]
    fn variants_of_one_id_are_one_person() {
        for (a, b) in [
            ("alice", "Alice"),
            ("alice", "ALICE"),
            ("jos\u{e9}", "jose\u{301}"),
            ("bob", "\u{ff42}\u{ff4f}\u{ff42}"),
            ("gro\u{df}", "GROSS"),
            ("stra\u{df}e", "STRASSE"),
            ("alice", "AL\u{130}CE"),
            ("al\u{131}ce", "ALICE"),
            ("bob", "b\u{43e}b"),
            ("alice", "\u{430}lice"),
            ("alice", "alic\u{301}e"),
            ("alice", "ali\u{200b}ce"),
            ("jose", "jos\u{e9}"),
        ] {
            assert!(same_person(a, b), "{a:?} and {b:?} are one person");
        }
    }

    #[test]
    fn different_people_stay_different() {
        for (a, b) in [
            ("alice", "bob"),
            ("a.one", "a.two"),
            ("u.schmidt", "u.schmid"),
        ] {
            assert!(!same_person(a, b), "{a:?} and {b:?}");
        }
    }

    #[test]
    fn ids_that_would_hide_a_difference_are_refused() {
        for (id, says) in [
            ("", "is empty"),
            (" alice", "spaces"),
            ("alice\u{a0}", "spaces"),
            ("ali\u{1}ce", "control"),
            ("alice\u{200b}", "invisible character (U+200B)"),
            ("\u{feff}alice", "invisible character (U+FEFF)"),
            ("ali\u{ad}ce", "invisible character (U+00AD)"),
            ("alice\u{200f}", "invisible character (U+200F)"),
            ("alice\u{2060}", "invisible character (U+2060)"),
        ] {
            let problem = problem(id).unwrap_or_default();
            assert!(problem.contains(says), "{id:?}: {problem}");
        }
        assert!(problem(&"r".repeat(257)).is_some());
        assert_eq!(problem("u.schmidt@bank.example"), None);
        assert_eq!(problem("José Álvarez"), None);
    }
}
