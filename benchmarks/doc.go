// Package benchmarks holds stockguard's go test -bench suites; the load
// tools live in its subfolders (fanout, loadgen). Results and the commands
// that produced them are in RESULTS.md. Nothing here runs in `just test`
// except as a compile check.
package benchmarks
