// Command openapi-augment adds to the OpenAPI document that buf generates
// from the protos what the protos cannot say: the bearer auth scheme, the
// Idempotency-Key header, an example of every request and response built
// from real protobuf messages, and the documented error bodies of every
// operation. It rewrites the file in place; `just generate` runs it after
// `buf generate`, so the document stays generated, never hand-edited.
//
//	go run ./scripts/openapi-augment gen/openapi/openapi.yaml
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	stockguardv1 "github.com/stockguard/stockguard/gen/stockguard/v1"
	"github.com/stockguard/stockguard/modules/inventory"
)

const (
	itemID  = "019a2b3c-4d5e-7f60-8a1b-2c3d4e5f6a7b"
	orderID = "019a2b3c-5e6f-7a81-9b2c-3d4e5f6a7b8c"
)

var created = timestamppb.New(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))

var item = &stockguardv1.Item{
	Id: itemID, Sku: "GIG-2026-A1", Name: "Front row, night one", Available: 98, Reserved: 0, Sold: 2,
	MaxPerCustomer: 4, Version: 2, CreateTime: created,
}

var order = &stockguardv1.Order{
	Id: orderID, CustomerId: "alice", Status: stockguardv1.OrderStatus_ORDER_STATUS_CONFIRMED,
	Lines:      []*stockguardv1.OrderLine{{ItemId: itemID, Quantity: 2}},
	CreateTime: created, UpdateTime: created, IdempotencyKey: "alice-checkout-1",
}

// operation describes what the protos cannot: who may call, examples, errors.
type operation struct {
	public   bool
	request  proto.Message
	response proto.Message
	errors   []errorCase
}

type errorCase struct {
	status int
	code   int
	reason string
	msg    string
	meta   map[string]string
}

var (
	errInvalid      = errorCase{400, 3, "INVALID_ARGUMENT", "invalid argument: lines[0].quantity: must be between 1 and 1000000000", nil}
	errUnauth       = errorCase{401, 16, "UNAUTHENTICATED", "missing bearer token: send Authorization: Bearer <token>", nil}
	errDenied       = errorCase{403, 7, "PERMISSION_DENIED", "this call needs the admin role", nil}
	errItemNotFound = errorCase{404, 5, "ITEM_NOT_FOUND", "item not found", nil}
	errOrderNF      = errorCase{404, 5, "ORDER_NOT_FOUND", "order not found", nil}
	errRate         = errorCase{429, 8, "RATE_LIMITED", "rate limit exceeded; retry after 1s", map[string]string{"retry_after_seconds": "1"}}
	errUnavailable  = errorCase{503, 14, "STORE_UNAVAILABLE", "the stock store is busy; retry shortly (with the same idempotency key)", nil}
	errInsufficient = errorCase{400, 9, "INSUFFICIENT_STOCK", "insufficient stock for item " + itemID + ": requested 5, available 2",
		map[string]string{"item_id": itemID, "requested": "5", "available": "2"}}
)

