#!/usr/bin/env bash
# Print the fenced code block of README.md that follows the marker `<!-- ci: NAME ...-->`,
# without its fences. .ci/run runs what this prints (NAME=test-steps), so CI runs the README's
# lines exactly as written; tests/test_readme_ci.py checks the extraction.
#
#   scripts/readme-block.sh NAME [FILE]
set -euo pipefail
name=${1:?usage: readme-block.sh NAME [FILE]}
file=${2:-"$(dirname "$0")/../README.md"}
block=$(awk -v marker="<!-- ci: $name " '
  index($0, marker) == 1 { found = 1; next }
  found && !open && /^```/ { open = 1; next }
  open && /^```[[:space:]]*$/ { done = 1; exit }
  open { print }
  END { if (!done) exit 1 }
' "$file") || { echo "readme-block: no complete block after '<!-- ci: $name' in $file" >&2; exit 1; }
[ -n "$block" ] || { echo "readme-block: the block '$name' in $file is empty" >&2; exit 1; }
printf '%s\n' "$block"
