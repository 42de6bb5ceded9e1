#!/usr/bin/env bash
# Fails if library code of the runtime calls `.unwrap()` or `.expect(`: a guest or a user
# must never be able to panic the host (CONVENTIONS.md, "Errors"). Checked: every
# runtime/src/**/*.rs except main.rs (the binary may use anyhow and exit), up to the first
# `#[cfg(test)]` item other than an out-of-line `mod tests;` (by convention the test
# module is last). Files under a `tests/` directory are test modules themselves and are
# skipped. Prints each offence as file:line: text.
set -euo pipefail
cd "$(dirname "$0")/.."

found=0
while IFS= read -r -d '' file; do
    case "$file" in
        runtime/src/main.rs | */tests/*) continue ;;
    esac
    hits=$(awk '
        # `#[cfg(test)] mod tests;` only declares a module in another file: skip it and
        # go on. Any other `#[cfg(test)]` item is taken as the start of the test code.
        pending && /^[[:space:]]*$/ { next }
        pending && /^[[:space:]]*(pub(\([^)]*\))?[[:space:]]+)?mod[[:space:]]+[A-Za-z_0-9]+[[:space:]]*;/ {
            pending = 0
            next
        }
        pending { exit }
        /^[[:space:]]*#\[cfg\(test\)\]/ { pending = 1; next }
        {
            code = $0
            sub(/\/\/.*/, "", code)   # comments (including doc comments) may mention them
            if (code ~ /\.unwrap\(\)/ || code ~ /\.expect\(/) {
                printf "%s:%d: %s\n", FILENAME, FNR, $0
            }
        }
    ' "$file")
    if [ -n "$hits" ]; then
        printf '%s\n' "$hits"
        found=1
    fi
done < <(find runtime/src -name '*.rs' -print0 | sort -z)

if [ "$found" -ne 0 ]; then
    echo "error: .unwrap() / .expect( in runtime library code (outside #[cfg(test)] and main.rs);" >&2
    echo "       return a typed error instead (CONVENTIONS.md, Errors)" >&2
    exit 1
fi
echo "no-unwrap: runtime library code has no .unwrap() or .expect("
