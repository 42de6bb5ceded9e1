//! Who a reviewer or a submitter is: ids as people type them, checked and compared so that
//! one person cannot pass for two reviewers (dual control), nor for someone other than the
//! run's submitter.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_security::general_security_profile::{GeneralSecurityProfile, IdentifierType};
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

/// The longest id recorded, in bytes.
pub(crate) const MAX_BYTES: usize = 256;

/// What is wrong with an id, if anything: empty, too long, spaces around it or two in a
/// row, a control character, an invisible one (a zero-width space, a soft hyphen, a
/// byte-order mark, a direction mark: Unicode's default-ignorable code points), or any
/// other character [`allowed`] does not admit: each would let two ids that look the same
/// differ.
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
    } else if let Some(c) = id.chars().find(|c| !allowed(*c)) {
        format!(
            "holds the character U+{:04X}, which an id may not hold (letters and digits of \
             the scripts in common use, spaces inside, and . - _ @ + ' may)",
            u32::from(c)
        )
    } else if !id.chars().any(char::is_alphanumeric) {
        "holds no letter or digit".to_string()
    } else if id.split(' ').any(str::is_empty) {
        "holds two spaces in a row".to_string()
    } else if !one_writing_system(id) {
        "mixes letters of scripts that are not written together (Latin with Armenian, \
         Cyrillic or Greek, say), which can look like another id: write it in one script"
            .to_string()
    } else {
        return None;
    };
    Some(format!(
        "{problem}: {:?}",
        id.chars().take(64).collect::<String>()
    ))
}

/// Whether `c` may appear in an id: ASCII letters and digits, a few ASCII signs used in
/// user names and addresses, a space (inside), and the characters UTS #39's General
/// Security Profile allows in identifiers (letters, digits and marks of the scripts in
/// common use). That leaves out format characters, blanks that are not spaces (Braille
/// U+2800), private-use and unassigned code points, symbols, compatibility forms
/// (fullwidth, mathematical, circled, small capitals), and the scripts the profile limits
/// (Cherokee, whose capitals look like Latin ones).
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || is_sign(c) || (!c.is_ascii() && c.identifier_allowed())
}

/// The ASCII signs (and the space) an id may hold besides letters and digits.
fn is_sign(c: char) -> bool {
    matches!(c, '.' | '-' | '_' | '@' | '+' | '\'' | ' ')
}

/// Whether the letters of `id` (its ASCII signs aside) are of one script, or of scripts
/// written together (Han with kana or Hangul, and Latin with those): UTS #39's "highly
/// restrictive" level. A Latin id with one Armenian `Լ` or Cyrillic `е` in it is not.
fn one_writing_system(id: &str) -> bool {
    let letters: String = id.chars().filter(|c| !is_sign(*c)).collect();
    letters.as_str().detect_restriction_level() <= RestrictionLevel::HighlyRestrictive
}

/// Whether two ids could name the same person: they are compared by [`key`], so that ids
/// that differ only in case, width, accents, normalisation, invisible characters or letters
/// of another script that look the same (Cyrillic `о` for Latin `o`) are one person. This
/// errs on the side of refusing: `bob` and `b0b` are one person too.
pub(crate) fn same_person(a: &str, b: &str) -> bool {
    key(a, true) == key(b, true) || key(a, false) == key(b, false)
}

/// A form ids are compared in: NFKC (compatibility forms), spaces collapsed, accents and
/// other combining marks removed, then the UTS #39 skeleton (which maps each letter to the
/// one it is confusable with and drops invisible characters), in lower case, without the
/// signs and spaces an id may hold (`m1.`, `m 1` and `m-1` are `m1`: a sign added to an
/// id names no one new). Case is folded before the skeleton (`ALICE` is `alice`, `ß` is
/// `ss`, `ı` is `i`) or only after it (so that a capital `I` is still confusable with
/// `l`): two ids are one person if either form is the same.
fn key(id: &str, fold_first: bool) -> String {
    let mut text: String = id.nfkc().collect();
    text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if fold_first {
        text = text
            .chars()
            .flat_map(char::to_lowercase)
            .collect::<String>()
            .replace('ß', "ss")
            .replace('ı', "i");
    }
    let bare: String = text.nfd().filter(|c| !is_combining_mark(*c)).collect();
    unicode_security::skeleton(&bare)
        .flat_map(char::to_lowercase)
        .filter(|c| !is_combining_mark(*c) && !is_sign(*c))
        .collect::<String>()
        .replace('ß', "ss")
        .replace('ı', "i")
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
            ("m1", "m1."),
            ("bob", "b ob"),
            ("j.smith", "j-smith"),
            ("alice", "'alice'"),
            ("alice", "alic\u{301}e"),
            ("alice", "ali\u{200b}ce"),
            ("jose", "jos\u{e9}"),
            ("alice", "aIice"),
            ("mallory", "malIory"),
            ("alice smith", "alice  smith"),
            ("ALICE", "al\u{456}ce"),
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
            ("...", "no letter or digit"),
            (" alice", "spaces"),
            ("alice\u{a0}", "spaces"),
            ("ali\u{1}ce", "control"),
            ("alice\u{200b}", "invisible character (U+200B)"),
            ("\u{feff}alice", "invisible character (U+FEFF)"),
            ("ali\u{ad}ce", "invisible character (U+00AD)"),
            ("alice\u{200f}", "invisible character (U+200F)"),
            ("alice\u{2060}", "invisible character (U+2060)"),
            ("alice\u{2800}", "U+2800"),
            ("sam\u{fff9}", "U+FFF9"),
            ("al\u{600}ice", "U+0600"),
            ("ali\u{3f2}e", "U+03F2"),
            ("\u{13aa}LICE", "U+13AA"),
            ("\u{1d00}lice", "U+1D00"),
            ("alic\u{e000}", "U+E000"),
            ("alic\u{fdd0}", "U+FDD0"),
            ("\u{ff41}lice", "U+FF41"),
            ("\u{1d41a}lice", "U+1D41A"),
            ("\u{24d0}lice", "U+24D0"),
            ("\u{1f150}lice", "U+1F150"),
            ("alice\u{1f3fb}", "U+1F3FB"),
            ("a.b@bank\u{3002}example", "U+3002"),
            ("alice  smith", "two spaces"),
            ("\u{53c}isa", "mixes letters of scripts"),
            ("u.schmidt\u{58a}review", "mixes letters of scripts"),
            ("\u{a78d}\u{435}\u{43d}", "mixes letters of scripts"),
            ("b\u{43e}b", "mixes letters of scripts"),
        ] {
            let problem = problem(id).unwrap_or_default();
            assert!(problem.contains(says), "{id:?}: {problem}");
        }
        assert!(problem(&"r".repeat(257)).is_some());
        assert_eq!(problem("u.schmidt@bank.example"), None);
        for id in [
            "Nguyễn Văn An",
            "ジョン・スミス",
            "Марʼяна",
            "Li 李",
            "김민준",
            "José Álvarez",
            "o'brien",
            "u.schmidt+review@bank.example",
            "Łukasz",
            "Müller",
            "İlker Yıldız",
            "Ζωή",
            "Алиса",
            "山田太郎",
            "r.adeyemi",
        ] {
            assert_eq!(problem(id), None, "{id}");
        }
    }
}
