//! The probability of each label of a classifying chat model, computed by the host from
//! the token log-probabilities the server returns, never taken from what the model says.
//!
//! The rule (`docs/bindings.md`, "chat"): find the token where the label begins in the
//! answer (the first token that is not blank or a quote, or, for a JSON answer, the token
//! where the value of `label` begins). Take its alternatives, the server's
//! `top_logprobs` there and the chosen token itself. Each alternative, stripped of what
//! comes before the label in that token and of leading blanks and quotes, counts for the
//! label it begins (case-insensitively), or that it spells out whole followed by a
//! non-word character, if it spells at least three of the label's characters (or the
//! whole of a shorter label). Its mass is e^logprob. P(label) is the label's mass divided
//! by the whole token's: the listed alternatives', labels or not, and what the server did
//! not list (which may be any other label's). So neither a server that lists few
//! alternatives nor a model hesitating between a label and other words can make a label
//! look more certain than the probability of its own tokens (the labels' share is
//! reported as `label_mass`). Labels must
//! therefore differ in their first token; an alternative that could begin two labels
//! (`app` for `approve` and `appeal`) makes the probabilities unknowable from one token,
//! and the inference has none.
//!
//! The token read is the one where the answer's label is: the answer has one `"label"`
//! (JSON), and the tokens from there on spell the label the answer gives; log-probabilities
//! are at most 0 and the alternatives of one token together at most 1. Otherwise the
//! numbers would describe another token, or no distribution at all.
//!
//! Invariant: a probability is returned only when it can be computed this way; anything
//! else is a [`NoProbability`] reason, and the inference records no per-label
//! probability, so a gate on it escalates.

use std::fmt;

/// One generated token, with its log-probability and the alternatives the server gave.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub text: String,
    pub logprob: f64,
    pub top: Vec<(String, f64)>,
}

/// Why no per-label probability could be computed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum NoProbability {
    /// The server returned no token log-probabilities.
    Missing,
    /// The label could not be found among the tokens.
    NotLocated,
    /// An alternative begins two labels.
    Ambiguous { token: String, labels: Vec<String> },
    /// No alternative at the label's token begins a label.
    NoLabel,
    /// The tokens at the label's place do not spell the label the answer gives.
    Disagrees { said: String },
    /// The log-probabilities are not a distribution (above 0, or summing above 1).
    Malformed(String),
}

impl fmt::Display for NoProbability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoProbability::Missing => f.write_str("the server returned no token log-probabilities"),
            NoProbability::NotLocated => {
                f.write_str("the label's first token could not be found among the returned tokens")
            }
            NoProbability::Ambiguous { token, labels } => write!(
                f,
                "token {token:?} begins {}: the first token cannot tell these labels apart",
                labels.join(" and ")
            ),
            NoProbability::NoLabel => {
                f.write_str("no alternative of the label's first token begins a label")
            }
            NoProbability::Disagrees { said } => write!(
                f,
                "the returned tokens at the label's place do not spell the answer's label {said:?}"
            ),
            NoProbability::Malformed(why) => {
                write!(
                    f,
                    "the token log-probabilities are not probabilities: {why}"
                )
            }
        }
    }
}

/// Each label's probability, in `labels`' order, and the share of the token's
/// probability that went to labels.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LabelProbabilities {
    pub probabilities: Vec<(String, f64)>,
    pub label_mass: f64,
}

/// Byte offset in `text` where the label begins: after leading blanks and quotes, or,
/// for a JSON answer, where the value of its `label` field begins.
pub(super) fn label_offset(text: &str, json: bool) -> Option<usize> {
    if !json {
        return text
            .char_indices()
            .find(|(_, c)| !is_filler(*c))
            .map(|(i, _)| i);
    }
    // One `"label"` only: a second one (a repeated key, a nested object, a value that is
    // the word) could put the label read here elsewhere than the one the answer gives.
    let first = text.find("\"label\"")?;
    if text.get(first + 1..)?.contains("\"label\"") {
        return None;
    }
    let key = first + "\"label\"".len();
    let colon = key + text.get(key..)?.find(':')? + 1;
    let quote = colon + text.get(colon..)?.find('"')? + 1;
    Some(quote)
}

