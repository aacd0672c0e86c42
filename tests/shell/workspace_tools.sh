#!/usr/bin/env bash
# Ordinary shell tools in a user's workspace through the mount. $M is the mount point,
# $AVIX_USER the user. Exits non-zero on the first surprise.
set -euo pipefail
ws="$M/users/$AVIX_USER/workspace"

ls "$M" | grep -qx proc
echo "first line" > "$ws/notes.txt"
echo "second line" >> "$ws/notes.txt"
[ "$(cat "$ws/notes.txt")" = $'first line\nsecond line' ]
mkdir "$ws/drafts"
mv "$ws/notes.txt" "$ws/drafts/notes.txt"
[ ! -e "$ws/notes.txt" ]
grep -q "second" "$ws/drafts/notes.txt"
cp "$ws/drafts/notes.txt" "$ws/copy.txt"
rm "$ws/drafts/notes.txt"
rmdir "$ws/drafts"
[ "$(ls "$ws")" = "copy.txt" ]
wc -l < "$ws/copy.txt" | grep -qx 2
sed -i 's/first/1st/' "$ws/copy.txt"
head -1 "$ws/copy.txt" | grep -qx "1st line"
printf 'x%.0s' $(seq 1 10000) > "$ws/big.txt"
[ "$(stat -c %s "$ws/big.txt")" = 10000 ]
rm "$ws/big.txt"
echo "workspace tools: ok"
