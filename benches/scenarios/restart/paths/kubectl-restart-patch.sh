# `rollout restart` has no --dry-run; it is this one-annotation patch, which has.
patch='{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-01-01T00:00:00Z"}}}}}'
"$KUBECTL" -n "$NS" patch deployment cache -p "$patch" --dry-run=server
"$KUBECTL" -n "$NS" patch deployment cache -p "$patch"
