#!/usr/bin/env bash
# Copies the Apache Kafka broker's jars (deploy/kafka/pom.xml and its runtime dependencies) from
# Maven Central into a cache dir and prints the dir on stdout (everything else goes to stderr).
#
#   KAFKA_JARS_DIR  the cache dir (default ~/.cache/sentiment-monitor/kafka-<version>)
#
# Idempotent: a dir whose .complete marker holds the checksum of the current pom.xml is reused as
# it is. Otherwise the jars are copied into a fresh dir beside it that replaces it at the end, so
# an interrupted run or a concurrent one never leaves a half-filled cache behind.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
if [ -z "$version" ]; then
  echo "fetch-jars: no <kafka.version> in $pom" >&2
  exit 1
fi
dir="${KAFKA_JARS_DIR:-$HOME/.cache/sentiment-monitor/kafka-$version}"
sum="$(sha256sum "$pom" | cut -d' ' -f1)"

if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$sum" ]; then
  echo "$dir"
  exit 0
fi

if ! command -v mvn >/dev/null; then
  echo "fetch-jars: mvn (Apache Maven) is not installed; on Debian: apt-get install maven" >&2
  exit 1
fi

mkdir -p "$(dirname "$dir")"
tmp="$(mktemp -d "$dir.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "fetch-jars: resolving org.apache.kafka:kafka_2.13:$version from Maven Central" >&2
mvn -q -B -ntp -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
  -DoutputDirectory="$tmp" -DincludeScope=runtime >&2
if ! ls "$tmp"/kafka_2.13-"$version".jar >/dev/null 2>&1; then
  echo "fetch-jars: maven finished but kafka_2.13-$version.jar is not in $tmp" >&2
  exit 1
fi
echo "$sum" >"$tmp/.complete"

# Swap the new dir in; a concurrent run that finished first wins and ours is dropped.
if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$sum" ]; then
  echo "$dir"
  exit 0
fi
rm -rf "$dir"
mv -T "$tmp" "$dir" 2>/dev/null || [ -f "$dir/.complete" ]
echo "$dir"
