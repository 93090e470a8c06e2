// Package bench holds ccworker's benchmarks: the hot path's parts (decode, result
// documents, pool dispatch, ack batching, result batching) with -benchmem, so
// allocations per task are visible and tracked. Run them with
//
//	go test -run '^$' -bench . -benchmem ./bench/
//
// and compare runs with benchstat. bench/README.md keeps the current table.
package bench
