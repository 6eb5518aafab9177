#!/usr/bin/env bash
# Issue #9's "reports unchanged": `wattlens report --json`, and the table `wattlens report`
# prints, of each trace by two builds, compared byte for byte. Build the old one from a worktree first, for example:
#   git worktree add /tmp/old REV && cargo build --release --manifest-path /tmp/old/Cargo.toml
#   bash scripts/same-reports.sh /tmp/old/target/release/wattlens target/release/wattlens T.wlt...
# Prints `same` or `DIFFERENT` per trace; exits 1 if any differs.
set -u
old=$1 new=$2; shift 2
status=0
tmp=$(mktemp -d)
for t in "$@"; do
  "$old" report --json "$t" >"$tmp/old.json" 2>/dev/null
  "$new" report --json "$t" >"$tmp/new.json" 2>/dev/null
  "$old" report "$t" >"$tmp/old.txt" 2>/dev/null
  "$new" report "$t" >"$tmp/new.txt" 2>/dev/null
  if cmp -s "$tmp/old.json" "$tmp/new.json" && cmp -s "$tmp/old.txt" "$tmp/new.txt"; then
    echo "same $t"
  else
    echo "DIFFERENT $t"
    status=1
  fi
done
rm -rf "$tmp"
exit $status
