# Look, rehearse the one-field change on the server, then make it.
"$KUBECTL" -n "$NS" get deployment web -o wide
"$KUBECTL" -n "$NS" get pods -l app=web
"$KUBECTL" -n "$NS" set image deployment/web web=registry.invalid/shop/web:1.4.2 --dry-run=server
"$KUBECTL" -n "$NS" set image deployment/web web=registry.invalid/shop/web:1.4.2
