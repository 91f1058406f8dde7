DROP TABLE usage_dirty_hours;
DROP TABLE usage_rollup_state;
DROP TABLE usage_gaps;
DROP TABLE usage_watermarks;
