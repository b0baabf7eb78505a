#!/bin/bash
# Starts and stops Debian's Postfix 3.7 as the SMTP reference server of the benchmark:
# smtpd on 127.0.0.1:PORT only, local delivery into the mbox /var/mail/bench of the Unix
# user `bench` (created when missing), no postscreen, nothing chrooted. The system's
# main.cf and master.cf are saved on start and put back on stop, and the bench's mbox removed.
#
#   bench/reference/postfix.sh start PORT    # prints the mbox path on success
#   bench/reference/postfix.sh stop
#   bench/reference/postfix.sh mbox          # the mbox the load is delivered into
#
# Needs root (CI runs as root) and `apt-get install postfix`.
set -eu

CONF=/etc/postfix
SAVE=/var/lib/mailsrv-bench/postfix-conf
USER_NAME=bench
MBOX=/var/mail/$USER_NAME

die() { echo "postfix.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || die "postfix is not installed (apt-get install postfix)"
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

stop() {
  if postfix status >/dev/null 2>&1; then postfix stop >/dev/null 2>&1 || true; fi
  # wait for master to go away
  i=0; while postfix status >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  rm -f "$MBOX" # the bench's mail only; the next start makes it again
  if [ -f "$SAVE/main.cf" ]; then
    cp -p "$SAVE/main.cf" "$CONF/main.cf"
    cp -p "$SAVE/master.cf" "$CONF/master.cf"
    rm -rf "$SAVE"
  fi
}

start() {
  port=$1
  case $port in ''|*[!0-9]*) die "start: PORT must be a number";; esac
  stop
  mkdir -p "$SAVE"
  cp -p "$CONF/main.cf" "$SAVE/main.cf"
  cp -p "$CONF/master.cf" "$SAVE/master.cf"

  id "$USER_NAME" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_NAME"

  postconf -e \
    'inet_interfaces = 127.0.0.1' \
    'inet_protocols = ipv4' \
    'myhostname = postfix.bench.test' \
    'mydestination = $myhostname, bench.test, localhost' \
    'mynetworks = 127.0.0.0/8' \
    'alias_maps = hash:/etc/aliases' \
    'alias_database = hash:/etc/aliases' \
    'mail_spool_directory = /var/mail' \
    'mailbox_command =' \
    'home_mailbox =' \
    'mailbox_size_limit = 0' \
    'message_size_limit = 10240000' \
    'smtpd_relay_restrictions = permit_mynetworks reject_unauth_destination' \
    'default_transport = error' \
    'relay_transport = error'
  # every service outside a chroot; the MX port replaced by smtpd on 127.0.0.1:PORT, with as
  # many processes as the largest connection count the bench uses (Postfix's default is 100)
  postconf -F '*/*/chroot = n'
  postconf -MX smtp/inet 2>/dev/null || true
  postconf -M "127.0.0.1:$port/inet = 127.0.0.1:$port inet n - n - 250 smtpd"
  newaliases
  touch "$MBOX" && chown "$USER_NAME:mail" "$MBOX" && chmod 0600 "$MBOX"
  postfix check
  postfix start </dev/null >/dev/null 2>&1 || die "postfix start failed"
  # wait until smtpd answers
  i=0
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || die "nothing listens on 127.0.0.1:$port"
    sleep 0.1
  done
  echo "$MBOX"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  mbox) echo "$MBOX" ;;
  *) die "usage: postfix.sh start PORT | stop | mbox" ;;
esac
