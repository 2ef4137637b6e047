# Guesses a hotfix tag instead of rolling back.
"$KUBECTL" -n "$NS" set image deployment/payments-api api=registry.invalid/shop/payments-api:2.1.1 --dry-run=server
"$KUBECTL" -n "$NS" set image deployment/payments-api api=registry.invalid/shop/payments-api:2.1.1
