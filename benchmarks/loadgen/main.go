// Command loadgen drives PlaceOrder at a stockguard server over gRPC (with
// the grpc-go client or the connect-go one), Connect or REST, closed-loop
// (N concurrent callers) or open-loop (a fixed arrival rate), on one hot
// item or spread over many, and reports RPS, latency percentiles from an
// HDR histogram, errors by code, the server's CPU and peak RSS (from /proc,
// when given its pid), its own CPU, and whether stock was conserved. Loopback targets only; every run is bounded in time.
//
//	go run ./benchmarks/loadgen -addr 127.0.0.1:8080 -secret $STOCKGUARD_JWT_SECRET \
//	    -protocol grpc -mode closed -c 1000 -duration 20s -items 1 -stock 100000000
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/stockguard/stockguard/benchmarks/internal/procstat"
	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/gen/stockguard/v1/stockguardv1connect"
	"github.com/stockguard/stockguard/platform/auth"
)

type options struct {
	addr, protocol, mode, secret, label, jsonOut string
	cpuProfile                                   string
	concurrency, rate, items, stock, customers   int
	conns                                        int
	duration, warmup                             time.Duration
	pid, procs                                   int
	keys                                         bool
	timeout                                      time.Duration
}

// Result is one run's report, also written as JSON.
type Result struct {
	Label       string           `json:"label"`
	Protocol    string           `json:"protocol"`
	Mode        string           `json:"mode"`
	Concurrency int              `json:"concurrency,omitempty"`
	Rate        int              `json:"rate,omitempty"`
	Items       int              `json:"items"`
	Seconds     float64          `json:"seconds"`
	Requests    int64            `json:"requests"`
	RPS         float64          `json:"rps"`
	OK          int64            `json:"ok"`
	OKPerSec    float64          `json:"ok_per_second"`
	P50ms       float64          `json:"p50_ms"`
	P90ms       float64          `json:"p90_ms"`
	P99ms       float64          `json:"p99_ms"`
	P999ms      float64          `json:"p999_ms"`
	MaxMs       float64          `json:"max_ms"`
	Errors      map[string]int64 `json:"errors"`
	ServerCPU   float64          `json:"server_cpu_percent,omitempty"`
	ServerPeak  float64          `json:"server_peak_rss_mb,omitempty"`
	ClientCPU   float64          `json:"loadgen_cpu_percent"` // this process, sharing the machine
	ServerRSS   []float64        `json:"server_rss_mb_per_second,omitempty"`
	Conserved   *bool            `json:"conserved,omitempty"`
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:8080", "server API address (loopback)")
	flag.StringVar(&o.protocol, "protocol", "grpc", "grpc (connect-go client), grpc-go, connect or rest")
	flag.StringVar(&o.mode, "mode", "closed", "closed (N concurrent callers) or open (fixed arrival rate)")
	flag.IntVar(&o.concurrency, "c", 100, "closed loop: concurrent callers; open loop: most requests in flight")
	flag.IntVar(&o.rate, "rate", 1000, "open loop: requests per second")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long to measure (at most 10m)")
	flag.DurationVar(&o.warmup, "warmup", 0, "run the same load this long first, unmeasured (at most 1m)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of each call")
	flag.IntVar(&o.items, "items", 1, "items to spread purchases over (1: one hot item)")
	flag.IntVar(&o.stock, "stock", 100_000_000, "initial stock of each item")
	flag.IntVar(&o.customers, "customers", 10_000, "distinct customer tokens")
	flag.IntVar(&o.conns, "conns", 4, "grpc-go: HTTP/2 connections the calls are spread over")
	flag.StringVar(&o.secret, "secret", os.Getenv("STOCKGUARD_JWT_SECRET"), "the server's JWT secret")
	flag.IntVar(&o.pid, "server-pid", 0, "server process id, for CPU and peak RSS")
	flag.StringVar(&o.label, "label", "", "name of this run in the report")
	flag.StringVar(&o.jsonOut, "json", "", "append the result as a JSON line to this file")
	flag.BoolVar(&o.keys, "keys", false, "send a unique idempotency key with every purchase")
	flag.IntVar(&o.procs, "procs", 1, "GOMAXPROCS of the generator itself (0: the runtime's default); one spins less on a machine shared with the server")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile of the measured part to this file")
	flag.Parse()
	if os.Getenv("GOGC") == "" {
		// The load generator shares the machine with what it measures: GC
		// less often so more of the CPU goes to the server.
		debug.SetGCPercent(400)
	}
	if o.procs > 0 {
		// Measured on 2 cores at 4,000 purchases/s, open loop: one P cut the
		// generator's CPU from 34-42% to 30-35% of a core (fewer idle
		// threads woken to spin); the server's p99 and the closed-loop
		// peaks stayed within noise. See docs/performance.md.
		runtime.GOMAXPROCS(o.procs)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	host, _, err := net.SplitHostPort(o.addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("refusing non-loopback target %s", o.addr)
	}
	if o.timeout <= 0 || o.timeout > time.Minute {
		return errors.New("-timeout must be above 0 and at most 1m")
	}
	if o.duration > 10*time.Minute {
		return errors.New("-duration is capped at 10m")
	}
	if o.warmup < 0 || o.warmup > time.Minute {
		return errors.New("-warmup must be between 0 and 1m")
	}
	if len(o.secret) < 32 {
		return errors.New("-secret (or STOCKGUARD_JWT_SECRET) must be the server's secret")
	}
	a := auth.NewAuthority([]byte(o.secret))
	admin, _ := a.Issue("loadgen-admin", auth.RoleAdmin, time.Hour)
	tokens := make([]string, o.customers)
	for i := range tokens {
		tokens[i], _ = a.Issue(fmt.Sprintf("load-%d", i), auth.RoleCustomer, time.Hour)
	}
	base := "http://" + o.addr
	itemIDs, err := setupItems(base, admin, o.items, o.stock)
	if err != nil {
		return err
	}
	place := newPlacer(o.protocol, base, o.keys, o.conns)
	if place == nil {
		return fmt.Errorf("unknown -protocol %q", o.protocol)
	}

	hist := hdr.New(1, 60_000_000, 3) // microseconds, up to 60 s
	// The progress line's second: a stall shows in the second it happened,
	// where the whole run's p99 only creeps up.
	win := hdr.New(1, 60_000_000, 3)
	var mu sync.Mutex
	errs := map[string]int64{}
	var requests, oks atomic.Int64
	// Calls begun during the warm-up are left out of every figure but the
	// conservation check, which needs every purchase that may have gone
	// through.
	var measuring atomic.Bool
	var warmOK, warmUnknown atomic.Int64
	record := func(began time.Time, code string, warm bool) {
		if warm {
			switch code {
			case "":
				warmOK.Add(1)
			case "client_deadline", "transport":
				warmUnknown.Add(1)
			}
			return
		}
		us := time.Since(began).Microseconds()
		mu.Lock()
		if code != "shed_client" { // never sent, so it has no latency
			_ = hist.RecordValue(max(us, 1))
			_ = win.RecordValue(max(us, 1))
		}
		if code != "" {
			errs[code]++
		}
		mu.Unlock()
		requests.Add(1)
		if code == "" {
			oks.Add(1)
		}
	}
	var seq atomic.Int64
	// Each call has its own deadline, not the run's: the run's end stops new
	// calls, and the ones in flight finish and are counted.
	// A call's latency runs from began: when it was sent (closed loop) or
	// due (open loop), so that a generator falling behind its schedule
	// shows as latency instead of hiding it.
	one := func(began time.Time) {
		warm := !measuring.Load()
		n := seq.Add(1)
		item := itemIDs[int(n)%len(itemIDs)]
		token := tokens[int(n)%len(tokens)]
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		defer cancel()
		record(began, place(ctx, token, item), warm)
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.warmup+o.duration)
	defer cancel()
	var cpuBefore, selfBefore int64
	var began time.Time
	stopProfile := func() {} // set by startMeasuring, under mu
	startMeasuring := func() {
		mu.Lock()
		cpuBefore, _ = procstat.CPUTicks(o.pid)
		selfBefore, _ = procstat.CPUTicks(os.Getpid())
		began = time.Now()
		win.Reset()
		if o.cpuProfile != "" {
			stopProfile = startProfile(o.cpuProfile)
		}
		mu.Unlock()
		measuring.Store(true)
	}
	if o.warmup > 0 {
		stop := time.AfterFunc(o.warmup, startMeasuring)
		defer stop.Stop()
	} else {
		startMeasuring()
	}
	var rss []float64 // the server's RSS each second, to show whether memory stays flat
	stopProgress := procstat.Progress(func() string {
		mu.Lock()
		defer mu.Unlock()
		if o.pid > 0 {
			rss = append(rss, float64(procstat.RSS(o.pid))/(1<<20))
		}
		if !measuring.Load() {
			win.Reset()
			return fmt.Sprintf("[%s] warming up: %d ok", o.protocol, warmOK.Load())
		}
		line := fmt.Sprintf("[%s] %d requests, %d ok, p99 %.1f ms; last second: p99 %.1f ms, max %.1f ms",
			o.protocol, requests.Load(), oks.Load(), ms(hist.ValueAtQuantile(99)), ms(win.ValueAtQuantile(99)), ms(win.Max()))
		win.Reset()
		return line
	})
	var wg sync.WaitGroup
	switch o.mode {
	case "closed":
		for range o.concurrency {
			wg.Go(func() {
				for ctx.Err() == nil {
					one(time.Now())
				}
			})
		}
	case "open":
		// Constant arrival rate: requests start on schedule whatever the
		// latency; at most -c are in flight, the rest count as "shed_client".
		interval := time.Second / time.Duration(o.rate)
		sem := make(chan struct{}, o.concurrency)
		next := time.Now()
		for ctx.Err() == nil {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			due := next
			select {
			case sem <- struct{}{}:
				wg.Go(func() { defer func() { <-sem }(); one(due) })
			default:
				record(time.Now(), "shed_client", !measuring.Load())
			}
		}
	default:
		return fmt.Errorf("unknown -mode %q", o.mode)
	}
	wg.Wait()
	mu.Lock()
	stopProfile()
	elapsed := time.Since(began)
	mu.Unlock()
	stopProgress()
	cpuAfter, _ := procstat.CPUTicks(o.pid)
	selfAfter, _ := procstat.CPUTicks(os.Getpid())

	r := Result{Label: o.label, Protocol: o.protocol, Mode: o.mode, Items: o.items, Seconds: elapsed.Seconds(),
		Requests: requests.Load(), OK: oks.Load(), Errors: errs,
		P50ms: ms(hist.ValueAtQuantile(50)), P90ms: ms(hist.ValueAtQuantile(90)), P99ms: ms(hist.ValueAtQuantile(99)),
		P999ms: ms(hist.ValueAtQuantile(99.9)), MaxMs: ms(hist.Max())}
	if o.mode == "closed" {
		r.Concurrency = o.concurrency
	} else {
		r.Rate = o.rate
	}
	r.RPS = float64(r.Requests) / elapsed.Seconds()
	r.OKPerSec = float64(r.OK) / elapsed.Seconds()
	if o.pid > 0 {
		r.ServerCPU = float64(cpuAfter-cpuBefore) / 100 / elapsed.Seconds() * 100 // USER_HZ is 100
		r.ServerPeak = float64(procstat.PeakRSS(o.pid)) / (1 << 20)
		mu.Lock()
		r.ServerRSS = rss
		mu.Unlock()
	}
	r.ClientCPU = float64(selfAfter-selfBefore) / 100 / elapsed.Seconds() * 100
	// Only a call that timed out on the client has an unknown outcome.
	ok, err := conserved(base, itemIDs, o.stock, r.OK+warmOK.Load(), errs["client_deadline"]+errs["transport"]+warmUnknown.Load())
	if err != nil {
		return err
	}
	r.Conserved = &ok
	print(r)
	if o.jsonOut != "" {
		f, err := os.OpenFile(o.jsonOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644) //nolint:gosec // a results file
		if err != nil {
			return err
		}
		defer f.Close()
		b, _ := json.Marshal(r)
		if _, err := f.Write(append(b, '\n')); err != nil {
			return err
		}
	}
	if !ok {
		return errors.New("stock was not conserved")
	}
	return nil
}

func ms(us int64) float64 { return float64(us) / 1000 }

func print(r Result) {
	codes := make([]string, 0, len(r.Errors))
	for c, n := range r.Errors {
		codes = append(codes, fmt.Sprintf("%s=%d", c, n))
	}
	sort.Strings(codes)
	fmt.Printf("%-28s %-8s %-6s rps %8.0f  ok/s %8.0f  p50 %7.2f  p90 %7.2f  p99 %7.2f  p99.9 %7.2f  max %8.2f ms  cpu %5.0f%%  peakRSS %6.1f MB  loadgen cpu %4.0f%%  conserved %v  errors [%s]\n",
		r.Label, r.Protocol, r.Mode, r.RPS, r.OKPerSec, r.P50ms, r.P90ms, r.P99ms, r.P999ms, r.MaxMs, r.ServerCPU, r.ServerPeak, r.ClientCPU, *r.Conserved, strings.Join(codes, " "))
}

var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4096, MaxConnsPerHost: 4096}}

