#!/bin/sh
# Entrypoint of the lab's redis:7-alpine stand-in (Debian's redis-server).
#
# Like the official image: `redis-server` by default, the compose `command:`
# arguments passed through (`redis-server --requirepass ...`), protected mode
# off (the official build disables it, so a password-less Redis answers every
# client that reaches it), data in /data, root dropped before the server runs.
set -eu
case "${1:-}" in
  '') set -- redis-server ;;
  -*) set -- redis-server "$@" ;;
esac

if [ "$1" = redis-server ]; then
  shift
  # A config file comes first; our default goes before the user's options so theirs win.
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    conf=$1
    shift
    set -- redis-server "$conf" --protected-mode no "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
  if [ "$(id -u)" = 0 ]; then
    chown redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups -- "$@"
  fi
fi
exec "$@"
