#!/bin/sh
# nonfree.sh FILE...: add the contrib and non-free components to the APT
# sources in FILEs (deb822 *.sources "Components:" lines and one-line
# "deb"/"deb-src" entries) that lack non-free, keeping their own mirrors:
# no host is named here. non-free-firmware does not count as non-free.
set -e
for f in "$@"; do
  [ -f "$f" ] || continue
  case "$f" in
    *.sources) sed -i -E '/^Components:/ { / non-free( |$)/! s/$/ contrib non-free/ }' "$f" ;;
    *) sed -i -E '/^[[:space:]]*deb(-src)?[[:space:]]/ { / non-free( |$)/! s/[[:space:]]*$/ contrib non-free/ }' "$f" ;;
  esac
done
