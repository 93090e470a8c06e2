package prefetch

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Celery 5.5+'s native delayed delivery (kombu.transport.native_delayed_delivery): 28
// levels, each a topic exchange and a queue celery_delayed_N whose messages wait 2^N s
// and are dead-lettered to level N-1, then to celery_delayed_delivery, which routes them
// back by their routing key: the countdown's 28 bits, then the original routing key.
const (
	DelayedDeliveryExchange = "celery_delayed_delivery"
	DelayedLevels           = 28
	// MaxNativeDelay is the longest countdown the 28 bits can carry (about 8.5 years).
	MaxNativeDelay = (1<<DelayedLevels - 1) * time.Second
	// parkSuffix ends the routing key of a message ccworker parks, and its binding: no
	// binding Celery makes ("#.<routing key>") matches it, so a parked message returns to
	// its own queue only.
	parkSuffix = "ccworker-park"
)

// DelayedLevelName is the exchange and queue of one level.
func DelayedLevelName(level int) string { return "celery_delayed_" + strconv.Itoa(level) }

// DelayedRoutingKey is the routing key a Celery 5.5+ client publishes a countdown with to
// celery_delayed_27: the countdown in whole seconds as 28 dot-separated bits, then the
// routing key (kombu's calculate_routing_key).
func DelayedRoutingKey(countdown int64, routingKey string) string {
	bits := strconv.FormatInt(countdown, 2)
	bits = strings.Repeat("0", DelayedLevels-len(bits)) + bits
	var b strings.Builder
	for i, c := range bits {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteRune(c)
	}
	return b.String() + "." + routingKey
}

// parkKey is the routing key of a message parked for queue; parkBindingKey binds queue
// to celery_delayed_delivery for exactly these keys (28 bits, the queue's name, the
// suffix: a queue "b" does not catch a message parked for "a.b").
func parkKey(countdown int64, queue string) string {
	return DelayedRoutingKey(countdown, queue+"."+parkSuffix)
}

func parkBindingKey(queue string) string {
	return strings.Repeat("*.", DelayedLevels) + queue + "." + parkSuffix
}

// countdownOf is the countdown that brings a message back at until, or a little before:
// the worker holds it in memory for the rest of the second.
func countdownOf(wait time.Duration) int64 {
	s := int64(wait / time.Second)
	return min(max(s, 1), int64(MaxNativeDelay/time.Second))
}

// declareNativeDelayed declares the 28 levels and celery_delayed_delivery as Celery 5.5+'s
// worker does (declare_native_delayed_delivery_exchanges_and_queues), with queue type
// queueType ("quorum" by default, broker_native_delayed_delivery_queue_type). A level
// queue that exists with other arguments is used as it is.
func declareNativeDelayed(conn *amqp.Connection, queueType string) (notes []string, err error) {
	if queueType == "" {
		queueType = QueueQuorum
	}
	dc := &declarer{conn: conn}
	defer dc.close()
	key := "1.#"
	for level := DelayedLevels - 1; level >= 0; level-- {
		name := DelayedLevelName(level)
		dlx := DelayedDeliveryExchange
		if level > 0 {
			dlx = DelayedLevelName(level - 1)
		}
		args := amqp.Table{
			"x-queue-type":           queueType,
			"x-overflow":             "reject-publish",
			"x-message-ttl":          int64(1<<level) * 1000,
			"x-dead-letter-exchange": dlx,
		}
		if queueType == QueueQuorum {
			args["x-dead-letter-strategy"] = "at-least-once"
		}
		d, err := declareQueue(dc, Queue{Name: name, Exchange: name, ExchangeType: amqp.ExchangeTopic,
			RoutingKey: key, Durable: true, Args: args})
		if err != nil {
			return notes, err
		}
		if d.Note != "" {
			notes = append(notes, d.Note)
		}
		key = "*." + key
	}
	err = dc.do(func(ch *amqp.Channel) error {
		key := "0.#"
		for level := DelayedLevels - 1; level > 0; level-- {
			if err := ch.ExchangeBind(DelayedLevelName(level-1), key, DelayedLevelName(level), false, nil); err != nil {
				return err
			}
			key = "*." + key
		}
		if err := ch.ExchangeDeclare(DelayedDeliveryExchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return err
		}
		return ch.ExchangeBind(DelayedDeliveryExchange, key, DelayedLevelName(0), false, nil)
	})
	if err != nil {
		return notes, fmt.Errorf("native delayed delivery: %w", classify(err))
	}
	return notes, nil
}

// bindNativeDelayed makes messages delayed for q come back to it: Celery's bindings
// (bind_queue_to_native_delayed_delivery_exchange: for a queue on a topic or fanout
// exchange, celery_delayed_delivery → its exchange and its exchange → the queue, by
// "#.<routing key>"; Celery skips direct exchanges), and ccworker's own binding
// celery_delayed_delivery → q for the messages it parks, whatever q's exchange.
func bindNativeDelayed(conn *amqp.Connection, q Queue) error {
	dc := &declarer{conn: conn}
	defer dc.close()
	err := dc.do(func(ch *amqp.Channel) error {
		if q.Exchange != "" && q.ExchangeType != "" && q.ExchangeType != amqp.ExchangeDirect {
			key := q.RoutingKey
			if !strings.HasPrefix(key, "#") {
				key = "#." + key
			}
			if err := ch.ExchangeBind(q.Exchange, key, DelayedDeliveryExchange, false, nil); err != nil {
				return err
			}
			if err := ch.QueueBind(q.Name, key, q.Exchange, false, nil); err != nil {
				return err
			}
		}
		return ch.QueueBind(q.Name, parkBindingKey(q.Name), DelayedDeliveryExchange, false, nil)
	})
	if err != nil {
		return fmt.Errorf("bind queue %q to native delayed delivery: %w", q.Name, classify(err))
	}
	return nil
}

// IsDelayed says whether d came back through native delayed delivery (its exchange is a
// level's or celery_delayed_delivery, or its routing key starts with the 28 bits):
// d.Exchange and d.RoutingKey then do not lead back to its queue.
func IsDelayed(d *Delivery) bool {
	if strings.HasPrefix(d.Exchange, "celery_delayed_") {
		return true
	}
	words := strings.SplitN(d.RoutingKey, ".", DelayedLevels+1)
	if len(words) <= DelayedLevels {
		return false
	}
	for _, w := range words[:DelayedLevels] {
		if w != "0" && w != "1" {
			return false
		}
	}
	return true
}
