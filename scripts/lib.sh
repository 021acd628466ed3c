# Shell helpers of the project's scripts (sourced, not run).

# a TCP port of 127.0.0.1 free at the time of asking
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_service NAME: runs scripts/NAME.sh start and evaluates the export lines it prints. A service that does
# not start fails here, so `set -e` stops the caller (it would not see a failing command substitution inside
# eval "$(...)").
start_service() {
  local out
  out=$("scripts/$1.sh" start) || { echo "scripts/$1.sh did not start" >&2; return 1; }
  eval "$out"
}