var operations = map[string]operation{
	"InventoryService_CreateItem": {
		request:  &stockguardv1.CreateItemRequest{Sku: "GIG-2026-A1", Name: "Front row, night one", InitialStock: 100, MaxPerCustomer: 4},
		response: &stockguardv1.CreateItemResponse{Item: &stockguardv1.Item{Id: itemID, Sku: "GIG-2026-A1", Name: "Front row, night one", Available: 100, MaxPerCustomer: 4, Version: 1, CreateTime: created}},
		errors:   []errorCase{errInvalid, errUnauth, errDenied, {409, 6, "SKU_EXISTS", "an item with this sku already exists", nil}, errRate, errUnavailable},
	},
	"InventoryService_GetItem": {
		public: true, response: &stockguardv1.GetItemResponse{Item: item},
		errors: []errorCase{{400, 3, "INVALID_ARGUMENT", "invalid argument: item_id: must be a UUID", nil}, errItemNotFound, errRate},
	},
	"InventoryService_ListItems": {
		public: true, response: &stockguardv1.ListItemsResponse{Items: []*stockguardv1.Item{item}, NextPageToken: inventory.EncodePageToken(itemID)},
		errors: []errorCase{{400, 3, "INVALID_ARGUMENT", "invalid argument: page_size: must be between 0 (default 100) and 1000", nil}, errRate},
	},
	"InventoryService_AdjustStock": {
		request:  &stockguardv1.AdjustStockRequest{Delta: 25},
		response: &stockguardv1.AdjustStockResponse{Item: item},
		errors:   []errorCase{errInsufficient, errUnauth, errDenied, errItemNotFound, errRate, errUnavailable},
	},
	"OrderService_PlaceOrder": {
		request:  &stockguardv1.PlaceOrderRequest{Lines: []*stockguardv1.OrderLine{{ItemId: itemID, Quantity: 2}}, IdempotencyKey: "alice-checkout-1"},
		response: &stockguardv1.PlaceOrderResponse{Order: order},
		errors: []errorCase{errInsufficient, errUnauth, errItemNotFound,
			{409, 6, "IDEMPOTENCY_KEY_REUSED", "idempotency key already used for a different request", nil},
			{400, 9, "LIMIT_EXCEEDED", "per-customer limit for item " + itemID + " is 4: already 3, requested 2",
				map[string]string{"item_id": itemID, "limit": "4", "held": "3", "requested": "2"}},
			errRate, errUnavailable},
	},
	"OrderService_GetOrder": {
		response: &stockguardv1.GetOrderResponse{Order: order},
		errors:   []errorCase{errUnauth, errOrderNF, errRate},
	},
	"OrderService_ListOrders": {
		response: &stockguardv1.ListOrdersResponse{Orders: []*stockguardv1.Order{order}},
		errors:   []errorCase{errInvalid, errUnauth, errRate},
	},
	"OrderService_ConfirmOrder": {
		request:  &stockguardv1.ConfirmOrderRequest{},
		response: &stockguardv1.ConfirmOrderResponse{Order: order},
		errors: []errorCase{{400, 9, "HOLD_EXPIRED", "hold expired before confirmation", nil}, errUnauth,
			{403, 7, "NOT_ORDER_OWNER", "only the customer who placed the order may do this", nil}, errOrderNF, errRate, errUnavailable},
	},
	"OrderService_CancelOrder": {
		request:  &stockguardv1.CancelOrderRequest{},
		response: &stockguardv1.CancelOrderResponse{Order: withStatus(order, stockguardv1.OrderStatus_ORDER_STATUS_CANCELLED)},
		errors:   []errorCase{errUnauth, errOrderNF, errRate, errUnavailable},
	},
}

func withStatus(o *stockguardv1.Order, s stockguardv1.OrderStatus) *stockguardv1.Order {
	c := proto.Clone(o).(*stockguardv1.Order)
	c.Status = s
	return c
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: openapi-augment FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "openapi-augment:", err)
		os.Exit(1)
	}
}

func asJSON(m proto.Message) (any, error) {
	b, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var v any
	return v, json.Unmarshal(b, &v)
}

func run(path string) error {
	raw, err := os.ReadFile(path) //nolint:gosec // the path is the command-line argument, by design
	if err != nil {
		return err
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		return err
	}
	if doc.Components == nil {
		doc.Components = &openapi3.Components{}
	}
	doc.Components.SecuritySchemes = openapi3.SecuritySchemes{
		"bearerAuth": &openapi3.SecuritySchemeRef{Value: openapi3.NewJWTSecurityScheme().
			WithDescription("HS256 JWT with claims sub (customer id), role (admin or customer) and exp.")},
	}
	seen := map[string]bool{}
	for _, pathItem := range doc.Paths.Map() {
		for method, op := range pathItem.Operations() {
			spec, ok := operations[op.OperationID]
			if !ok {
				return fmt.Errorf("%s %s: operation %q has no examples; add it to operations", method, op.OperationID, op.OperationID)
			}
			seen[op.OperationID] = true
			if err := augment(op, spec, doc.Components.Schemas["Status"]); err != nil {
				return fmt.Errorf("%s: %w", op.OperationID, err)
			}
		}
	}
	for id := range operations {
		if !seen[id] {
			return fmt.Errorf("operation %q is not in the document", id)
		}
	}
	if err := doc.Validate(context.Background()); err != nil {
		return fmt.Errorf("augmented document is invalid: %w", err)
	}
	return write(path, doc)
}

