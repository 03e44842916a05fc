#!/usr/bin/env bash
# The tool-confinement tests that need the real kernel: Landlock, a network
# namespace, seccomp, dropping root's capabilities and changing user. They
# are #[ignore]d in tests/harness.rs so that `cargo test` never counts them
# as passed where they cannot run; this script runs them by name and fails
# when what they need is missing here.
#
# Needs: Linux with Landlock enabled (5.13+, `landlock` in the lsm= list),
# root (the tools of a root node run as nobody; the test checks it),
# python3 in /usr/bin or /bin and setpriv (util-linux), installed with
# apt-get when missing, and unprivileged user namespaces (one test runs the
# launcher as nobody, as an unprivileged node would).
#
#   scripts/confinement-tests.sh     (CI runs it from .ci/run, as root)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "confinement-tests: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (a root node's tools must run as nobody, without capabilities)"
[ "$(uname -s)" = Linux ] || fail "needs Linux (Landlock, namespaces, seccomp)"

missing=()
if [ ! -x /usr/bin/python3 ] && [ ! -x /bin/python3 ]; then missing+=(python3); fi
command -v setpriv >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null \
        || fail "${missing[*]} missing and could not be installed with apt-get"
fi

# Descriptors whatever started this script left open across exec would
# reach the launcher run by hand below, which refuses them: close them.
for fd in $(ls /proc/$$/fd); do
    if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
done

cargo build --quiet --bin jaros
# What a tool of this node would get; the launcher refuses (exit 125) and
# says why when the kernel cannot confine it.
probe=$(target/debug/jaros __sandbox-exec --probe --deny-net --uid 65534 --gid 65534) \
    || fail "the launcher cannot confine a tool here (see above)"
echo "launcher probe: $probe"

tests=(
    a_tool_is_confined_by_the_kernel_where_landlock_is_present
    a_child_that_tries_to_leave_the_process_group_is_killed_with_the_tool_when_confined
    confinement_status_names_every_layer_in_place
    a_tool_whose_role_grants_no_host_sends_no_udp_no_dns_and_reaches_no_unix_socket
    a_tool_of_a_root_node_runs_as_nobody_without_any_capability
    a_descriptor_the_node_holds_without_close_on_exec_is_closed_before_the_tool_runs
    the_node_manifest_names_the_user_a_root_nodes_tools_run_as
    an_unprivileged_node_gets_its_tools_a_network_namespace_through_a_user_namespace
)
# One test at a time: one of them opens a descriptor across exec in the
# test process itself, which a test running beside it would also hand on.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --test harness -- --ignored --exact --test-threads=1 "${tests[@]}" | tee "$log"
# A renamed test would match nothing and pass silently: count them.
grep -q "test result: ok. ${#tests[@]} passed" "$log" \
    || fail "expected ${#tests[@]} confinement tests to pass"
