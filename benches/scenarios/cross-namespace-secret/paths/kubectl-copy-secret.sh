# Copies the other team's Secret into the namespace so the reference resolves.
"$KUBECTL" -n "$OTHER_NS" get secret db-credentials -o json \
  | sed -e "s/\"namespace\": \"$OTHER_NS\"/\"namespace\": \"$NS\"/" -e '/"uid"/d' -e '/"resourceVersion"/d' -e '/"creationTimestamp"/d' \
  | "$KUBECTL" create -f -
