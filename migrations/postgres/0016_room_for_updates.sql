-- The tables the ledger updates in place for every batch (one row per
-- account, key or gateway) leave half of each page free, so an update can
-- write its new row version beside the old one without touching the
-- indexes (a heap-only tuple). Full pages force every update to add an
-- entry to each index. The tables are small: the space costs nothing.
ALTER TABLE balances SET (fillfactor = 50);
ALTER TABLE day_spend SET (fillfactor = 50);
ALTER TABLE key_totals SET (fillfactor = 50);
ALTER TABLE origins SET (fillfactor = 50);
ALTER TABLE origin_instances SET (fillfactor = 50);
ALTER TABLE gateway_sequences SET (fillfactor = 50);
