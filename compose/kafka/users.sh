#!/bin/bash
# Gives each of Lotline's Kafka principals its SCRAM-SHA-512 login on the Compose broker,
# logged in as the admin: run by the one-shot `kafka-users` job on every `docker compose up`,
# so a password changed in .env is changed on the broker too. The principals are the
# contract's (`lotline.events.topics`: CONSUMED_BY and PUBLISHED_BY; the test checks the list);
# each one's password is in SCRAM_PASSWORD_<NAME> (upper case, `-` as `_`).
set -euo pipefail

: "${KAFKA_ADMIN_PASSWORD:?set it in .env (see .env.example)}"
: "${LOTLINE_KAFKA_PRINCIPALS:?name the principals to create}"
kafka_home="${KAFKA_HOME:-/opt/kafka}"
bootstrap="${KAFKA_BOOTSTRAP_SERVERS:-kafka:9092}"

# Passwords go into files only this user can read, never on a command line.
umask 077
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/admin.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
EOF

for principal in $LOTLINE_KAFKA_PRINCIPALS; do
    variable="SCRAM_PASSWORD_$(printf '%s' "$principal" | tr 'a-z-' 'A-Z_')"
    password="${!variable:-}"
    if [ -z "$password" ]; then
        echo "$variable is not set: the principal $principal needs a password (see .env.example)" >&2
        exit 1
    fi
    printf 'SCRAM-SHA-512=password=%s\n' "$password" > "$work/scram.properties"
    "$kafka_home/bin/kafka-configs.sh" --bootstrap-server "$bootstrap" \
        --command-config "$work/admin.properties" --alter --entity-type users \
        --entity-name "$principal" --add-config-file "$work/scram.properties" >/dev/null
    echo "SCRAM-SHA-512 login set for $principal"
done
