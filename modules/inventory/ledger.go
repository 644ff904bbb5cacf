package inventory

import (
	"context"
	"fmt"
	"time"
)

// MovementKind names why stock moved between available, reserved and sold.
type MovementKind string

// Every way stock can move. Each appends one ledger row per item, in the
// same transaction as the change.
const (
	MovementCreate   MovementKind = "create"   // initial stock into available
	MovementAdjust   MovementKind = "adjust"   // restock or removal of available
	MovementHold     MovementKind = "hold"     // available -> reserved (PENDING order)
	MovementPurchase MovementKind = "purchase" // available -> sold (bought outright)
	MovementConfirm  MovementKind = "confirm"  // reserved -> sold
	MovementRelease  MovementKind = "release"  // reserved -> available (PENDING cancelled)
	MovementExpire   MovementKind = "expire"   // reserved -> available (hold ran out)
	MovementCancel   MovementKind = "cancel"   // sold -> available (CONFIRMED cancelled: a refund)
)

// Movement is one ledger row: the change of one item's three figures.
type Movement struct {
	ItemID     string
	OrderID    string // empty for create and adjust
	Kind       MovementKind
	Available  int32 // change of available
	Reserved   int32 // change of reserved
	Sold       int32 // change of sold
	CreateTime time.Time
}

// Apply adds m to it's figures and bumps its version.
func (m Movement) Apply(it *Item) {
	it.Available += m.Available
	it.Reserved += m.Reserved
	it.Sold += m.Sold
	if m.Kind == MovementAdjust {
		it.Adjusted += m.Available
	}
	it.Version++
}

// Discrepancy is one item whose figures do not add up.
type Discrepancy struct {
	ItemID string
	SKU    string
	Reason string
}

func (d Discrepancy) String() string {
	return fmt.Sprintf("item %s (sku %s): %s", d.ItemID, d.SKU, d.Reason)
}

// AuditReport is the result of checking every item against the invariant
// and against the ledger.
type AuditReport struct {
	ItemsChecked  int
	Discrepancies []Discrepancy
}

// OK reports whether nothing was wrong.
func (r AuditReport) OK() bool { return len(r.Discrepancies) == 0 }

// Auditor checks stored stock against its invariants.
type Auditor interface {
	// Audit checks, for every item, that
	// initial_stock + adjusted == available + reserved + sold, and that the
	// ledger's sums reproduce available, reserved and sold exactly.
	Audit(ctx context.Context) (AuditReport, error)
}

// LedgerSums are the sums of one item's ledger rows.
type LedgerSums struct {
	Available, Reserved, Sold int64
	Adjusted                  int64 // sum over 'adjust' rows
	Created                   int64 // sum over 'create' rows
}

// CheckAgainstLedger lists what is wrong with it, alone and against its
// ledger sums. Every store's Audit uses it, so they all judge alike.
func CheckAgainstLedger(it Item, l LedgerSums) []Discrepancy {
	var out []Discrepancy
	bad := func(format string, args ...any) {
		out = append(out, Discrepancy{ItemID: it.ID, SKU: it.SKU, Reason: fmt.Sprintf(format, args...)})
	}
	if !it.Conserved() {
		bad("initial_stock %d + adjusted %d != available %d + reserved %d + sold %d",
			it.InitialStock, it.Adjusted, it.Available, it.Reserved, it.Sold)
	}
	if it.Available < 0 || it.Reserved < 0 || it.Sold < 0 {
		bad("negative figure: available %d, reserved %d, sold %d", it.Available, it.Reserved, it.Sold)
	}
	if l.Available != int64(it.Available) || l.Reserved != int64(it.Reserved) || l.Sold != int64(it.Sold) {
		bad("ledger sums (available %d, reserved %d, sold %d) differ from the item (%d, %d, %d)",
			l.Available, l.Reserved, l.Sold, it.Available, it.Reserved, it.Sold)
	}
	if l.Adjusted != int64(it.Adjusted) {
		bad("ledger adjustments sum to %d but the item records %d", l.Adjusted, it.Adjusted)
	}
	if l.Created != int64(it.InitialStock) {
		bad("ledger create row is %d but initial_stock is %d", l.Created, it.InitialStock)
	}
	return out
}
