# Strict reader of the testbed's environment (`scripts/testbed env NAME`), sourced by scripts/testbed
# and scripts/demo. The format is one ST_NAME='value' line per variable, the value single-quoted
# with '\'' for a quote. A line of any other shape is an error — never shell code: nothing read
# here is ever evaluated, values are assigned with printf -v under names that can only be ST_*.

# ERE for one line: the name, then a single-quoted value of non-quote characters and '\'' pairs.
readonly ST_ENV_LINE_RE="^(ST_[A-Z0-9_]+)='(([^']|'\\\\'')*)'\$"

# st_env_read: parses stdin into the arrays ST_ENV_KEYS and ST_ENV_VALUES. Returns 1 at the first
# bad line (kept in ST_ENV_BAD) and when there is no variable at all.
st_env_read() {
  local line
  ST_ENV_KEYS=() ST_ENV_VALUES=() ST_ENV_BAD=
  while IFS= read -r line || [[ -n "$line" ]]; do
    [[ -n "$line" ]] || continue
    if [[ ! "$line" =~ $ST_ENV_LINE_RE ]]; then
      ST_ENV_BAD=$line
      return 1
    fi
    ST_ENV_KEYS+=("${BASH_REMATCH[1]}")
    ST_ENV_VALUES+=("${BASH_REMATCH[2]//"'\\''"/"'"}")
  done
  ((${#ST_ENV_KEYS[@]} > 0))
}

# st_env_quote VALUE: VALUE single-quoted for a shell ('\'' for a quote).
st_env_quote() {
  printf "'%s'" "${1//\'/\'\\\'\'}"
}
