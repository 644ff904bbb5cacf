package inventory

import "context"

//go:generate go tool mockgen -typed -destination=mock_store_test.go -package=inventory . Store

// Store persists items. Adapters must make AdjustStock atomic with respect to
// every other stock change of the same item.
type Store interface {
	// CreateItem stores a new item, fully formed by the service (id, version
	// and create time set). It returns ErrSKUExists when the SKU is taken.
	CreateItem(ctx context.Context, item Item) (Item, error)
	// GetItem returns ErrItemNotFound when no item has the id.
	GetItem(ctx context.Context, id string) (Item, error)
	// GetItems returns the items of ids that exist, in no set order.
	GetItems(ctx context.Context, ids []string) ([]Item, error)
	// ListItems returns up to limit items with ids greater than afterID, in
	// ascending id order.
	ListItems(ctx context.Context, afterID string, limit int) ([]Item, error)
	// AdjustStock adds delta to the item's available units and bumps its
	// version. It returns *InsufficientStockError, changing nothing, when
	// available would go below zero or above MaxStock.
	AdjustStock(ctx context.Context, id string, delta int32) (Item, error)
}
