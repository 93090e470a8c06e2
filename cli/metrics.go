package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/ccworker/ccworker/metrics"
	"github.com/ccworker/ccworker/results"
	"github.com/ccworker/ccworker/worker"
)

// metricsOptions is the worker's --metrics-addr flag.
type metricsOptions struct{ addr string }

func (m *metricsOptions) bind(f *pflag.FlagSet) {
	f.StringVar(&m.addr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics (default: off)")
}

// start serves /metrics for w (and writer, which may be nil) when --metrics-addr is set;
// the returned stop shuts the server down. A bad address is a usage error.
func (m *metricsOptions) start(w *worker.Worker, writer *results.Writer, broker metrics.Broker, node string, log *zap.Logger) (stop func(), err error) {
	if m.addr == "" {
		return func() {}, nil
	}
	var rs metrics.ResultStats
	if writer != nil {
		rs = writer
	}
	reg, err := metrics.NewRegistry(metrics.NewCollector(w, rs, broker, node, version))
	if err != nil {
		return nil, err
	}
	srv, err := metrics.Start(m.addr, reg)
	if err != nil {
		return nil, usageError{fmt.Errorf("--metrics-addr %s: %w", m.addr, err)}
	}
	log.Info("serving metrics", zap.String("url", "http://"+srv.Addr()+"/metrics"))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			log.Warn("metrics server stopped with an error", zap.Error(err))
		}
	}, nil
}
