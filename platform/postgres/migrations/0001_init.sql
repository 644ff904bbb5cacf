-- Items and their stock. The CHECK constraints make the database itself
-- refuse any write that oversells or breaks conservation.
CREATE TABLE items (
    id               uuid PRIMARY KEY,
    sku              text NOT NULL,
    name             text NOT NULL,
    initial_stock    integer NOT NULL CHECK (initial_stock >= 0),
    adjusted         integer NOT NULL DEFAULT 0,
    available        integer NOT NULL CHECK (available >= 0),
    reserved         integer NOT NULL CHECK (reserved >= 0),
    sold             integer NOT NULL CHECK (sold >= 0),
    max_per_customer integer NOT NULL DEFAULT 0 CHECK (max_per_customer >= 0),
    version          bigint NOT NULL,
    create_time      timestamptz NOT NULL,
    CONSTRAINT items_sku_key UNIQUE (sku),
    CONSTRAINT items_conserved CHECK (initial_stock::bigint + adjusted = available::bigint + reserved + sold)
);

-- status: 1 pending, 2 confirmed, 3 cancelled, 4 expired.
CREATE TABLE orders (
    id              uuid PRIMARY KEY,
    customer_id     text NOT NULL,
    status          smallint NOT NULL CHECK (status BETWEEN 1 AND 4),
    idempotency_key text,
    request_hash    text NOT NULL,
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    expire_time     timestamptz
);
-- Idempotency keys are scoped per customer and kept as long as the order.
CREATE UNIQUE INDEX orders_idempotency_key ON orders (customer_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- A customer's orders, newest first (ids are UUIDv7, so they sort by time).
CREATE INDEX orders_customer_id ON orders (customer_id, id DESC);
-- The sweeper's work list stays small however many orders exist.
CREATE INDEX orders_pending_expire ON orders (expire_time) WHERE status = 1;

CREATE TABLE order_lines (
    order_id uuid NOT NULL REFERENCES orders (id),
    line_no  smallint NOT NULL,
    item_id  uuid NOT NULL REFERENCES items (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_lines_item_id ON order_lines (item_id, order_id DESC);

-- Units each customer holds or owns (PENDING + CONFIRMED) of each item with
-- a per-customer limit. Read and written only under the item's row lock.
CREATE TABLE customer_holdings (
    customer_id text NOT NULL,
    item_id     uuid NOT NULL REFERENCES items (id),
    quantity    integer NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (item_id, customer_id)
);

-- Every stock movement, appended in the transaction that makes it.
CREATE TABLE stock_ledger (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id     uuid NOT NULL REFERENCES items (id),
    order_id    uuid,
    kind        text NOT NULL CHECK (kind IN ('create', 'adjust', 'hold', 'purchase', 'confirm', 'release', 'expire', 'cancel')),
    d_available integer NOT NULL,
    d_reserved  integer NOT NULL,
    d_sold      integer NOT NULL,
    create_time timestamptz NOT NULL
);
CREATE INDEX stock_ledger_item_id ON stock_ledger (item_id);
