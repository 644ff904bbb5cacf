package inventory

import (
	"context"
	"encoding/base64"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/stockguard/stockguard/platform/validation"
)

// Page sizes for ListItems.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Service runs the inventory use cases. It validates input, assigns ids and
// times, and leaves atomicity to the Store.
type Service struct {
	store Store
	now   func() time.Time
}

// NewService returns a Service over store.
func NewService(store Store) *Service {
	return &Service{store: store, now: time.Now}
}

// CreateItem validates n and stores it as a new item.
func (s *Service) CreateItem(ctx context.Context, n NewItem) (Item, error) {
	if err := n.Validate(); err != nil {
		return Item{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Item{}, fmt.Errorf("new item id: %w", err)
	}
	return s.store.CreateItem(ctx, Item{
		ID:             id.String(),
		SKU:            n.SKU,
		Name:           n.Name,
		InitialStock:   n.InitialStock,
		Available:      n.InitialStock,
		MaxPerCustomer: n.MaxPerCustomer,
		Version:        1,
		CreateTime:     s.now().UTC().Truncate(time.Microsecond),
	})
}

// GetItem returns one item.
func (s *Service) GetItem(ctx context.Context, id string) (Item, error) {
	if err := ValidateID("item_id", id); err != nil {
		return Item{}, err
	}
	return s.store.GetItem(ctx, id)
}

// GetItems returns the items of ids that exist; unknown ids are left out.
// Watchers use it for snapshots, so it takes no locks.
func (s *Service) GetItems(ctx context.Context, ids []string) ([]Item, error) {
	return s.store.GetItems(ctx, ids)
}

// ListParams selects one page of items.
type ListParams struct {
	PageSize  int
	PageToken string
}

// ItemPage is one page of items and the token of the next.
type ItemPage struct {
	Items         []Item
	NextPageToken string
}

// ListItems returns one page of items in creation order.
func (s *Service) ListItems(ctx context.Context, p ListParams) (ItemPage, error) {
	size, err := PageSize(p.PageSize)
	if err != nil {
		return ItemPage{}, err
	}
	after, err := DecodePageToken(p.PageToken)
	if err != nil {
		return ItemPage{}, err
	}
	// Ask for one more than the page to know whether another page follows.
	items, err := s.store.ListItems(ctx, after, size+1)
	if err != nil {
		return ItemPage{}, err
	}
	page := ItemPage{Items: items}
	if len(items) > size {
		page.Items = items[:size]
		page.NextPageToken = EncodePageToken(items[size-1].ID)
	}
	return page, nil
}

// AdjustStock adds delta (restock) or removes -delta units of available stock.
func (s *Service) AdjustStock(ctx context.Context, id string, delta int32) (Item, error) {
	var v validation.Error
	if _, err := uuid.Parse(id); err != nil {
		v.Add("item_id", "must be an item id (a UUID)")
	}
	if delta == 0 || delta > MaxStock || delta < -MaxStock {
		v.Add("delta", "must be non-zero and between -%d and %d", MaxStock, MaxStock)
	}
	if err := v.Err(); err != nil {
		return Item{}, err
	}
	return s.store.AdjustStock(ctx, id, delta)
}

// ValidateID checks that id is a UUID, naming field in the error.
func ValidateID(field, id string) error {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		var v validation.Error
		v.Add(field, "must be a UUID such as 0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d")
		return v.Err()
	}
	return nil
}

// PageSize turns a requested page size (0 = default) into a checked one.
func PageSize(requested int) (int, error) {
	switch {
	case requested == 0:
		return DefaultPageSize, nil
	case requested < 0 || requested > MaxPageSize:
		var v validation.Error
		v.Add("page_size", "must be between 0 (default %d) and %d", DefaultPageSize, MaxPageSize)
		return 0, v.Err()
	}
	return requested, nil
}

// EncodePageToken makes an opaque page token from the last id of a page.
func EncodePageToken(lastID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastID))
}

// DecodePageToken reverses EncodePageToken; an empty token means the start.
func DecodePageToken(token string) (string, error) {
	if token == "" {
		return "", nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err == nil {
		if _, perr := uuid.Parse(string(raw)); perr == nil {
			return string(raw), nil
		}
	}
	var v validation.Error
	v.Add("page_token", "is not a token returned by this API; start again with an empty token")
	return "", v.Err()
}
