package prefetch

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Queue types, as in the x-queue-type argument.
const (
	QueueClassic = "classic"
	QueueQuorum  = "quorum"
)

// Declared says what Declare found on the broker for one queue.
type Declared struct {
	Name   string
	Quorum bool // a quorum queue, declared so here or found so on the broker
	// Note is set when an existing exchange or queue differs from what the
	// configuration would declare and was used as it is: one line for the log.
	Note string
}

// declareQueues declares each queue's exchange, the queue and its binding, in Celery's
// order (exchange.declare, queue.declare, queue.bind), on a channel of their own, so
// that a refusal closes nothing else.
//
// A queue (or exchange) that exists with other arguments is used as it is when the
// arguments are defaults (q.ArgsSetting empty: task_default_queue_type,
// task_create_missing_queue_type, the missing queue's direct exchange), so `-Q q` works on
// a queue a Celery 5.5+ worker declared as quorum, and the other way round. When the
// arguments come from a setting, the conflict is an ErrPermanent naming the setting and
// quoting the broker's account of the existing arguments.
func declareQueues(conn *amqp.Connection, queues []Queue) ([]Declared, error) {
	dc := &declarer{conn: conn}
	defer dc.close()
	out := make([]Declared, 0, len(queues))
	for _, q := range queues {
		d, err := declareQueue(dc, q)
		if err != nil {
			return out, err
		}
		out = append(out, d)
	}
	return out, nil
}

func declareQueue(dc *declarer, q Queue) (Declared, error) {
	d := Declared{Name: q.Name, Quorum: q.Args["x-queue-type"] == QueueQuorum}
	var notes []string
	if q.Exchange != "" {
		kind := q.ExchangeType
		if kind == "" {
			kind = amqp.ExchangeDirect
		}
		err := dc.do(func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(q.Exchange, kind, q.Durable, q.AutoDelete, false, false, nil)
		})
		switch {
		case isCode(err, amqp.PreconditionFailed):
			// Another type (a Celery 5.6 task_create_missing_queue_exchange_type, say): the
			// binding works on it all the same.
			notes = append(notes, fmt.Sprintf("exchange %q exists with other properties than %s (used as it is: %s)",
				q.Exchange, kind, reason(err)))
		case err != nil:
			return d, fmt.Errorf("declare exchange %q: %w", q.Exchange, classify(err))
		}
	}
	err := dc.do(func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(q.Name, q.Durable, q.AutoDelete, q.Exclusive, false, q.Args)
		return err
	})
	switch {
	case isCode(err, amqp.PreconditionFailed) && q.Args["x-max-priority"] != nil &&
		strings.Contains(reason(err), "current is the value 'quorum'"):
		return d, fmt.Errorf("%w: queue %q is a quorum queue, which has no x-max-priority: set %s so that it gives none "+
			"(task_queue_max_priority = None), or consume a classic queue; the broker says: %v", ErrPermanent, q.Name, q.ArgsSetting, err)
	case isCode(err, amqp.PreconditionFailed) && q.ArgsSetting != "":
		return d, fmt.Errorf("%w: queue %q exists with other arguments than %s sets; the broker says: %v "+
			"(make the setting agree with the queue, or delete the queue)", ErrPermanent, q.Name, q.ArgsSetting, err)
	case isCode(err, amqp.PreconditionFailed):
		quorum, terr := existingQuorum(dc, q, reason(err))
		if terr != nil {
			return d, terr
		}
		d.Quorum = quorum
		kind := QueueClassic
		if quorum {
			kind = QueueQuorum
		}
		notes = append(notes, fmt.Sprintf("queue %q exists as a %s queue with other arguments than the defaults (%s); used as it is",
			q.Name, kind, reason(err)))
	case err != nil:
		return d, fmt.Errorf("declare queue %q: %w", q.Name, classify(err))
	}
	if q.Exchange != "" {
		err := dc.do(func(ch *amqp.Channel) error { return ch.QueueBind(q.Name, q.RoutingKey, q.Exchange, false, nil) })
		if err != nil {
			return d, fmt.Errorf("bind queue %q to %q: %w", q.Name, q.Exchange, classify(err))
		}
	}
	d.Note = strings.Join(notes, "; ")
	return d, nil
}

// existingQuorum tells whether the existing queue q (which refused q's arguments with
// complaint) is a quorum queue. AMQP cannot read a queue's arguments, but RabbitMQ names
// the first argument that differs, x-queue-type first; when the complaint is about
// something else, declaring again with x-queue-type quorum tells.
func existingQuorum(dc *declarer, q Queue, complaint string) (bool, error) {
	if strings.Contains(complaint, "'x-queue-type'") {
		return strings.Contains(complaint, "current is the value 'quorum'"), nil
	}
	args := amqp.Table{}
	for k, v := range q.Args {
		args[k] = v
	}
	args["x-queue-type"] = QueueQuorum
	err := dc.do(func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(q.Name, q.Durable, q.AutoDelete, q.Exclusive, false, args)
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case isCode(err, amqp.PreconditionFailed):
		return !strings.Contains(reason(err), "'x-queue-type'"), nil
	default:
		return false, fmt.Errorf("declare queue %q: %w", q.Name, classify(err))
	}
}

// declarer runs declarations on one channel of its own, opening another after a
// refusal has closed it (a refused declare closes its channel, nothing else).
type declarer struct {
	conn *amqp.Connection
	ch   *amqp.Channel
}

func (d *declarer) do(f func(ch *amqp.Channel) error) error {
	if d.ch == nil {
		ch, err := d.conn.Channel()
		if err != nil {
			return err
		}
		d.ch = ch
	}
	err := f(d.ch)
	if err != nil {
		d.close()
	}
	return err
}

func (d *declarer) close() {
	if d.ch != nil {
		_ = d.ch.Close()
		d.ch = nil
	}
}

func isCode(err error, code int) bool {
	var aerr *amqp.Error
	return errors.As(err, &aerr) && aerr.Code == code
}

func reason(err error) string {
	var aerr *amqp.Error
	if errors.As(err, &aerr) {
		return aerr.Reason
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
