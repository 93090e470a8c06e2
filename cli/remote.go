package cli

import (
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/spf13/cobra"

	"github.com/ccworker/ccworker/prefetch"
)

// connOptions are the settings flags every sub-command that talks to the broker shares
// with the worker: they read the same celeryconfig.py, environment and -b.
type connOptions struct {
	wo workerOptions
}

func (c *connOptions) bind(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.wo.configPath, "config", "", "celeryconfig.py to read (default: ./celeryconfig.py when it exists)")
	f.StringVarP(&c.wo.broker, "broker", "b", "", "broker URL (overrides broker_url and CELERY_BROKER_URL)")
	f.StringVar(&c.wo.resultBackend, "result-backend", "", "result backend URL (overrides result_backend and CELERY_RESULT_BACKEND)")
	f.StringVar(&c.wo.python.interpreter, "python", defaultInterpreter(),
		"Python interpreter that imports a celeryconfig.py needing more than literal assignments")
}

// settings resolves the configuration exactly as the worker does.
func (c *connOptions) settings(cmd *cobra.Command) (*settings, error) {
	s, err := resolve(cmd, &c.wo)
	if err != nil {
		return nil, usageError{err}
	}
	return s, nil
}

// dialBroker connects to the first broker URL that answers (failover order), with the
// worker's TLS, heartbeat and connect timeout.
func dialBroker(s *settings, name string) (*amqp.Connection, error) {
	var errs []error
	for _, u := range s.brokerURLs {
		tlsCfg, err := s.cfg.BrokerTLS(u)
		if err != nil {
			return nil, usageError{fmt.Errorf("broker_use_ssl: %w", err)}
		}
		conn, err := prefetch.Dial(u.AMQPURI(), prefetch.Config{
			TLS: tlsCfg, Heartbeat: s.cfg.BrokerHeartbeat, ConnectTimeout: s.cfg.BrokerConnectionTimeout,
			ConnectionName: "ccworker " + name,
		})
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u.Redacted(), err))
	}
	return nil, runError{fmt.Errorf("cannot connect to the broker: %w", errors.Join(errs...))}
}
