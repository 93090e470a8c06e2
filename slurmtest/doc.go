// Package slurmtest runs ccworker under a real Slurm cluster: the launch scripts in
// deploy/slurm/ are submitted with sbatch to the private 4-node test cluster that
// scripts/slurm/start-slurm.sh starts (make test and make test-slurm do), with tasks
// published by scripts/celery_client.py to the local RabbitMQ and results stored in the
// local MongoDB-wire server; allocate_test.go runs `ccworker allocate`, which submits
// them by itself while tasks wait. The package has only tests; they skip with a message when
// Slurm (sbatch, a reachable slurmctld) or the services are not available.
package slurmtest
