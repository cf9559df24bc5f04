#!/bin/sh
# An older inventory script: no _meta, so each host is asked with --host.
case "$1" in
  --list) echo '{"svc": {"hosts": ["s1", "s2"], "vars": {"tier": "svc"}}}' ;;
  --host)
    case "$2" in
      s1) echo '{"ansible_host": "10.5.0.1", "tier": "s1-host"}' ;;
      *) echo '{}' ;;
    esac ;;
  *) exit 1 ;;
esac
