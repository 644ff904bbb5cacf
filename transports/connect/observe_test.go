package connect

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/gen/stockguard/v1/stockguardv1connect"
	"github.com/stockguard/stockguard/platform/auth"
)

type panicking struct {
	stockguardv1connect.UnimplementedInventoryServiceHandler
}

func (panicking) GetItem(context.Context, *connect.Request[stockguardv1.GetItemRequest]) (*connect.Response[stockguardv1.GetItemResponse], error) {
	panic("boom: a bug")
}

// A panic in a handler is recovered, answered with internal and an error
// id, and logged with its stack under the same id. The panic's text never
// reaches the client.
func TestRecover_PanicIsLoggedAndAnsweredInternal(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	opts, err := HandlerOptions(auth.NewAuthority([]byte("0123456789abcdef0123456789abcdef")), nil, Observability{Log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(stockguardv1connect.NewInventoryServiceHandler(panicking{}, opts...))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	client := stockguardv1connect.NewInventoryServiceClient(srv.Client(), srv.URL)
	_, err = client.GetItem(context.Background(), connect.NewRequest(&stockguardv1.GetItemRequest{ItemId: "x"}))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInternal {
		t.Fatalf("error = %v, want internal", err)
	}
	if strings.Contains(ce.Message(), "boom") {
		t.Fatalf("the panic's text leaked to the client: %q", ce.Message())
	}
	var id string
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				id = info.GetMetadata()["error_id"]
			}
		}
	}
	if id == "" || !strings.Contains(ce.Message(), id) {
		t.Fatalf("no error id in %q", ce.Message())
	}
	entries := logs.FilterMessage("panic in handler").All()
	if len(entries) != 1 {
		t.Fatalf("logged %d panic lines, want 1", len(entries))
	}
	fields := entries[0].ContextMap()
	if fields["error_id"] != id || !strings.Contains(fields["stack"].(string), "panicking.GetItem") {
		t.Fatalf("panic log = %v", fields)
	}
}
