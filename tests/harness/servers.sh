#!/bin/bash
# tests/harness/servers.sh: the servers the integration tests talk to.
#
#   servers.sh start DIR   start them under DIR (a fresh directory)
#   servers.sh stop DIR    stop them (safe to call twice, or after a
#                          half-finished start)
#
# start brings up
#   - a throwaway PostgreSQL 15 cluster in DIR/pg/data, reachable only by
#     its Unix socket in DIR/pg (log: DIR/pg/log), trust authentication,
#     user postgres, no fsync;
#   - Postfix's smtp-sink on a free 127.0.0.1 port, writing each message
#     it receives to its own file DIR/smtp/YYYYmmddHHMMSS.RANDOM (log:
#     DIR/smtp-sink.log, pid: DIR/smtp-sink.pid);
# and writes DIR/env, a file to source:
#   export PGHOST=DIR/pg PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
#          ASSENT_TEST_SMTP_PORT=N ASSENT_TEST_SMTP_DIR=DIR/smtp
#          ASSENT_TEST_REQUIRE_SERVERS=1
#
# As root, PostgreSQL runs as the postgres user and smtp-sink drops to
# nobody; otherwise both run as the caller.
set -euo pipefail

PGBIN=/usr/lib/postgresql/15/bin
if [ ! -x "$PGBIN/pg_ctl" ] && command -v pg_config >/dev/null 2>&1; then
	PGBIN=$(pg_config --bindir)
fi
SMTP_SINK=/usr/sbin/smtp-sink

die()
{
	echo "servers.sh: $*" >&2
	exit 1
}

usage()
{
	echo "usage: servers.sh start|stop DIR" >&2
	exit 64
}

is_root()
{
	[ "$(id -u)" -eq 0 ]
}

# Run a command as the user that owns the cluster.
as_pg()
{
	if is_root; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# A TCP port on 127.0.0.1 that nothing listened on a moment ago.
free_port()
{
	/usr/bin/python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

pg_start()
{
	local dir=$1 pg=$1/pg

	mkdir -p "$pg"
	if is_root; then
		id postgres >/dev/null 2>&1 ||
		    die "no postgres user: install the postgresql package (contrib/deps)"
		chown postgres: "$pg"
	fi
	chmod 700 "$pg"
	as_pg "$PGBIN/initdb" -D "$pg/data" -A trust -U postgres -E UTF8 \
	    --no-sync --no-instructions >"$dir/initdb.log" 2>&1 ||
	    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
	# The socket directory must be reachable by the tests, which may run
	# as another user than the cluster.
	chmod 755 "$pg"
	as_pg "$PGBIN/pg_ctl" -D "$pg/data" -l "$pg/log" -w -t 60 -o "-k $pg \
-c listen_addresses= -c port=5432 -c fsync=off -c full_page_writes=off \
-c synchronous_commit=off -c max_connections=200" start >/dev/null ||
	    { cat "$pg/log" >&2 2>/dev/null; die "PostgreSQL did not start"; }
}

pg_stop()
{
	local pg=$1/pg

	[ -f "$pg/data/postmaster.pid" ] || return 0
	as_pg "$PGBIN/pg_ctl" -D "$pg/data" -m immediate -w -t 30 stop \
	    >/dev/null 2>&1 || true
}

sink_start()
{
	local dir=$1 port pid
	local user=()

	mkdir -p "$dir/smtp"
	if is_root; then
		chown nobody "$dir/smtp"
		user=(-u nobody)
	fi
	# A port can be taken between free_port and smtp-sink binding it:
	# try a few.
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		# setsid: the sink must outlive this script and not get the
		# caller's Ctrl-C before stop runs.
		setsid "$SMTP_SINK" "${user[@]}" -d "$dir/smtp/%Y%m%d%H%M%S." \
		    "127.0.0.1:$port" 64 </dev/null >"$dir/smtp-sink.log" 2>&1 &
		pid=$!
		if wait_port "$port" "$pid"; then
			echo "$pid" >"$dir/smtp-sink.pid"
			echo "$port" >"$dir/smtp-sink.port"
			return 0
		fi
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	cat "$dir/smtp-sink.log" >&2
	die "smtp-sink did not start"
}

# Wait until something accepts on 127.0.0.1:port while pid lives.
wait_port()
{
	local port=$1 pid=$2

	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 1
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.05
	done
	return 1
}

sink_stop()
{
	local dir=$1 pid

	[ -f "$dir/smtp-sink.pid" ] || return 0
	pid=$(cat "$dir/smtp-sink.pid")
	# Only kill it when that pid is still our smtp-sink.
	if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = smtp-sink ]; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/smtp-sink.pid"
}

cmd_start()
{
	local dir=$1

	[ -d "$dir" ] || mkdir -p "$dir"
	dir=$(cd "$dir" && pwd -P)
	[ ! -e "$dir/pg/data" ] || die "$dir/pg/data already exists: use a fresh directory"
	# The postgres and nobody users must be able to reach into it.
	chmod 755 "$dir"
	[ -x "$PGBIN/initdb" ] || die "no $PGBIN/initdb: install postgresql (contrib/deps)"
	[ -x "$SMTP_SINK" ] || die "no $SMTP_SINK: install postfix (contrib/deps)"

	# Whatever fails half-way (die exits, so ERR would not fire), leave
	# nothing running.
	trap 'cmd_stop "$dir"' EXIT
	pg_start "$dir"
	sink_start "$dir"
	trap - EXIT

	cat >"$dir/env" <<EOF
export PGHOST='$dir/pg' PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
export ASSENT_TEST_SMTP_PORT=$(cat "$dir/smtp-sink.port") ASSENT_TEST_SMTP_DIR='$dir/smtp'
export ASSENT_TEST_REQUIRE_SERVERS=1
EOF
}

cmd_stop()
{
	local dir=$1

	[ -d "$dir" ] || return 0
	sink_stop "$dir"
	pg_stop "$dir"
}

[ $# -eq 2 ] || usage
case $1 in
start)	cmd_start "$2" ;;
stop)	cmd_stop "$2" ;;
*)	usage ;;
esac
