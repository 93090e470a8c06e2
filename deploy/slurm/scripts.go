// Package slurm holds the batch scripts of this directory, built into the binary so that
// `ccworker allocate` can submit them without a checkout on the login node.
package slurm

import _ "embed"

// ArrayScript is ccworker-array.sbatch: one worker per job-array element.
//
//go:embed ccworker-array.sbatch
var ArrayScript []byte

// NodesScript is ccworker-nodes.sbatch: one allocation of K nodes, one worker per node.
//
//go:embed ccworker-nodes.sbatch
var NodesScript []byte
