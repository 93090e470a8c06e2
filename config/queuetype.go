package config

import "fmt"

// QueueTypes are Celery 5.5+'s queue-type settings.
type QueueTypes struct {
	// DefaultQueueType is task_default_queue_type: the type of the default queue when
	// task_queues is empty ("classic" or "quorum").
	DefaultQueueType string
	// CreateMissingQueueType is task_create_missing_queue_type: the type of a queue named
	// by -Q that task_queues does not list.
	CreateMissingQueueType string
	// CreateMissingQueueExchangeType is task_create_missing_queue_exchange_type: the type
	// of that queue's exchange ("" = direct, Celery's default).
	CreateMissingQueueExchangeType string
	// DetectQuorumQueues is worker_detect_quorum_queues. Celery turns global QoS off when
	// it finds a quorum queue; ccworker's QoS is always per consumer, so it changes
	// nothing here, but it is a known setting.
	DetectQuorumQueues bool
	// NativeDelayedDeliveryQueueType is broker_native_delayed_delivery_queue_type: the
	// type of the celery_delayed_* queues.
	NativeDelayedDeliveryQueueType string
}

// DefaultQueueTypes are Celery 5.6's defaults.
func DefaultQueueTypes() QueueTypes {
	return QueueTypes{
		DefaultQueueType: "classic", CreateMissingQueueType: "classic",
		DetectQuorumQueues: true, NativeDelayedDeliveryQueueType: "quorum",
	}
}

// queueTypes reads Celery 5.5+'s queue-type settings, and refuses priorities on quorum
// queues (RabbitMQ refuses x-max-priority on them) with one line naming the settings.
func (r *reader) queueTypes(c *Config) {
	qt := DefaultQueueTypes()
	for key, dst := range map[string]*string{
		"task_default_queue_type":                   &qt.DefaultQueueType,
		"task_create_missing_queue_type":            &qt.CreateMissingQueueType,
		"broker_native_delayed_delivery_queue_type": &qt.NativeDelayedDeliveryQueueType,
	} {
		before := *dst
		r.str(key, dst)
		switch *dst {
		case "":
			*dst = before
		case "classic", "quorum":
		default:
			r.fail(key, fmt.Errorf("%w: %q is not a queue type ('classic' or 'quorum')", ErrInvalidValue, *dst))
		}
	}
	r.str("task_create_missing_queue_exchange_type", &qt.CreateMissingQueueExchangeType)
	r.boolean("worker_detect_quorum_queues", &qt.DetectQuorumQueues)
	c.QueueTypes = qt
	r.quorumPriority(c)
}

// quorumPriority fails when a quorum queue would get x-max-priority.
func (r *reader) quorumPriority(c *Config) {
	maxPriority := c.TaskQueueMaxPriority != nil && *c.TaskQueueMaxPriority > 0
	for _, q := range c.TaskQueues {
		if q.QueueArguments["x-queue-type"] != "quorum" {
			continue
		}
		if _, ok := q.QueueArguments["x-max-priority"]; ok {
			r.fail("task_queues", fmt.Errorf("%w: queue %q: a quorum queue cannot have x-max-priority (RabbitMQ refuses it; quorum queues have no priorities before RabbitMQ 4.0, and 4.0's need none)",
				ErrInvalidValue, q.Name))
		} else if maxPriority {
			r.fail("task_queue_max_priority", fmt.Errorf("%w: it would give the quorum queue %q x-max-priority, which RabbitMQ refuses; set it to None, or give %q 'x-queue-type': 'classic'",
				ErrInvalidValue, q.Name, q.Name))
		}
	}
	if maxPriority && len(c.TaskQueues) == 0 && c.QueueTypes.DefaultQueueType == "quorum" {
		r.fail("task_queue_max_priority", fmt.Errorf("%w: it would give the quorum default queue %q (task_default_queue_type = 'quorum') x-max-priority, which RabbitMQ refuses",
			ErrInvalidValue, c.TaskDefaultQueue))
	}
	if maxPriority && c.QueueTypes.CreateMissingQueueType == "quorum" {
		r.fail("task_queue_max_priority", fmt.Errorf("%w: it would give quorum queues (task_create_missing_queue_type = 'quorum') x-max-priority, which RabbitMQ refuses",
			ErrInvalidValue))
	}
}

// UsesQuorumQueues says whether the configuration declares a quorum queue among
// queues (names), as Celery's detect_quorum_queues does over app.amqp.queues: the
// entries of task_queues, the default queue, the missing queues -Q creates.
func (c *Config) UsesQuorumQueues(queues []string) bool {
	known := map[string]bool{}
	for _, q := range c.TaskQueues {
		known[q.Name] = true
		if q.QueueArguments["x-queue-type"] == "quorum" {
			return true
		}
	}
	if len(c.TaskQueues) == 0 {
		if c.QueueTypes.DefaultQueueType == "quorum" {
			return true
		}
		known[c.TaskDefaultQueue] = true
	}
	for _, n := range queues {
		if !known[n] && c.QueueTypes.CreateMissingQueueType == "quorum" {
			return true
		}
	}
	return false
}
