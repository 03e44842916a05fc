#!/usr/bin/env bash
# Several hosts on one data dir, as one machine can show them: an OpenSSH
# server on 127.0.0.1 with a throwaway key exports a directory, mounted three
# times with sshfs (attribute caching on), one mount per node; then the
# ignored test in tests/sshfs.rs runs three nodes over them (3,000 jobs, one
# node SIGKILLed and restarted) and checks every job has exactly one result
# and verify and replay pass; first, exclusive creates and lease links raced
# from the three mounts must each have one winner and no error.
#
# Installs openssh-server and sshfs from Debian (apt-get; run as root).
# Exits non-zero when any of it cannot be set up (no /dev/fuse, no
# packages, no server, no mount): it never passes without having run.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "sshfs-test: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs packages, starts sshd and mounts FUSE file systems)"
if ! command -v sshfs >/dev/null || ! [ -x /usr/sbin/sshd ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed"
    apt-get install -y -qq openssh-server openssh-client sshfs >/dev/null \
        || fail "cannot install openssh-server and sshfs from Debian"
fi
[ -c /dev/fuse ] || fail "/dev/fuse is missing: FUSE is not available here, so sshfs cannot mount"

work=$(mktemp -d /tmp/jaros-sshfs.XXXXXX)
sshd_pid=""
cleanup() {
    for m in "$work"/m1 "$work"/m2 "$work"/m3; do
        mountpoint -q "$m" 2>/dev/null && fusermount -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/user_key"
cp "$work/user_key.pub" "$work/authorized_keys"
chmod 600 "$work/authorized_keys"
mkdir -p /run/sshd "$work/export" "$work/m1" "$work/m2" "$work/m3"

# A free port on loopback.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 22922)
cat >"$work/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
PidFile $work/sshd.pid
EOF
/usr/sbin/sshd -f "$work/sshd_config" -E "$work/sshd.log" || fail "sshd did not start: $(cat "$work/sshd.log" 2>/dev/null)"
for _ in $(seq 50); do [ -s "$work/sshd.pid" ] && break; sleep 0.1; done
sshd_pid=$(cat "$work/sshd.pid" 2>/dev/null) || fail "sshd wrote no pid file: $(cat "$work/sshd.log")"

# Attribute caching on (sshfs's own cache, 2 s, and the kernel's, 1 s).
opts="port=$port,IdentityFile=$work/user_key,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes"
opts="$opts,cache=yes,cache_timeout=2,attr_timeout=1"
for m in m1 m2 m3; do
    sshfs -o "$opts" "root@127.0.0.1:$work/export" "$work/$m" \
        || fail "sshfs could not mount $work/export on $work/$m"
    mountpoint -q "$work/$m" || fail "$work/$m is not a mount point after sshfs"
done
echo "sshfs-test: sshd on 127.0.0.1:$port, $work/export mounted on $work/m1 m2 m3"

JAROS_SSHFS_EXPORT="$work/export" \
JAROS_SSHFS_MOUNTS="$work/m1:$work/m2:$work/m3" \
    cargo test --test sshfs -- --ignored --exact --nocapture \
    exclusive_creates_raced_across_sshfs_mounts_have_one_winner_and_no_error \
    three_nodes_on_their_own_sshfs_mounts_run_every_job_exactly_once
