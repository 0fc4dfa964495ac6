#!/usr/bin/env bash
# Creates the secrets docker-compose.yml reads, once (existing files are kept):
#   grafana-admin-password   Grafana's admin password (user "admin")
#   s3.json                  the lake's S3 server (SeaweedFS) identities
#   aws-credentials          the same key pair as an AWS shared-credentials file, for the workers
#   label-studio-password    Label Studio's admin password (user admin@example.com)
#   label-studio-token       its API token, which the review loop uses
# Usage: deploy/compose-secrets.sh [DIR]   (default deploy/secrets, which git ignores)
set -euo pipefail
dir="${1:-$(dirname "$0")/secrets}"
mkdir -p "$dir"
chmod 700 "$dir"  # only you reach the files; containers get them as bind mounts (0644)
token() { python3 -c 'import secrets, sys; sys.stdout.write(secrets.token_urlsafe(int(sys.argv[1])))' "$1"; }

if [ ! -s "$dir/grafana-admin-password" ]; then
  token 24 > "$dir/grafana-admin-password"
  echo "wrote $dir/grafana-admin-password (Grafana user: admin)"
fi
if [ ! -s "$dir/s3.json" ] || [ ! -s "$dir/aws-credentials" ]; then
  key="lake$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
  secret="$(token 32)"
  printf '{"identities": [{"name": "sentiment", "credentials": [{"accessKey": "%s", "secretKey": "%s"}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}\n' \
    "$key" "$secret" > "$dir/s3.json"
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key" "$secret" \
    > "$dir/aws-credentials"
  echo "wrote $dir/s3.json and $dir/aws-credentials (lake access key $key)"
fi
if [ ! -s "$dir/label-studio-password" ] || [ ! -s "$dir/label-studio-token" ]; then
  token 24 > "$dir/label-studio-password"
  python3 -c 'import secrets, sys; sys.stdout.write(secrets.token_hex(20))' > "$dir/label-studio-token"
  echo "wrote $dir/label-studio-password and $dir/label-studio-token (Label Studio)"
fi
chmod 644 "$dir/grafana-admin-password" "$dir/s3.json" "$dir/aws-credentials" \
  "$dir/label-studio-password" "$dir/label-studio-token"
