#!/usr/bin/env bash
# Make the jars of a real Apache Kafka broker available (the Kafka lab; tests/test_kafka_broker.py):
# resolved from Maven Central by stack/deploy/kafka/pom.xml and copied into
#   ${SCALELAB_KAFKA_HOME:-~/.cache/scalelab/kafka}/<version>/libs
# which stack/scalelab/kafka_broker.py runs as `java -cp '<libs>/*' kafka.Kafka`. Idempotent: a
# complete libs dir is left alone (delete it to fetch again).
#
#   exit 0  the jars are there (the last line says where, and the version)
#   exit 1  no Java 17+, or no Maven, or Maven failed: the fix is printed in one line
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
pom="$repo/stack/deploy/kafka/pom.xml"
say() { echo "ensure-kafka: $*"; }
fail() { echo "ensure-kafka: $*" >&2; exit 1; }

version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
[ -n "$version" ] || fail "no <kafka.version> in $pom"
libs="${SCALELAB_KAFKA_HOME:-$HOME/.cache/scalelab/kafka}/$version/libs"

# Kafka 4 brokers need Java 17 or newer (the JRE is enough: nothing is compiled).
java_bin="java"
if [ -n "${JAVA_HOME:-}" ]; then java_bin="$JAVA_HOME/bin/java"; fi
command -v "$java_bin" >/dev/null 2>&1 \
    || fail "java not found — apt-get install openjdk-17-jre-headless (as root), or set JAVA_HOME to a Java 17+"
java_version="$("$java_bin" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
java_major="${java_version#1.}"; java_major="${java_major%%.*}"    # 1.8 -> 8, 17 -> 17
if ! [ "${java_major:-0}" -ge 17 ] 2>/dev/null; then
    fail "java ${java_version:-?} ($java_bin) is older than 17 — apt-get install openjdk-17-jre-headless, or set JAVA_HOME to a Java 17+"
fi

if [ ! -f "$libs/kafka_2.13-$version.jar" ]; then
    command -v mvn >/dev/null 2>&1 || fail "mvn not found — apt-get install maven (as root)"
    say "resolving Kafka $version from Maven Central ..."
    # Copy into a fresh sibling and rename it into place: an interrupted run leaves no half libs dir.
    tmp="$(dirname "$libs")/libs.partial.$$"
    trap 'rm -rf "$tmp" "$tmp.log"' EXIT
    rm -rf "$tmp"
    mkdir -p "$tmp"
    if ! nice mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
        tail -n 20 "$tmp.log" >&2
        fail "mvn could not resolve Kafka $version — see the lines above (is Maven Central reachable?)"
    fi
    [ -f "$tmp/kafka_2.13-$version.jar" ] || fail "mvn copied no kafka_2.13-$version.jar into $tmp"
    rm -rf "$libs"
    mv "$tmp" "$libs"
fi
say "Kafka $version broker jars in $libs ($(find "$libs" -name '*.jar' | wc -l) jars)"
