DROP FUNCTION usage_drop_minute_partitions(date);
DROP FUNCTION usage_ensure_partitions(date, date);
DROP TABLE usage_hourly;
DROP SEQUENCE usage_hourly_seq;
DROP TABLE usage_minute;
