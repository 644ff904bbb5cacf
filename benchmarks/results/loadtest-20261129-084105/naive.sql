BEGIN;
SELECT available FROM items WHERE id = '00000000-0000-7000-8000-000000000001' FOR UPDATE;
UPDATE items SET available = available - 1, sold = sold + 1, version = version + 1 WHERE id = '00000000-0000-7000-8000-000000000001';
INSERT INTO orders (id, customer_id, status, request_hash, create_time, update_time) VALUES (gen_random_uuid(), 'pgbench', 2, 'x', now(), now());
COMMIT;
