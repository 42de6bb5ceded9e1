#!/usr/bin/env bash
# The example audit report and its screenshot, linked from the README:
#
#   bash scripts/report-screenshot.sh    ->  docs/report-example.html, docs/report.png
#
# Builds the loan agent and the CLI; in a scratch journal signed by a fresh deployment
# key (target/report-example/), runs the application the confidence gate escalates, has
# an intern's decision refused and an underwriter approve it; writes the run's report
# with `warden report --key`; and takes a screenshot of it with headless Chromium
# (Debian's `chromium`, installed with apt-get if missing; run as root).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown >/dev/null
cargo build --release --target wasm32-unknown-unknown -p loan-agent
cargo build -p warden-cli

if ! command -v chromium >/dev/null; then
    echo "installing chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends chromium </dev/null >/dev/null
fi

warden=target/debug/warden
work=target/report-example
rm -rf "$work"
mkdir -p "$work" docs
export WARDEN_DB="$work/warden.redb"
"$warden" key generate --out "$work/deployment" >/dev/null
export WARDEN_SIGNING_KEY="$work/deployment.key"
export WARDEN_SUBMITTER=loan-officer

json_field() { sed -n "s/.*\"$1\": \"\\(.*\\)\".*/\\1/p" | head -n 1; }

code=0
out=$("$warden" run examples/loan-underwriting \
    --input examples/loan-underwriting/applications/05-gate-escalates.json --json) || code=$?
if [ "$code" != 10 ]; then
    echo "expected the gate to send the run to review (exit 10), got $code: $out" >&2
    exit 1
fi
run=$(printf '%s\n' "$out" | json_field run_id)
action=$("$warden" review "$run" --json | json_field action) || true
"$warden" review "$run" --decide approved --reviewer t.intern --role intern \
    --note "looks fine to me" --action "$action" >/dev/null 2>&1 || true
"$warden" review "$run" --decide approved --reviewer u.schmidt --role underwriter \
    --note "income verified with the employer by phone" --action "$action" >/dev/null

"$warden" report "$run" --key "$work/deployment.pub" -o docs/report-example.html --force

if grep -Eq 'https?://|<link|src=|<script' docs/report-example.html; then
    echo "docs/report-example.html refers to something outside itself" >&2
    exit 1
fi

chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1280,1800 --screenshot="$PWD/docs/report.png" \
    "file://$PWD/docs/report-example.html" >"$work/chromium.log" 2>&1 || {
    cat "$work/chromium.log" >&2
    exit 1
}
echo "docs/report-example.html, docs/report.png (run $run)"
