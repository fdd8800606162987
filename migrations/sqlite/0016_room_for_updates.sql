-- PostgreSQL leaves room in the pages of the tables the ledger updates in
-- place; SQLite has no such setting.
SELECT 1;
