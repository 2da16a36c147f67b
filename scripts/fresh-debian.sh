#!/bin/sh
# fresh-debian.sh -- the newcomer's check: on a scratch Debian 12 root
# (debootstrap minbase from this machine's configured Debian mirror, plus git
# and make, as the README says), clone this checkout into /root and run the
# README's two commands there on the first try.
#
# Usage (as root): scripts/fresh-debian.sh [--user] [--run-only] [--keep] [DIR]
#   --user      as a non-root user (checkout in its home) instead of root in /root:
#               each command must first print the apt-get line and fail, root runs
#               exactly that line, then the same command must work
#   --run-only  `make run` only (it installs, builds, serves; the README's curl
#               examples that stay on this machine are tried), not `make test`
#   --keep      keep DIR afterwards (default: removed)
#   DIR         where the root is built (default: a new directory under /var/tmp)
# The clone is of HEAD's committed tree, not of uncommitted changes.
# Traffic: debootstrap and apt-get reach the configured Debian mirror; egressd's
# traffic stays on loopback (the allowed example.com request of the README is not
# sent: it would leave the machine). Prints how long each step took.
set -eu

user=0 runonly=0 keep=0 dir=""
for a in "$@"; do
	case $a in
	--user) user=1 ;;
	--run-only) runonly=1 ;;
	--keep) keep=1 ;;
	-*) echo "usage: $0 [--user] [--run-only] [--keep] [DIR]" >&2; exit 2 ;;
	*) dir=$a ;;
	esac
done
[ "$(id -u)" = 0 ] || { echo "fresh-debian.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
[ -n "$dir" ] || dir=$(mktemp -d /var/tmp/egressd-fresh.XXXXXX)
export DEBIAN_FRONTEND=noninteractive

t0=$(date +%s)
step() { echo "fresh-debian: [$(($(date +%s) - t0)) s] $*" >&2; }

# the Debian mirror this machine's apt uses (deb822 or one-line sources)
mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*\/debian\)\/* .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
[ -n "$mirror" ] || { echo "fresh-debian.sh: no Debian mirror in /etc/apt/sources.list*" >&2; exit 2; }

if ! command -v debootstrap >/dev/null; then
	step "installing debootstrap"
	apt-get update -qq >/dev/null && apt-get install -y -qq debootstrap >/dev/null
fi

# pids of the processes whose root is the scratch root
in_root_pids() {
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$dir" ] && echo "${p#/proc/}"
	done
	return 0
}

cleanup() {
	# what still runs in the root, then every mount under it, innermost first
	kill -9 $(in_root_pids) 2>/dev/null || true
	for m in $(awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	[ $keep = 1 ] || rm -rf "$dir"
}
trap cleanup EXIT INT TERM

step "debootstrap --variant=minbase bookworm $dir $mirror"
debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 ||
	{ tail -n 20 "$dir.debootstrap.log" >&2; exit 1; }
rm -f "$dir.debootstrap.log"

# what `ip netns exec` and the test suite need: / a mount point, proc, sys,
# dev, a tmpfs /run (netns mounts), the host's resolver for apt
mount --bind "$dir" "$dir"
mount -t proc proc "$dir/proc"
mount -t sysfs sys "$dir/sys"
mount --rbind /dev "$dir/dev"
mount -t tmpfs tmpfs "$dir/run"
mkdir -p "$dir/run/lock"
cp /etc/resolv.conf "$dir/etc/resolv.conf"

inroot() { chroot "$dir" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME=/root TERM=dumb LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive /bin/sh -c "$1"; }

step "apt-get install git make (the README's first line)"
inroot "apt-get update -qq >/dev/null && apt-get install -y -qq git make >/dev/null"

who=root co=/root/egressd
if [ $user = 1 ]; then
	who=newcomer co=/home/newcomer/egressd
	inroot "useradd -m -s /bin/sh newcomer"
fi
git clone -q "$src" "$dir$co"
[ $user = 0 ] || inroot "chown -R newcomer: $co"

# as_who CMD: CMD in the checkout, as root or as the newcomer
as_who() {
	if [ $user = 1 ]; then
		inroot "cd $co && su newcomer -c '$1'"
	else
		inroot "cd $co && $1"
	fi
}

# install_printed LOG: a non-root command printed the apt-get line and failed;
# root runs exactly that line
install_printed() {
	line=$(sed -n 's/^  \(apt-get update && apt-get install .*\)$/\1/p' "$1" | head -n 1)
	[ -n "$line" ] || { echo "fresh-debian.sh: no apt-get line printed:" >&2; tail -n 20 "$1" >&2; exit 1; }
	step "root runs the printed line: $line"
	inroot "$line >/dev/null"
}

# try_run: `make run` in the background; wait for the listener, then the
# README's loopback-only curl example and `egressd check`; stop it
try_run() {
	log=$dir/tmp/make-run.log
	if inroot "curl -s -o /dev/null http://127.0.0.1:3128/" 2>/dev/null; then
		echo "fresh-debian.sh: something already listens on 127.0.0.1:3128" >&2
		exit 1
	fi
	step "$who: make run"
	if [ $user = 1 ]; then
		as_who "make run" >"$log" 2>&1 && { echo "fresh-debian.sh: make run without packages succeeded?" >&2; exit 1; }
		install_printed "$log"
	fi
	as_who "make run" >"$log" 2>&1 &
	i=0
	until inroot "curl -s -o /dev/null http://127.0.0.1:3128/" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt 1200 ] || ! kill -0 $! 2>/dev/null; then
			echo "fresh-debian.sh: $who's first make run did not serve on 127.0.0.1:3128:" >&2
			tail -n 30 "$log" >&2
			exit 1
		fi
		sleep 0.5
	done
	step "$who: egressd serves on the first make run; the README's examples"
	inroot "curl -sS -x http://127.0.0.1:3128 https://denied.test/ -v" >"$dir/tmp/curl.out" 2>&1 || true
	grep -q "X-Egressd-Reason: not-allowed" "$dir/tmp/curl.out" ||
		{ echo "fresh-debian.sh: denied.test did not get egressd's 403:" >&2; cat "$dir/tmp/curl.out" >&2; exit 1; }
	as_who "build/egressd check -c examples/policy.json api.example.com denied.test:443" >&2 || true
	kill $(in_root_pids) 2>/dev/null || true
	wait || true
}

# try_test: make test must end "N passed, 0 failed[, N skipped]"
try_test() {
	log=$dir/tmp/make-test.log
	step "$who: make test"
	if [ $user = 1 ]; then
		as_who "make test" >"$log" 2>&1 && { echo "fresh-debian.sh: make test without packages succeeded?" >&2; exit 1; }
		install_printed "$log"
	fi
	as_who "make test" >"$log" 2>&1 || true
	last=$(tail -n 1 "$log")
	step "$who: make test: $last"
	echo "$last" | grep -Eq '^[0-9]+ passed, 0 failed(, [0-9]+ skipped)?$' ||
		{ grep -E '^(not ok|# )' "$log" | tail -n 40 >&2; exit 1; }
}

try_run
[ $runonly = 1 ] || try_test
step "done"
