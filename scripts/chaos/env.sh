# Source this (bash): the chaos tests' private RabbitMQ node and FerretDB state.
# Nothing here touches the shared services (RabbitMQ 5672, FerretDB 27017): the private node is
# chaos@localhost on AMQP 5680 / TLS 5681 / dist 25680, with its own HOME (Erlang cookie), mnesia
# and logs under $CHAOS_STATE (default ~/.cache/ccworker/chaos). epmd (4369) is shared, as usual.
CHAOS_STATE=${CHAOS_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/ccworker/chaos}
CHAOS_RMQ=$CHAOS_STATE/rabbitmq
export HOME=$CHAOS_RMQ/home
export RABBITMQ_NODENAME=chaos@localhost
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=${CHAOS_AMQP_PORT:-5680}
export RABBITMQ_DIST_PORT=${CHAOS_DIST_PORT:-25680}
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT=4369
export RABBITMQ_CONF_ENV_FILE=$CHAOS_RMQ/rabbitmq-env.conf
export RABBITMQ_CONFIG_FILE=$CHAOS_RMQ/rabbitmq.conf
export RABBITMQ_ENABLED_PLUGINS_FILE=$CHAOS_RMQ/enabled_plugins
export RABBITMQ_MNESIA_BASE=$CHAOS_RMQ/mnesia
export RABBITMQ_LOG_BASE=$CHAOS_RMQ/log
export RABBITMQ_PID_FILE=$CHAOS_RMQ/chaos.pid
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
RMQBIN=/usr/lib/rabbitmq/bin
