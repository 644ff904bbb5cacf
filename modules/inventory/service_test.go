package inventory

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/mock/gomock"

	"github.com/stockguard/stockguard/platform/validation"
)

const itemID = "0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d"

func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	var ve *validation.Error
	if !errors.As(err, &ve) {
		t.Fatalf("error = %v (%T), want *validation.Error", err, err)
	}
	var out []string
	for _, v := range ve.Violations {
		out = append(out, v.Field)
	}
	return out
}

func TestCreateItem_StoresAFullyFormedItem(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	svc := NewService(store)
	fixed := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	svc.now = func() time.Time { return fixed }
	store.EXPECT().CreateItem(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, it Item) (Item, error) {
		if it.ID == "" || it.SKU != "T-1" || it.Available != 10 || it.InitialStock != 10 || it.Version != 1 ||
			it.MaxPerCustomer != 2 || !it.CreateTime.Equal(fixed.Truncate(time.Microsecond)) {
			t.Errorf("stored item = %+v", it)
		}
		return it, nil
	})
	if _, err := svc.CreateItem(context.Background(), NewItem{SKU: "T-1", Name: "Ticket", InitialStock: 10, MaxPerCustomer: 2}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateItem_InvalidInputNeverReachesTheStore(t *testing.T) {
	store := NewMockStore(gomock.NewController(t)) // no calls expected
	svc := NewService(store)
	_, err := svc.CreateItem(context.Background(), NewItem{SKU: "bad sku!", Name: "", InitialStock: -1, MaxPerCustomer: -5})
	got := fieldsOf(t, err)
	want := []string{"sku", "name", "initial_stock", "max_per_customer"}
	if len(got) != len(want) {
		t.Fatalf("violations on %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("violations on %v, want %v", got, want)
		}
	}
}

func TestCreateItem_StoreErrorsPassThrough(t *testing.T) {
	for _, storeErr := range []error{ErrSKUExists, ErrUnavailable, context.DeadlineExceeded} {
		t.Run(storeErr.Error(), func(t *testing.T) {
			store := NewMockStore(gomock.NewController(t))
			store.EXPECT().CreateItem(gomock.Any(), gomock.Any()).Return(Item{}, storeErr)
			_, err := NewService(store).CreateItem(context.Background(), NewItem{SKU: "A", Name: "a"})
			if !errors.Is(err, storeErr) {
				t.Fatalf("error = %v, want %v", err, storeErr)
			}
		})
	}
}

func TestGetItem_RejectsNonUUIDWithoutAskingTheStore(t *testing.T) {
	svc := NewService(NewMockStore(gomock.NewController(t)))
	_, err := svc.GetItem(context.Background(), "42")
	if f := fieldsOf(t, err); len(f) != 1 || f[0] != "item_id" {
		t.Fatalf("violations = %v", f)
	}
}

func TestListItems_PagesWithOpaqueTokens(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	svc := NewService(store)
	a, b, c := Item{ID: "0192f0c4-0000-7000-8000-000000000001"}, Item{ID: "0192f0c4-0000-7000-8000-000000000002"}, Item{ID: "0192f0c4-0000-7000-8000-000000000003"}
	gomock.InOrder(
		store.EXPECT().ListItems(gomock.Any(), "", 3).Return([]Item{a, b, c}, nil),
		store.EXPECT().ListItems(gomock.Any(), b.ID, 3).Return([]Item{c}, nil),
	)
	first, err := svc.ListItems(context.Background(), ListParams{PageSize: 2})
	if err != nil || len(first.Items) != 2 || first.NextPageToken == "" {
		t.Fatalf("first page = %+v, %v", first, err)
	}
	second, err := svc.ListItems(context.Background(), ListParams{PageSize: 2, PageToken: first.NextPageToken})
	if err != nil || len(second.Items) != 1 || second.NextPageToken != "" {
		t.Fatalf("second page = %+v, %v", second, err)
	}
}

func TestListItems_RejectsBadPageInput(t *testing.T) {
	svc := NewService(NewMockStore(gomock.NewController(t)))
	tests := []struct {
		name  string
		p     ListParams
		field string
	}{
		{"negative size", ListParams{PageSize: -1}, "page_size"},
		{"huge size", ListParams{PageSize: MaxPageSize + 1}, "page_size"},
		{"forged token", ListParams{PageToken: "!!!"}, "page_token"},
		{"token of a non-id", ListParams{PageToken: EncodePageToken("DROP TABLE")}, "page_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.ListItems(context.Background(), tt.p)
			if f := fieldsOf(t, err); len(f) != 1 || f[0] != tt.field {
				t.Fatalf("violations = %v, want %s", f, tt.field)
			}
		})
	}
}

func TestAdjustStock_ValidatesDeltaAndPassesStoreOutcome(t *testing.T) {
	store := NewMockStore(gomock.NewController(t))
	svc := NewService(store)
	if _, err := svc.AdjustStock(context.Background(), itemID, 0); fieldsOf(t, err)[0] != "delta" {
		t.Fatalf("zero delta error = %v", err)
	}
	short := &InsufficientStockError{ItemID: itemID, Requested: 5, Available: 2}
	store.EXPECT().AdjustStock(gomock.Any(), itemID, int32(-5)).Return(Item{}, short)
	_, err := svc.AdjustStock(context.Background(), itemID, -5)
	var ise *InsufficientStockError
	if !errors.As(err, &ise) || ise.Available != 2 {
		t.Fatalf("error = %v, want the store's InsufficientStockError", err)
	}
}

func TestCheckAgainstLedger_FindsEveryKindOfDrift(t *testing.T) {
	good := Item{ID: itemID, SKU: "S", InitialStock: 10, Adjusted: 2, Available: 5, Reserved: 3, Sold: 4}
	sums := LedgerSums{Available: 5, Reserved: 3, Sold: 4, Adjusted: 2, Created: 10}
	if d := CheckAgainstLedger(good, sums); len(d) != 0 {
		t.Fatalf("consistent item reported: %v", d)
	}
	drifted := good
	drifted.Sold = 5 // counter drift: no longer conserved, no longer matches the ledger
	if d := CheckAgainstLedger(drifted, sums); len(d) != 2 {
		t.Fatalf("drifted item: %v, want conservation and ledger mismatches", d)
	}
	lostRow := sums
	lostRow.Adjusted = 0
	if d := CheckAgainstLedger(good, lostRow); len(d) != 1 {
		t.Fatalf("missing adjust row: %v", d)
	}
}
