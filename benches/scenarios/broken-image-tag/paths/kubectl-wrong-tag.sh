# Guesses the next tag instead of the released one.
"$KUBECTL" -n "$NS" set image deployment/web web=registry.invalid/shop/web:1.4.3 --dry-run=server
"$KUBECTL" -n "$NS" set image deployment/web web=registry.invalid/shop/web:1.4.3
