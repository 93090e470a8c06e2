# Source this (bash): the cluster tests' private 3-node RabbitMQ cluster on loopback.
# Nothing here touches the shared node (5672) or the chaos node (5680/5681): the nodes are
# cc1@localhost, cc2@localhost, cc3@localhost on AMQP 5691-5693 and distribution 25691-25693,
# with one Erlang cookie (their HOME) and their own mnesia, logs and pid files under
# $CLUSTER_STATE (default ~/.cache/ccworker/cluster). epmd (4369) is shared, as usual.
CLUSTER_STATE=${CLUSTER_STATE:-${XDG_CACHE_HOME:-$HOME/.cache}/ccworker/cluster}
CLUSTER_NODES=${CLUSTER_NODES:-3}
CLUSTER_AMQP_BASE=${CLUSTER_AMQP_BASE:-5690}
CLUSTER_DIST_BASE=${CLUSTER_DIST_BASE:-25690}
RMQBIN=/usr/lib/rabbitmq/bin
export HOME=$CLUSTER_STATE/home # the one cookie every node and rabbitmqctl share
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT=4369

# node_env N: the environment of node ccN (in the current shell; use in a subshell).
node_env() {
  local n=$1 dir=$CLUSTER_STATE/cc$1
  export RABBITMQ_NODENAME=cc$n@localhost
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$((CLUSTER_AMQP_BASE + n))
  export RABBITMQ_DIST_PORT=$((CLUSTER_DIST_BASE + n))
  export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
  export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
  export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$dir/mnesia
  export RABBITMQ_LOG_BASE=$dir/log
  export RABBITMQ_PID_FILE=$dir/cc$n.pid
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  NODE_DIR=$dir
}
