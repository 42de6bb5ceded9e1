//! Tests of `[wasi]`: the grant that lets a WASI guest run, its diagnostics, and its
//! place in the canonical hash.

use super::*;

/// The reference example with a `[wasi]` table.
fn with_wasi(table: &str) -> String {
    format!("{EXAMPLE}\n[wasi]\n{table}\n")
}

#[test]
fn wasi_is_off_unless_the_policy_turns_it_on() {
    let without = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert!(!without.wasi);
    let with = parse(&with_wasi("enabled = true")).unwrap_or_else(|e| panic!("{e}"));
    assert!(with.wasi);
    let off = parse(&with_wasi("enabled = false")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!off.wasi);
}

/// The grant is governance: it changes the hash; `enabled = false` means what no
/// `[wasi]` means and hashes so, which is the hash a policy had before `[wasi]` existed.
#[test]
fn the_hash_covers_the_grant_and_nothing_else_changes() {
    let without = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        without.hash().to_string(),
        "0f7fae916cddf73f12ba3307781df8b676485486e8324987342d0ef02c9a8fb4"
    );
    let off = parse(&with_wasi("enabled = false")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(off.hash(), without.hash());
    let with = parse(&with_wasi("enabled = true")).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(with.hash(), without.hash());
    // The grant and an input contract: both are covered.
    let contract = format!(
        "{}\n[input]\nschema = '{{\"type\": \"object\"}}'\n",
        with_wasi("enabled = true")
    );
    let both = parse(&contract).unwrap_or_else(|e| panic!("{e}"));
    let only_contract = parse(&format!(
        "{EXAMPLE}\n[input]\nschema = '{{\"type\": \"object\"}}'\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let hashes = BTreeSet::from([
        without.hash(),
        with.hash(),
        both.hash(),
        only_contract.hash(),
    ]);
    assert_eq!(hashes.len(), 4);
    // An edition-1 shaped policy with the grant hashes under the new domain too.
    let v1 = "[policy]\nname = \"n\"\nversion = \"1\"\ninitial = \"a\"\n\
        [states.a]\ntransitions = [\"b\"]\n[states.b]\nterminal = true\n";
    let v1_wasi = format!("{v1}[wasi]\nenabled = true\n");
    let a = parse(v1).unwrap_or_else(|e| panic!("{e}"));
    let b = parse(&v1_wasi).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(a.hash(), b.hash());
}

#[test]
fn a_wasi_table_must_say_enabled_and_nothing_else() {
    let text = with_wasi("enabled = \"yes\"");
    let d = only(&text);
    assert_eq!(d.field, "wasi.enabled");
    assert_eq!(d.line, line_of(&text, "\"yes\""));
    assert!(d.to_string().contains("expected true or false"), "{d}");

    let text = with_wasi("enabled = true\nread_dir = \"/data\"");
    let d = only(&text);
    assert_eq!(d.field, "wasi.read_dir");
    assert_eq!(d.line, line_of(&text, "read_dir"));
    assert!(d.to_string().contains("allowed here: enabled"), "{d}");

    let text = with_wasi("");
    let d = only(&text);
    assert_eq!(d.field, "wasi.enabled");
    assert!(d.to_string().contains("enabled = true"), "{d}");
}
