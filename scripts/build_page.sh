#!/usr/bin/env bash
# Build one notebook as a one-page book, with the project's settings, warnings as
# errors, into /tmp/page-<name>/_build. For checking a chapter while writing it;
# references to other chapters are reported as missing here (the full `make book`
# resolves them).
#   scripts/build_page.sh book/05-masking.ipynb
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nb=$1
stem=$(basename "${nb%.*}")
dir=/tmp/page-$stem
rm -rf "$dir"; mkdir -p "$dir/book"
cp "$root/_config.yml" "$root/references.bib" "$dir/"
cp "$root/$nb" "$root/book/bibliography.md" "$dir/book/"
ln -s "$root/book/_vendor" "$dir/book/_vendor"
ln -s "$root/book/_ext" "$dir/book/_ext"
# The bibliography page makes {cite} resolve in the one-page build too.
printf 'format: jb-book\nroot: book/%s\nchapters:\n  - file: book/bibliography\n' "$stem" > "$dir/_toc.yml"
cd "$dir"
"$root/.venv/bin/jupyter-book" build . --all -W -n --keep-going
echo "page: $dir/_build/html/book/$stem.html"
