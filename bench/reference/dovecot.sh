#!/bin/bash
# Starts and stops Debian's Dovecot 2.3 as the POP3 reference server of the benchmark, with a
# config of its own (the system's /etc/dovecot is not touched): POP3 only, on 127.0.0.1:PORT,
# plaintext logins allowed (loopback), users from a passwd-file, mailboxes in mbox format.
# Dovecot's auth cache is on; it caches the passdb lookup, and the password hash is still
# verified at every login.
#
#   bench/reference/dovecot.sh start PORT DIR
#   bench/reference/dovecot.sh stop DIR
#
# DIR holds everything: DIR/users (lines `name:{SCHEME}hash`, the same file mailsrv reads),
# the mailboxes DIR/spool/<name> (the bench copies them there) and Dovecot's indexes
# DIR/index/<name> (remove one for a cold open). Every user is mapped to the Unix user
# `bench` (created when missing), which owns DIR/spool.
#
# Needs root and `apt-get install dovecot-pop3d`.
set -eu

PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
USER_NAME=bench

die() { echo "dovecot.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
command -v dovecot >/dev/null 2>&1 || die "dovecot is not installed (apt-get install dovecot-pop3d)"

stop() {
  dir=$1
  [ -f "$dir/dovecot.conf" ] || return 0
  dovecot -c "$dir/dovecot.conf" stop >/dev/null 2>&1 || true
  i=0; while [ -f "$dir/run/master.pid" ] && kill -0 "$(cat "$dir/run/master.pid")" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
}

start() {
  port=$1 dir=$2
  case $port in ''|*[!0-9]*) die "start: PORT must be a number";; esac
  [ -f "$dir/users" ] || die "start: $dir/users is missing"
  stop "$dir"
  id "$USER_NAME" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
  uid=$(id -u "$USER_NAME") gid=$(id -g "$USER_NAME")
  mkdir -p "$dir/run" "$dir/spool" "$dir/index" "$dir/home"
  chmod 0755 "$dir" # Dovecot's auth and mail processes must get through to passwd and spool
  chown "$USER_NAME" "$dir/spool" "$dir/index" "$dir/home"
  # passwd-file: name:password:uid:gid:gecos:home
  while IFS= read -r line; do
    case $line in ''|'#'*) continue;; esac
    name=${line%%:*} pass=${line#*:}
    mkdir -p "$dir/home/$name" && chown "$USER_NAME" "$dir/home/$name"
    echo "$name:$pass:$uid:$gid::$dir/home/$name"
  done <"$dir/users" >"$dir/passwd"
  chmod 0640 "$dir/passwd"
  chown "root:dovecot" "$dir/passwd"
  cat >"$dir/dovecot.conf" <<CONF
# written by bench/reference/dovecot.sh
protocols = pop3
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
# caches the passdb lookup (the hash is still verified at each login)
auth_cache_size = 10M
auth_cache_ttl = 1 hour
first_valid_uid = $uid
last_valid_uid = $uid
mail_location = mbox:$dir/home/%u/mail:INBOX=$dir/spool/%u:INDEX=$dir/index/%u
mbox_write_locks = dotlock fcntl
pop3_uidl_format = %08Xu%08Xv
passdb {
  driver = passwd-file
  args = $dir/passwd
}
userdb {
  driver = passwd-file
  args = $dir/passwd
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $port
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
CONF
  dovecot -c "$dir/dovecot.conf" </dev/null >/dev/null 2>&1 || die "dovecot did not start (see $dir/dovecot.log)"
  i=0
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || die "nothing listens on 127.0.0.1:$port"
    sleep 0.1
  done
}

case "${1:-}" in
  start) start "${2:-}" "${3:?start PORT DIR}" ;;
  stop) stop "${2:?stop DIR}" ;;
  *) die "usage: dovecot.sh start PORT DIR | stop DIR" ;;
esac
