// Package orders places, confirms, cancels and expires orders: the Order
// type, its errors, the Store port it consumes, the Service, and the
// Sweeper that expires overdue holds.
//
// It may import the inventory domain package (orders move stock) but never
// a transport or an adapter.
package orders
