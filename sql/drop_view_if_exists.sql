-- Removes what a CREATE MATERIALIZED VIEW left behind when the warehouse reported success but created no
-- materialized view (bqemulator 1.4.0 leaves an unlisted plain view, which blocks the fallback table of
-- the same name). On BigQuery the name is then free and this does nothing.
DROP VIEW IF EXISTS `${dataset}.${view}`;
