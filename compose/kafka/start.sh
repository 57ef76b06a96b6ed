#!/bin/bash
# Starts the Compose file's Kafka (KRaft: one combined broker and controller) secured as the
# local stack is: clients log in with SASL/SCRAM-SHA-512 on the one client listener, the
# StandardAuthorizer denies whatever no ACL allows, and `admin` is the one super user.
#
# The image's own start formats the storage without SCRAM credentials, after which nobody
# could log in to create any; so this formats it with the admin's (KIP-900) and starts the
# broker on a config of its own. The `kafka-users` job then adds every other principal and
# `kafka-acls` their ACLs. SCRAM cannot secure the KRaft controller listener (the credentials
# live in the metadata it serves), so that listener is on loopback and takes SASL/PLAIN from
# the admin alone. Passwords must not contain `"` or `\` (they go into JAAS strings).
set -euo pipefail

: "${KAFKA_ADMIN_PASSWORD:?set it in .env (see .env.example)}"
: "${CLUSTER_ID:?set CLUSTER_ID (a base64 UUID, as kafka-storage.sh random-uuid prints)}"
kafka_home="${KAFKA_HOME:-/opt/kafka}"
data_dir="${KAFKA_DATA_DIR:-/var/lib/kafka/data}"
config_dir="${KAFKA_CONFIG_DIR:-/opt/kafka/config/lotline}"
advertised_host="${KAFKA_ADVERTISED_HOST:-kafka}"
client_port="${KAFKA_CLIENT_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"

case "$KAFKA_ADMIN_PASSWORD" in
    *'"'* | *'\'*) echo "KAFKA_ADMIN_PASSWORD must not contain \" or \\" >&2; exit 2 ;;
esac

# The config holds the admin's password: only this user may read it.
umask 077
mkdir -p "$config_dir"
scram="org.apache.kafka.common.security.scram.ScramLoginModule required"
plain="org.apache.kafka.common.security.plain.PlainLoginModule required"
login="username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\""
cat > "$config_dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=SASL_PLAINTEXT://:$client_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=SASL_PLAINTEXT://$advertised_host:$client_port
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$scram $login;
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=$plain $login user_admin="$KAFKA_ADMIN_PASSWORD";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin
log.dirs=$data_dir
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
# What the health check (and an operator with `docker compose exec`) logs in with.
cat > "$config_dir/admin.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$scram $login;
EOF

# Once: a formatted dir is left as it is (--ignore-formatted), with the credentials it has.
# Kafka 4's formatter prints the bootstrap records, the admin's salt and SCRAM keys among them:
# they stay out of the container's log.
"$kafka_home/bin/kafka-storage.sh" format --cluster-id "$CLUSTER_ID" \
    --config "$config_dir/server.properties" --ignore-formatted \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]" \
    | sed '/^Bootstrap metadata:/d'
exec "$kafka_home/bin/kafka-server-start.sh" "$config_dir/server.properties"
