#!/usr/bin/env bash
# Watch one queue from inside the RabbitMQ node and print when its load was drained: the exact end
# signal of the benchmarks (scripts/bench_compare.py, bench/e2e_test.go, bench soak).
#
# usage: scripts/queue_monitor.sh QUEUE READY_FILE TIMEOUT_S [VHOST]
#
# It runs a read-only loop in the broker (rabbitmqctl eval; no plugin, nothing declared): every
# ~10 ms it reads the queue's messages_ready and messages_unacknowledged (a call to the queue
# process, as `rabbitmqctl list_queues` makes). The times are taken inside the node, so
# rabbitmqctl's own 1-4 s start-up does not delay them. Once the loop runs it writes READY_FILE
# (start the worker only then). "started" is the first poll that saw a message leave the ready
# list (ready below its highest value, or unacked above 0); "end" is the first poll after that
# with ready = 0 and unacked = 0, i.e. the last ack. Printed on one line, times in Unix
# microseconds (same clock as the host's):
#
#   done T_MONITOR_UP T_STARTED T_END POLLS MAX_GAP_US END_BOUND_US
#
# END_BOUND_US bounds how late T_END is: the last ack came after the previous poll began.
# or "timeout ..." / "gone ..." (queue deleted after it had messages; a queue not yet declared is
# waited for, so the monitor can start before the load is published). MAX_GAP_US is the longest
# interval between two polls (the queue process answers late when it is busy).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 QUEUE READY_FILE TIMEOUT_S [VHOST]" >&2; exit 2; }
queue=$1 ready=$2 timeout=$3 vhost=${4:-/}
esc() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
expr=$(cat <<EOF
Q = rabbit_misc:r(<<"$(esc "$vhost")">>, queue, <<"$(esc "$queue")">>),
Deadline = os:system_time(millisecond) + $((timeout * 1000)),
Now = fun() -> os:system_time(microsecond) end,
Info = fun() -> case rabbit_amqqueue:lookup(Q) of
  {ok, Qr} -> I = rabbit_amqqueue:info(Qr, [messages_ready, messages_unacknowledged]),
             {proplists:get_value(messages_ready, I), proplists:get_value(messages_unacknowledged, I)};
  _ -> gone end end,
T0 = Now(),
ok = file:write_file("$(esc "$ready")", integer_to_list(T0)),
% Each poll: B = before the call, A = after it (the state was read in between). The end is A of
% the first done poll; the last ack came after B of the poll before it, so END - that B bounds
% how late END is (END_BOUND_US).
Loop = fun L(Max, Start, PrevB, Gap, Polls) ->
  B = Now(),
  case os:system_time(millisecond) > Deadline of
    true -> {timeout, T0, Start, B, Polls, Gap, 0};
    false ->
      Info1 = Info(),
      A = Now(),
      Gap2 = max(Gap, A - PrevB),
      case Info1 of
        gone when Max == 0 -> timer:sleep(8), L(Max, Start, B, Gap2, Polls + 1); % not declared yet
        gone -> {gone, T0, Start, A, Polls, Gap2, 0};
        {R, U} ->
          Start2 = case Start of 0 when R < Max; U > 0 -> A; _ -> Start end,
          case Start2 =/= 0 andalso R == 0 andalso U == 0 of
            true -> {done, T0, Start2, A, Polls, Gap2, A - PrevB};
            false -> timer:sleep(8), L(max(Max, R), Start2, B, Gap2, Polls + 1)
          end
      end
  end end,
{S, A0, A1, A2, A3, A4, A5} = Loop(0, 0, T0, 0, 0),
io_lib:format("~s ~b ~b ~b ~b ~b ~b", [S, A0, A1, A2, A3, A4, A5]).
EOF
)
out=$("$(dirname "$0")/rmq.sh" eval "$expr")
# eval prints the returned chardata as an Erlang string: strip the quotes.
printf '%s\n' "$out" | tr -d '"'
