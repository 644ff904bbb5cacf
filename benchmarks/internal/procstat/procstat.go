// Package procstat reads a process's memory and CPU from /proc and prints
// progress lines, for the load tools in benchmarks/.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// status reads a "Key: N kB" line of /proc/<pid>/status, in bytes (0 when
// it cannot be read).
func status(pid int, key string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), key+":") {
			kb, _ := strconv.ParseInt(strings.Fields(s.Text())[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// RSS is the process's resident memory now, in bytes.
func RSS(pid int) int64 { return status(pid, "VmRSS") }

// PeakRSS is the most resident memory the process has had, in bytes.
func PeakRSS(pid int) int64 { return status(pid, "VmHWM") }

// CPUTicks is the process's user plus system time, in clock ticks
// (USER_HZ, 100 per second on Linux).
func CPUTicks(pid int) (int64, error) {
	if pid <= 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return utime + stime, nil
}

// Progress prints line() to stderr every second until the returned stop
// is called (safe to call twice).
func Progress(line func() string) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(os.Stderr, line())
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}
