"$KUBECTL" -n "$NS" get deployment preview-web
"$KUBECTL" -n "$NS" delete deployment preview-web --dry-run=server
"$KUBECTL" -n "$NS" delete deployment preview-web