/// Computes each label's probability from `tokens` (see the module's rule).
pub(super) fn label_probabilities(
    labels: &[String],
    tokens: &[Token],
    json: bool,
    said: &str,
) -> Result<LabelProbabilities, NoProbability> {
    if tokens.is_empty() {
        return Err(NoProbability::Missing);
    }
    let joined: String = tokens.iter().map(|t| t.text.as_str()).collect();
    let offset = label_offset(&joined, json).ok_or(NoProbability::NotLocated)?;
    let spelled = joined.get(offset..).unwrap_or("").to_lowercase();
    if !spelled.starts_with(&said.to_lowercase()) {
        return Err(NoProbability::Disagrees {
            said: said.to_string(),
        });
    }
    let mut start = 0;
    let mut found = None;
    for token in tokens {
        let end = start + token.text.len();
        if (start..end).contains(&offset) {
            found = Some((token, joined.get(start..offset).unwrap_or("")));
            break;
        }
        start = end;
    }
    let (token, before) = found.ok_or(NoProbability::NotLocated)?;
    let mut alternatives: Vec<(&str, f64)> =
        token.top.iter().map(|(t, p)| (t.as_str(), *p)).collect();
    if !alternatives.iter().any(|(t, _)| *t == token.text) {
        alternatives.push((&token.text, token.logprob));
    }
    let lower: Vec<String> = labels.iter().map(|l| l.to_lowercase()).collect();
    let mut mass = vec![0.0_f64; labels.len()];
    let mut listed = 0.0_f64;
    for (text, logprob) in alternatives {
        if logprob > MAX_LOGPROB {
            return Err(NoProbability::Malformed(format!(
                "token {text:?} has log-probability {logprob}, above 0"
            )));
        }
        if logprob.is_finite() {
            listed += logprob.exp();
        }
        let rest = match text.strip_prefix(before) {
            Some(rest) => rest,
            None if before.chars().all(is_filler) => text,
            None => continue,
        };
        let rest = rest.trim_start_matches(is_filler).to_lowercase();
        if rest.is_empty() || !logprob.is_finite() {
            continue;
        }
        let begun: Vec<usize> = (0..labels.len())
            .filter(|&i| begins(&rest, &lower[i]))
            .collect();
        match begun.as_slice() {
            [] => {}
            [one] => mass[*one] += logprob.exp(),
            several => {
                return Err(NoProbability::Ambiguous {
                    token: text.to_string(),
                    labels: several.iter().map(|&i| labels[i].clone()).collect(),
                });
            }
        }
    }
    if listed > 1.0 + MASS_TOLERANCE {
        return Err(NoProbability::Malformed(format!(
            "the alternatives of one token add up to {listed}, more than 1"
        )));
    }
    let total: f64 = mass.iter().sum();
    if total <= 0.0 || !total.is_finite() {
        return Err(NoProbability::NoLabel);
    }
    // Everything else counts against every label: what the server did not list (it may be
    // another label's), and the alternatives that begin no label (a model about to say
    // something else is not confident of any label). So P(label) is the label's share of
    // the whole token's probability, never more.
    let whole = listed.max(total) + (1.0 - listed).max(0.0);
    Ok(LabelProbabilities {
        probabilities: labels
            .iter()
            .zip(&mass)
            .map(|(label, m)| (label.clone(), m / whole))
            .collect(),
        label_mass: total.min(1.0),
    })
}

/// The fewest characters of a label an alternative must spell to count for it.
const MIN_FRAGMENT: usize = 3;

/// The most a log-probability may exceed 0 (a server's float rounding).
const MAX_LOGPROB: f64 = 1e-4;
/// The most the alternatives of one token may add up to beyond 1 (the same rounding).
const MASS_TOLERANCE: f64 = 1e-3;