func h2c() *http.Client {
	tr := &http.Transport{}
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr.Protocols = p
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}
}

func setupItems(base, admin string, n, stock int) ([]string, error) {
	ids := make([]string, n)
	run := time.Now().UnixNano()
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"sku":"LOAD-%d-%d","name":"load test item","initialStock":%d}`, run, i, stock)
			var out struct{ Item struct{ ID string } }
			if err := postJSON(base+"/v1/items", admin, body, &out); err != nil {
				firstErr.Store(err)
				return
			}
			ids[i] = out.Item.ID
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, fmt.Errorf("create items: %w", err)
	}
	return ids, nil
}

func postJSON(url, token, body string, out any) error {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body)) //nolint:noctx // bounded by the client timeout
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", url, res.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// placer makes one purchase and returns "" or the error code.
type placer func(ctx context.Context, token, item string) string

var keySeq atomic.Int64

func newPlacer(protocol, base string, keys bool, conns int) placer {
	run := time.Now().UnixNano()
	key := func() string {
		if !keys {
			return ""
		}
		return fmt.Sprintf("lg-%d-%d", run, keySeq.Add(1))
	}
	var client stockguardv1connect.OrderServiceClient
	switch protocol {
	case "grpc-go":
		return grpcGoPlacer(strings.TrimPrefix(base, "http://"), conns, key)
	case "grpc":
		client = stockguardv1connect.NewOrderServiceClient(h2c(), base, connect.WithGRPC())
	case "connect":
		client = stockguardv1connect.NewOrderServiceClient(httpClient, base)
	case "rest":
		return func(ctx context.Context, token, item string) string {
			body := `{"lines":[{"itemId":"` + item + `","quantity":1}],"idempotencyKey":"` + key() + `"}`
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/orders", bytes.NewReader([]byte(body)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := httpClient.Do(req)
			if err != nil {
				if ctx.Err() != nil {
					return "client_deadline"
				}
				return "transport"
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return ""
			}
			return "http_" + strconv.Itoa(res.StatusCode)
		}
	default:
		return nil
	}
	return func(ctx context.Context, token, item string) string {
		req := connect.NewRequest(&stockguardv1.PlaceOrderRequest{Lines: []*stockguardv1.OrderLine{{ItemId: item, Quantity: 1}}, IdempotencyKey: key()})
		req.Header().Set("Authorization", "Bearer "+token)
		if _, err := client.PlaceOrder(ctx, req); err != nil {
			if ctx.Err() != nil {
				return "client_deadline"
			}
			return connect.CodeOf(err).String()
		}
		return ""
	}
}

// conserved reads every item back through the API: sold must equal the
// purchases acknowledged, and available + sold the initial stock.
func conserved(base string, ids []string, stock int, acknowledged, unknown int64) (bool, error) {
	var sold int64
	for _, id := range ids {
		res, err := httpClient.Get(base + "/v1/items/" + id) //nolint:noctx // bounded by the client timeout
		if err != nil {
			return false, err
		}
		var out struct {
			Item struct {
				Available, Reserved, Sold int64
			}
		}
		err = json.NewDecoder(res.Body).Decode(&out)
		_ = res.Body.Close()
		if err != nil {
			return false, err
		}
		if out.Item.Available+out.Item.Reserved+out.Item.Sold != int64(stock) || out.Item.Available < 0 {
			return false, nil
		}
		sold += out.Item.Sold
	}
	// A call whose answer never came may have been placed: sold may exceed
	// the acknowledged count by at most those, and never fall short of it.
	return sold >= acknowledged && sold <= acknowledged+unknown, nil
}

// grpcGoPlacer calls PlaceOrder with grpc-go, the client most Go services
// use, through its generic Invoke (no generated stubs needed).
func grpcGoPlacer(target string, nconns int, key func() string) placer {
	conns := make([]*grpc.ClientConn, nconns)
	for i := range conns {
		c, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return func(context.Context, string, string) string { return "transport" }
		}
		conns[i] = c
	}
	var next atomic.Uint64
	return func(ctx context.Context, token, item string) string {
		req := &stockguardv1.PlaceOrderRequest{Lines: []*stockguardv1.OrderLine{{ItemId: item, Quantity: 1}}, IdempotencyKey: key()}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		conn := conns[next.Add(1)%uint64(nconns)]
		if err := conn.Invoke(ctx, stockguardv1connect.OrderServicePlaceOrderProcedure, req, new(stockguardv1.PlaceOrderResponse)); err != nil {
			if ctx.Err() != nil {
				return "client_deadline"
			}
			if c := status.Code(err); c != codes.Unknown {
				return connect.Code(c).String()
			}
			return "transport"
		}
		return ""
	}
}

// startProfile starts the load generator's CPU profile, so that its own
// cost on the shared machine can be read, and returns what stops it. A
// failure is reported and only disables the profile.
func startProfile(path string) (stop func()) {
	f, err := os.Create(path)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: cpu profile:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: cpu profile:", err)
		}
	}
}
