#!/bin/sh
# The bed's stand-in for ssh, given to hydra as `-launcher ssh -launcher-exec WRAPPER`, where
# WRAPPER (written by each bed into its work dir) is `exec launcher.sh MAP "$@"`.
#   launcher.sh MAP [ssh options] HOST COMMAND...
# MAP has lines `ADDRESS-OR-NAME NAMESPACE HOSTNAME`. COMMAND runs in HOST's namespace, in a UTS
# namespace of its own named after the node (so MPI_Get_processor_name tells nodes apart),
# through `sh -c` with the words joined by spaces, as sshd does. Every step execs, so the pid
# hydra holds is the proxy's: killing the "ssh" kills the proxy.
map=$1; shift
while [ $# -gt 0 ]; do          # ssh's options; those that take a value skip it too
    case "$1" in
        --) shift; break ;;
        -[BbcDEeFIiJLlmOoPpQRSWw]) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || { echo "netbed launcher: usage: HOST COMMAND..." >&2; exit 255; }
host=${1#*@}; shift
ns= name=
while read -r key n h; do
    if [ "$key" = "$host" ]; then ns=$n; name=$h; break; fi
done < "$map"
[ -n "$ns" ] || { echo "netbed launcher: host '$host' is not a node of this bed ($map)" >&2; exit 255; }
exec ip netns exec "$ns" unshare --uts sh -c 'hostname "$0" && exec sh -c "$1"' "$name" "$*"