/// Whether a (lower-case) alternative `rest` begins `label`, or spells it out whole
/// followed by something that is not part of a word.
fn begins(rest: &str, label: &str) -> bool {
    // A fragment shorter than MIN_FRAGMENT chars (`a`, `A`) begins too many words to be
    // counted for a label: leaving it out can only lower the label's probability.
    (label.starts_with(rest) && rest.chars().count() >= MIN_FRAGMENT.min(label.chars().count()))
        || rest.strip_prefix(label).is_some_and(|after| {
            after
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'))
        })
}

/// Blanks and quotes that may stand before a label.
fn is_filler(c: char) -> bool {
    c.is_whitespace() || c == '"' || c == '\'' || c == '`'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(text: &str, logprob: f64, top: &[(&str, f64)]) -> Token {
        Token {
            text: text.into(),
            logprob,
            top: top.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        }
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn a_label_gets_its_share_of_the_whole_token_other_words_included() {
        // "approve" is 0.7, "decline" 0.2, " Approve" 0.05 (counts for approve), "maybe"
        // 0.05 (a word that is no label: it counts against both).
        let tokens = [token(
            "approve",
            0.7_f64.ln(),
            &[
                ("approve", 0.7_f64.ln()),
                ("decline", 0.2_f64.ln()),
                (" Approve", 0.05_f64.ln()),
                ("maybe", 0.05_f64.ln()),
            ],
        )];
        let result =
            label_probabilities(&labels(&["approve", "decline"]), &tokens, false, "approve")
                .expect("probabilities");
        assert!(close(result.probabilities[0].1, 0.75), "{result:?}");
        assert!(close(result.probabilities[1].1, 0.2), "{result:?}");
        assert!(close(result.label_mass, 0.95), "{result:?}");
    }

    #[test]
    fn a_one_letter_fragment_does_not_count_for_the_label_it_could_begin() {
        // "approve" 0.5, "a" and "A" 0.2 each: "a" begins many words, so P(approve) is 0.5,
        // not 0.9.
        let tokens = [token(
            "approve",
            0.5_f64.ln(),
            &[
                ("approve", 0.5_f64.ln()),
                ("a", 0.2_f64.ln()),
                ("A", 0.2_f64.ln()),
                ("decline", 0.1_f64.ln()),
            ],
        )];
        let result =
            label_probabilities(&labels(&["approve", "decline"]), &tokens, false, "approve")
                .expect("probabilities");
        assert!(close(result.probabilities[0].1, 0.5), "{result:?}");
        assert!(close(result.probabilities[1].1, 0.1), "{result:?}");
    }

    #[test]
    fn a_multi_token_label_counts_by_its_first_token() {
        // "fraud_suspected" generated as "fra" + "ud_suspected"; "legit" as one token.
        let tokens = [
            token("fra", -0.1, &[("fra", -0.1), ("leg", -2.4)]),
            token("ud_suspected", -0.01, &[]),
        ];
        let result = label_probabilities(
            &labels(&["fraud_suspected", "legitimate"]),
            &tokens,
            false,
            "fraud_suspected",
        )
        .expect("probabilities");
        // The 1 - p - q the server did not list may be `legitimate`'s: P = p / 1.
        let (p, q) = ((-0.1_f64).exp(), (-2.4_f64).exp());
        assert!(
            close(result.probabilities[0].1, p / (p + q + (1.0 - p - q))),
            "{result:?}"
        );
    }

    #[test]
    fn a_json_answer_is_read_at_the_value_of_label() {
        let tokens = [
            token("{\"", -0.0, &[]),
            token("label", -0.0, &[]),
            token("\":\"", -0.0, &[]),
            token("deny", -0.5, &[("deny", -0.5), ("pay", -1.0)]),
            token("\"}", -0.0, &[]),
        ];
        let result = label_probabilities(&labels(&["pay", "deny"]), &tokens, true, "deny")
            .expect("probabilities");
        let (d, p) = ((-0.5_f64).exp(), (-1.0_f64).exp());
        assert!(
            close(result.probabilities[1].1, d / (d + p + (1.0 - d - p))),
            "{result:?}"
        );
        // A token that holds the quote and the label's start is read past the quote.
        let tokens = [
            token("{\"label\":", -0.0, &[]),
            token(
                "\"pay",
                -0.2,
                &[("\"pay", -0.2), ("\"deny", -3.0), ("\"", -4.0)],
            ),
            token("\"}", -0.0, &[]),
        ];
        let result = label_probabilities(&labels(&["pay", "deny"]), &tokens, true, "pay")
            .expect("probabilities");
        // The lone quote begins no label, so it counts against both: P(pay) = p / 1.
        let p = (-0.2_f64).exp();
        assert!(close(result.probabilities[0].1, p), "{result:?}");
    }

    #[test]
    fn what_cannot_be_computed_is_said() {
        let both = labels(&["approve", "appeal"]);
        let tokens = [
            token("app", -0.1, &[("app", -0.1)]),
            token("rove", -0.1, &[]),
        ];
        assert!(matches!(
            label_probabilities(&both, &tokens, false, "approve"),
            Err(NoProbability::Ambiguous { .. })
        ));
        let tokens = [token("maybe", -0.1, &[("perhaps", -3.0)])];
        assert_eq!(
            label_probabilities(&labels(&["yes", "no"]), &tokens, false, "maybe"),
            Err(NoProbability::NoLabel)
        );
        assert_eq!(
            label_probabilities(&labels(&["yes", "no"]), &[], false, "yes"),
            Err(NoProbability::Missing)
        );
        // A word that only begins with a label is not it.
        let tokens = [token("yesterday", -0.1, &[])];
        assert_eq!(
            label_probabilities(&labels(&["yes", "no"]), &tokens, false, "yes"),
            Err(NoProbability::NoLabel)
        );
    }

    #[test]
    fn a_server_cannot_make_a_label_look_more_certain_than_its_tokens_say() {
        let ln = f64::ln;
        let approve = labels(&["approve", "decline"]);
        // No alternative listed but the chosen token, at 0.3: the other 0.7 may be
        // `decline`'s, so P(approve) is 0.3, not 1.
        for top in [&[][..], &[("approve", ln(0.3))][..]] {
            let tokens = [token("approve", ln(0.3), top)];
            let result = label_probabilities(&approve, &tokens, false, "approve").expect("p");
            assert!(close(result.probabilities[0].1, 0.3), "{result:?}");
        }
        // Listing one alternative three times, or a log-probability above 0, is no
        // distribution.
        let tokens = [token(
            "approve",
            ln(0.5),
            &[
                ("approve", ln(0.5)),
                ("approve", ln(0.5)),
                ("decline", ln(0.45)),
            ],
        )];
        assert!(matches!(
            label_probabilities(&approve, &tokens, false, "approve"),
            Err(NoProbability::Malformed(_))
        ));
        let tokens = [token("approve", 5.0, &[("decline", ln(0.5))])];
        assert!(matches!(
            label_probabilities(&approve, &tokens, false, "approve"),
            Err(NoProbability::Malformed(_))
        ));
        // The tokens spell `approve`, the answer says `decline`.
        let tokens = [token("approve", ln(0.99), &[("decline", ln(0.01))])];
        assert!(matches!(
            label_probabilities(&approve, &tokens, false, "decline"),
            Err(NoProbability::Disagrees { .. })
        ));
        // A JSON answer whose first `label` is not the one it gives (a repeated key, whose
        // last value a parser keeps, or the word as a value before the key) is not read.
        let sure = [("approve", ln(0.99)), ("decline", ln(0.01))];
        let unsure = [("decline", ln(0.7)), ("approve", ln(0.3))];
        for (head, middle) in [
            ("{\"label\":\"", "\",\"label\":\""),
            ("{\"note\":\"label\",\"x\":\"", "\",\"label\":\""),
        ] {
            let tokens = [
                token(head, 0.0, &[]),
                token("approve", ln(0.99), &sure),
                token(middle, 0.0, &[]),
                token("decline", ln(0.7), &unsure),
                token("\"}", 0.0, &[]),
            ];
            assert_eq!(
                label_probabilities(&approve, &tokens, true, "decline"),
                Err(NoProbability::NotLocated),
                "{head}"
            );
        }
    }
}