func augment(op *openapi3.Operation, spec operation, status *openapi3.SchemaRef) error {
	if status == nil {
		return fmt.Errorf("the document has no Status schema; is default_response on in buf.gen.yaml?")
	}
	if !spec.public {
		op.Security = &openapi3.SecurityRequirements{{"bearerAuth": []string{}}}
	} else {
		op.Security = &openapi3.SecurityRequirements{{}, {"bearerAuth": []string{}}}
	}
	if op.OperationID == "OrderService_PlaceOrder" {
		op.Parameters = append(op.Parameters, &openapi3.ParameterRef{Value: openapi3.NewHeaderParameter("Idempotency-Key").
			WithDescription("Alternative to the idempotencyKey body field; if both are sent they must be equal.").
			WithSchema(openapi3.NewStringSchema().WithMaxLength(128))})
	}
	if spec.request != nil && op.RequestBody != nil && op.RequestBody.Value != nil {
		ex, err := asJSON(spec.request)
		if err != nil {
			return err
		}
		if mt := op.RequestBody.Value.Content.Get("application/json"); mt != nil {
			mt.Example = ex
		}
	}
	ex, err := asJSON(spec.response)
	if err != nil {
		return err
	}
	if ok := op.Responses.Value("200"); ok != nil && ok.Value != nil {
		if mt := ok.Value.Content.Get("application/json"); mt != nil {
			mt.Example = ex
		}
	}
	byStatus := map[int][]errorCase{}
	for _, e := range spec.errors {
		byStatus[e.status] = append(byStatus[e.status], e)
	}
	statuses := make([]int, 0, len(byStatus))
	for s := range byStatus {
		statuses = append(statuses, s)
	}
	sort.Ints(statuses)
	for _, code := range statuses {
		cases := byStatus[code]
		mt := openapi3.NewMediaType().WithSchemaRef(openapi3.NewSchemaRef("#/components/schemas/Status", status.Value))
		mt.Examples = openapi3.Examples{}
		desc := ""
		for _, c := range cases {
			mt.Examples[c.reason] = &openapi3.ExampleRef{Value: openapi3.NewExample(errorBody(c))}
			if desc != "" {
				desc += ", "
			}
			desc += c.reason
		}
		resp := openapi3.NewResponse().WithDescription("Error: " + desc + ". The body is a google.rpc.Status; details carry a google.rpc.ErrorInfo with the reason.")
		resp.Content = openapi3.Content{"application/json": mt}
		if code == 429 {
			resp.Headers = openapi3.Headers{"Retry-After": &openapi3.HeaderRef{Value: &openapi3.Header{Parameter: openapi3.Parameter{
				Description: "Seconds to wait before retrying.", Schema: openapi3.NewIntegerSchema().NewRef(),
			}}}}
		}
		op.Responses.Set(strconv.Itoa(code), &openapi3.ResponseRef{Value: resp})
	}
	return nil
}

func errorBody(c errorCase) map[string]any {
	info := map[string]any{
		"@type":  "type.googleapis.com/google.rpc.ErrorInfo",
		"reason": c.reason, "domain": "stockguard.dev", "metadata": c.meta,
	}
	if c.meta == nil {
		info["metadata"] = map[string]string{}
	}
	return map[string]any{"code": c.code, "message": c.msg, "details": []any{info}}
}

func write(path string, doc *openapi3.T) error {
	js, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	// JSON is YAML; decoding into a node keeps key order for the output.
	var node yaml.Node
	if err := yaml.Unmarshal(js, &node); err != nil {
		return err
	}
	setBlockStyle(&node)
	topLevelOrder(&node)
	out, err := yaml.Marshal(&node)
	if err != nil {
		return err
	}
	header := "# Generated by buf (protoc-gen-openapi) from proto/stockguard/v1, then by scripts/openapi-augment. Do not edit.\n"
	return os.WriteFile(path, append([]byte(header), out...), 0o644) //nolint:gosec // a world-readable document
}

// setBlockStyle drops the JSON styling (flow collections, quoted strings);
// the encoder still quotes any string that would otherwise read as another type.
func setBlockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		setBlockStyle(c)
	}
}

// topLevelOrder puts the document's sections in their usual reading order.
func topLevelOrder(n *yaml.Node) {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	rank := map[string]int{"openapi": 0, "info": 1, "servers": 2, "tags": 3, "paths": 4, "components": 5}
	type pair struct{ k, v *yaml.Node }
	var pairs []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		pairs = append(pairs, pair{n.Content[i], n.Content[i+1]})
	}
	sort.SliceStable(pairs, func(i, j int) bool {
		ri, ok := rank[pairs[i].k.Value]
		if !ok {
			ri = 99
		}
		rj, ok := rank[pairs[j].k.Value]
		if !ok {
			rj = 99
		}
		return ri < rj
	})
	n.Content = n.Content[:0]
	for _, p := range pairs {
		n.Content = append(n.Content, p.k, p.v)
	}
}
