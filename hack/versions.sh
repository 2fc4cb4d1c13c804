# Sourced (not run) by the hack/ scripts: exports every NAME=value of hack/versions.env, unless the environment
# already sets NAME (an explicit override wins). See hack/versions.env for the format and how to add a tool.
#   source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"
__oto_versions_file="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/versions.env"
while IFS= read -r __oto_line || [[ -n "$__oto_line" ]]; do
  [[ -z "$__oto_line" || "$__oto_line" == \#* ]] && continue
  if [[ ! "$__oto_line" =~ ^([A-Z][A-Z0-9_]*)=([^[:space:]\"\'$]+)$ ]]; then
    echo "hack/versions.env: not a NAME=value line: $__oto_line" >&2
    return 1
  fi
  if [[ -z "${!BASH_REMATCH[1]:-}" ]]; then export "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"; fi
done <"$__oto_versions_file"
unset __oto_line __oto_versions_file
