# The whole manifest, edited and sent back: kubectl replace (a PUT of the whole object).
"$KUBECTL" -n "$NS" get deployment web -o yaml | sed 's/web:1.4.2x/web:1.4.2/' | "$KUBECTL" replace -f -
