-- A manual refresh of one materialized view, for the views job when BigQuery's own refresh has fallen
-- behind. BigQuery takes the name as a string, '[project.]dataset.view', and no query parameters in a
-- CALL on the emulator, so the validated identifiers are spliced into the literal (they cannot contain a
-- quote). Without a project the view is looked up in the project the query runs in, as every other file.
CALL BQ.REFRESH_MATERIALIZED_VIEW('${dataset}.${view}');
