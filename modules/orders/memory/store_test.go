package memory

import (
	"testing"

	invmem "github.com/stockguard/stockguard/modules/inventory/memory"
	"github.com/stockguard/stockguard/modules/orders/orderstest"
)

func TestContract(t *testing.T) {
	orderstest.Run(t, func(*testing.T) orderstest.Stores {
		items := invmem.NewItemStore()
		return orderstest.Stores{Items: items, Orders: NewOrderStore(items), Auditor: items}
	})
}
