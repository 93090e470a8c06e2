// Command ccworker is a Celery worker in one static binary: it joins a Celery deployment
// as a remote worker, consumes the Celery task protocol from RabbitMQ and writes results
// into MongoDB the way Celery's MongoDB backend does.
//
//	ccworker --config celeryconfig.py -Q remote -c 512 -n dev-hostname -l INFO
package main

import (
	"os"

	"github.com/ccworker/ccworker/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], nil))
}
