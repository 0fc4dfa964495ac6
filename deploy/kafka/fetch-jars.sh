#!/usr/bin/env bash
# Copies the Kafka broker's jars from Maven Central into a cache dir and prints the dir.
# Idempotent: a complete cache (marked by .complete) is reused as it is.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
dir="${KAFKA_JARS_DIR:-$HOME/.cache/sentiment-monitor/kafka-$version}"
if [ ! -f "$dir/.complete" ]; then
  mkdir -p "$dir"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$dir" -DincludeScope=runtime >&2
  touch "$dir/.complete"
fi
echo "$dir"
