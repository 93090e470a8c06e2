package prefetch

// Settler is what settles deliveries: in the consumer it is the AMQP channel. It is
// exported so that code handling Deliveries outside this package (the worker) can be
// tested with a fake broker; see NewDelivery.
type Settler interface {
	Ack(tag uint64, multiple bool) error
	Nack(tag uint64, multiple, requeue bool) error
}

// NewDelivery returns a copy of d whose Ack and Reject are sent to s, for tests of
// handlers outside this package. Each delivery returned settles on its own: Ack calls
// s.Ack(d.Tag, true) at once (multiple=true covers only this tag), Reject calls
// s.Nack(d.Tag, false, requeue), and only the first of them has any effect, as with a
// delivery from the consumer. d.Tag must not be 0 (AMQP delivery tags start at 1).
// Errors returned by s are dropped, as the consumer drops acks failing on a closing
// channel.
func NewDelivery(d Delivery, s Settler) *Delivery {
	if d.Tag == 0 {
		panic("prefetch.NewDelivery: delivery tag 0")
	}
	a := newAcker(s, 0, func(error) {})
	a.track(d.Tag)
	d.acker = a
	return &d
}
