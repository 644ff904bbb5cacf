package inventory

import (
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/stockguard/stockguard/platform/validation"
)

// MaxStock bounds every stock figure so that sums of them cannot overflow
// the int32 the API uses.
const MaxStock = 1_000_000_000

// Item is a sellable thing with a limited stock. Its stock is always split
// three ways: Available + Reserved + Sold == InitialStock + Adjusted.
type Item struct {
	ID             string
	SKU            string
	Name           string
	InitialStock   int32
	Adjusted       int32 // the sum of every AdjustStock delta
	Available      int32
	Reserved       int32
	Sold           int32
	MaxPerCustomer int32 // zero means no limit
	Version        int64
	CreateTime     time.Time
}

// Conserved reports whether the item's stock adds up.
func (it Item) Conserved() bool {
	return int64(it.InitialStock)+int64(it.Adjusted) ==
		int64(it.Available)+int64(it.Reserved)+int64(it.Sold)
}

// NewItem is the input of CreateItem.
type NewItem struct {
	SKU            string
	Name           string
	InitialStock   int32
	MaxPerCustomer int32
}

var skuPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Validate reports every problem with n at once.
func (n NewItem) Validate() error {
	var v validation.Error
	if !skuPattern.MatchString(n.SKU) {
		v.Add("sku", "must be 1 to 64 characters of letters, digits, '.', '_' or '-'")
	}
	if l := utf8.RuneCountInString(n.Name); l < 1 || l > 200 || !utf8.ValidString(n.Name) {
		v.Add("name", "must be 1 to 200 characters of valid UTF-8")
	}
	if n.InitialStock < 0 || n.InitialStock > MaxStock {
		v.Add("initial_stock", "must be between 0 and %d", MaxStock)
	}
	if n.MaxPerCustomer < 0 || n.MaxPerCustomer > MaxStock {
		v.Add("max_per_customer", "must be between 0 (no limit) and %d", MaxStock)
	}
	return v.Err()
}

// ErrItemNotFound means no item has the given id.
var ErrItemNotFound = errors.New("item not found")

// ErrSKUExists means another item already uses the SKU.
var ErrSKUExists = errors.New("an item with this sku already exists")

// ErrUnavailable means the store could not answer in time (a lock or
// statement timeout, or lost connectivity). The request changed nothing and
// may be retried.
var ErrUnavailable = errors.New("stock store temporarily unavailable")

// InsufficientStockError means a request wanted more units of an item than
// are available. It is returned by AdjustStock and by order placement.
type InsufficientStockError struct {
	ItemID    string
	Requested int32
	Available int32
}

func (e *InsufficientStockError) Error() string {
	return fmt.Sprintf("insufficient stock for item %s: requested %d, available %d", e.ItemID, e.Requested, e.Available)
}
