package cli

import "github.com/spf13/pflag"

// metricsOptions is the worker's --metrics-addr flag (node.Config.MetricsAddr).
type metricsOptions struct{ addr string }

func (m *metricsOptions) bind(f *pflag.FlagSet) {
	f.StringVar(&m.addr, "metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics (default: off)")
}
